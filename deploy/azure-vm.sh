#!/usr/bin/env bash
# Variables in the remote commands below expand here, on the client, on purpose.
# shellcheck disable=SC2029
# Creates an Azure VM running unitwatch, from a machine with the az CLI
# logged in (az login) and ssh:
#
#   scripts/build-deb
#   deploy/azure-vm.sh target/debian/unitwatch_0.1.0-1_amd64.deb
#
# It creates the resource group and the VM (with deploy/cloud-init.yaml as
# custom data: the unitwatch config, persistent journal), opens the health
# port to HEALTH_SOURCE only, copies the .deb over and installs it with
# deploy/install-on-vm.sh, and prints the URL for UptimeRobot. With
# APPLICATIONINSIGHTS_CONNECTION_STRING set it also installs the
# OpenTelemetry Collector with deploy/otelcol-azure.yaml.
#
# Settings (environment): RG, LOCATION, VM, IMAGE, SIZE, ADMIN,
# HEALTH_PORT, HEALTH_SOURCE (CIDR or service tag allowed to reach
# /health; "*" for any, e.g. UptimeRobot, whose addresses change),
# OTELCOL_VERSION.
set -euo pipefail

deb=${1:?usage: deploy/azure-vm.sh PATH/TO/unitwatch_VERSION_amd64.deb}
[ -f "$deb" ] || { echo "azure-vm.sh: $deb: no such file (run scripts/build-deb)" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)

RG=${RG:-unitwatch-rg}
LOCATION=${LOCATION:-westeurope}
VM=${VM:-unitwatch-vm}
# Debian 12; Ubuntu 24.04: Canonical:ubuntu-24_04-lts:server:latest
IMAGE=${IMAGE:-Debian:debian-12:12-gen2:latest}
SIZE=${SIZE:-Standard_B1s}
ADMIN=${ADMIN:-azureuser}
HEALTH_PORT=${HEALTH_PORT:-8080}
HEALTH_SOURCE=${HEALTH_SOURCE:-*}
OTELCOL_VERSION=${OTELCOL_VERSION:-0.114.0}

az group create --name "$RG" --location "$LOCATION" --output none
az vm create --resource-group "$RG" --name "$VM" --image "$IMAGE" --size "$SIZE" \
    --admin-username "$ADMIN" --generate-ssh-keys --public-ip-sku Standard \
    --custom-data "$here/cloud-init.yaml" --output none
# az vm create names the VM's network security group <VM>NSG.
az network nsg rule create --resource-group "$RG" --nsg-name "${VM}NSG" \
    --name unitwatch-health --priority 1010 --direction Inbound --access Allow \
    --protocol Tcp --destination-port-ranges "$HEALTH_PORT" \
    --source-address-prefixes "$HEALTH_SOURCE" --output none

ip=$(az vm show --show-details --resource-group "$RG" --name "$VM" --query publicIps --output tsv)
ssh_opts=(-o StrictHostKeyChecking=accept-new -o ConnectTimeout=10)
echo "VM $VM is at $ip; waiting for cloud-init"
for _ in $(seq 60); do
    ssh "${ssh_opts[@]}" "$ADMIN@$ip" true 2>/dev/null && break
    sleep 5
done
ssh "${ssh_opts[@]}" "$ADMIN@$ip" 'cloud-init status --wait >/dev/null'

scp "${ssh_opts[@]}" "$deb" "$here/install-on-vm.sh" "$ADMIN@$ip:"
ssh "${ssh_opts[@]}" "$ADMIN@$ip" "sudo sh install-on-vm.sh ./$(basename "$deb")"

if [ -n "${APPLICATIONINSIGHTS_CONNECTION_STRING:-}" ]; then
    echo "installing the OpenTelemetry Collector $OTELCOL_VERSION (otelcol-contrib) for Azure Monitor"
    scp "${ssh_opts[@]}" "$here/otelcol-azure.yaml" "$ADMIN@$ip:"
    ssh "${ssh_opts[@]}" "$ADMIN@$ip" "set -e
        v=$OTELCOL_VERSION
        curl -fsSLo otelcol.deb https://github.com/open-telemetry/opentelemetry-collector-releases/releases/download/v\$v/otelcol-contrib_\${v}_linux_amd64.deb
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q ./otelcol.deb </dev/null
        sudo install -m 0644 otelcol-azure.yaml /etc/otelcol-contrib/config.yaml
        sudo touch /etc/otelcol-contrib/otelcol-contrib.conf
        sudo chmod 0600 /etc/otelcol-contrib/otelcol-contrib.conf
        sudo sed -i '/^APPLICATIONINSIGHTS_CONNECTION_STRING=/d' /etc/otelcol-contrib/otelcol-contrib.conf"
    # The connection string travels on ssh's stdin, never on a command line.
    printf 'APPLICATIONINSIGHTS_CONNECTION_STRING=%s\n' "$APPLICATIONINSIGHTS_CONNECTION_STRING" |
        ssh "${ssh_opts[@]}" "$ADMIN@$ip" \
            'sudo tee -a /etc/otelcol-contrib/otelcol-contrib.conf >/dev/null && sudo systemctl restart otelcol-contrib && systemctl is-active otelcol-contrib'
    # Turn unitwatch's export on (to the collector's default 127.0.0.1:4318).
    ssh "${ssh_opts[@]}" "$ADMIN@$ip" \
        'grep -q "^\[telemetry\]" /etc/unitwatch/unitwatch.toml ||
         printf "\n[telemetry]\n" | sudo tee -a /etc/unitwatch/unitwatch.toml >/dev/null
         sudo unitwatchd config check && sudo systemctl reload unitwatch &&
         sudo unitwatchd check --otlp >/dev/null'
fi

cat <<TXT

unitwatch is running on $VM ($ip).
  health URL for UptimeRobot (HTTP(s) monitor, method HEAD, expects 200):
      http://$ip:$HEALTH_PORT/health
  on the VM:  ssh $ADMIN@$ip
      sudoedit /etc/unitwatch/unitwatch.toml && sudo systemctl reload unitwatch
      journalctl -u unitwatch -f
  alert rules in Azure Monitor: deploy/azure-alerts.sh (see the README)
TXT
