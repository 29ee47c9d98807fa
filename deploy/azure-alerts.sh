#!/usr/bin/env bash
# Example Azure Monitor alert rules on what unitwatch exports over OTLP
# (through deploy/otelcol-azure.yaml into Application Insights'
# customMetrics table), mailed to one address:
#
#   RG=unitwatch-rg APPINSIGHTS=unitwatch-ai EMAIL=oncall@example.com deploy/azure-alerts.sh
#
# Each rule is a log search alert (scheduled query) over customMetrics,
# split by VM (cloud_RoleInstance) and unit, so one alert names the machine
# and the service. The metric names are those of unitwatch's OTLP export:
# health.service_active (1 active, 0 not), health.crash_count (failures
# seen, counter), health.disk_usage and health.memory_usage (%); events
# land in traces with unitwatch.event, unitwatch.unit and
# unitwatch.severity in customDimensions.
set -euo pipefail

RG=${RG:?set RG, the resource group}
APPINSIGHTS=${APPINSIGHTS:?set APPINSIGHTS, the Application Insights resource name}
EMAIL=${EMAIL:?set EMAIL, where alerts go}

scope=$(az monitor app-insights component show --resource-group "$RG" --app "$APPINSIGHTS" --query id --output tsv)
group=$(az monitor action-group create --resource-group "$RG" --name unitwatch-oncall \
    --short-name unitwatch --action email oncall "$EMAIL" --query id --output tsv)

# rule NAME SEVERITY FREQUENCY WINDOW DESCRIPTION QUERY: fires when QUERY
# returns any row.
rule() {
    az monitor scheduled-query create --resource-group "$RG" --name "$1" \
        --scopes "$scope" --severity "$2" \
        --evaluation-frequency "$3" --window-size "$4" --description "$5" \
        --condition "count 'Q' > 0" --condition-query Q="$6" \
        --action-groups "$group" --output none
    echo "alert rule $1 (severity $2)"
}

rule unitwatch-unit-down 1 5m 10m \
    "A watched unit has not been active for a whole export interval" \
    'customMetrics
     | where name == "health.service_active"
     | summarize active = max(value) by vm = cloud_RoleInstance, unit = tostring(customDimensions["unit"])
     | where active < 1'

rule unitwatch-crash-loop 1 15m 1h \
    "A unit failed 5 times or more within an hour (unitwatch stops restarting it at max_restarts_per_hour)" \
    'customMetrics
     | where name == "health.crash_count"
     | summarize crashes = max(value) - min(value) by vm = cloud_RoleInstance, unit = tostring(customDimensions["unit"])
     | where crashes >= 5'

rule unitwatch-disk-full 2 15m 15m \
    "A filesystem is more than 90% full" \
    'customMetrics
     | where name == "health.disk_usage"
     | summarize used = max(value) by vm = cloud_RoleInstance, path = tostring(customDimensions["path"])
     | where used > 90'

rule unitwatch-memory-high 2 15m 15m \
    "A VM uses more than 95% of its memory" \
    'customMetrics
     | where name == "health.memory_usage"
     | summarize used = max(value) by vm = cloud_RoleInstance
     | where used > 95'

# unitwatch gave up on a unit (its events arrive as log records in
# traces, their attributes in customDimensions).
rule unitwatch-restart-limit 0 5m 5m \
    "unitwatch reached max_restarts_per_hour for a unit and stopped restarting it" \
    'traces
     | where customDimensions["unitwatch.event"] == "restart-limit"
     | project timestamp, vm = cloud_RoleInstance, unit = tostring(customDimensions["unitwatch.unit"]), message'

# The supervisor itself: a VM that reported in the last day and has been
# silent for 10 minutes (unitwatch, the collector or the VM is down).
rule unitwatch-silent 1 5m 1d \
    "A VM running unitwatch stopped sending telemetry" \
    'customMetrics
     | where name == "health.service_active"
     | summarize last = max(timestamp) by vm = cloud_RoleInstance
     | where last < ago(10m)'
