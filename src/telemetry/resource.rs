//! The OTLP resource: who is reporting. `service.*`, `host.*`, `os.type`,
//! and on an Azure VM `cloud.*` and `azure.vm.*` from the instance metadata
//! service. IMDS is asked only when DMI says the machine is an Azure VM,
//! once, with a short timeout: off Azure no packet is sent at all.

use std::path::Path;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_sdk::resource::EnvResourceDetector;
use opentelemetry_sdk::Resource;
use serde::Deserialize;

/// The chassis asset tag every Azure VM carries (Hyper-V on Azure).
pub const AZURE_ASSET_TAG: &str = "7783-7084-3265-9085-8269-3286-77";
const IMDS_TIMEOUT: Duration = Duration::from_secs(2);
const IMDS_PATH: &str = "/metadata/instance/compute?api-version=2021-12-13";

/// Whether DMI (under `sys_dir`) says this is an Azure VM.
pub fn is_azure(sys_dir: &Path) -> bool {
    std::fs::read_to_string(sys_dir.join("class/dmi/id/chassis_asset_tag"))
        .is_ok_and(|t| t.trim() == AZURE_ASSET_TAG)
}

/// The part of IMDS's compute document that becomes attributes.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct AzureCompute {
    pub location: String,
    pub name: String,
    pub vm_id: String,
    pub vm_size: String,
    pub resource_group_name: String,
    pub subscription_id: String,
    pub resource_id: String,
    pub vm_scale_set_name: String,
}

impl AzureCompute {
    pub fn attributes(&self) -> Vec<KeyValue> {
        let mut kv = vec![
            KeyValue::new("cloud.provider", "azure"),
            KeyValue::new("cloud.platform", "azure_vm"),
        ];
        for (k, v) in [
            ("cloud.region", &self.location),
            ("cloud.account.id", &self.subscription_id),
            ("cloud.resource_id", &self.resource_id),
            ("host.type", &self.vm_size),
            ("azure.vm.name", &self.name),
            ("azure.vm.id", &self.vm_id),
            ("azure.vm.size", &self.vm_size),
            ("azure.vm.scaleset.name", &self.vm_scale_set_name),
            ("azure.resourcegroup.name", &self.resource_group_name),
        ] {
            if !v.is_empty() {
                kv.push(KeyValue::new(k, v.clone()));
            }
        }
        kv
    }
}

/// Asks IMDS once. Errors are for one log line; the caller goes on without.
pub async fn azure_compute(imds_endpoint: &str) -> Result<AzureCompute, String> {
    let client = reqwest::Client::builder()
        .timeout(IMDS_TIMEOUT)
        // IMDS must be reached directly, never through a proxy.
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;
    let url = format!("{}{IMDS_PATH}", imds_endpoint.trim_end_matches('/'));
    let resp = client
        .get(&url)
        .header("Metadata", "true")
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("{url}: HTTP {}", resp.status()));
    }
    let body = resp.bytes().await.map_err(|e| format!("{url}: {e}"))?;
    serde_json::from_slice(&body).map_err(|e| format!("{url}: invalid compute document: {e}"))
}

/// The resource for this host. `OTEL_RESOURCE_ATTRIBUTES` overrides what
/// is detected, and `OTEL_SERVICE_NAME` the service name (the spec).
pub fn build(extra: Vec<KeyValue>, env: &dyn Fn(&str) -> Option<String>) -> Resource {
    let mut kv = vec![
        KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        KeyValue::new("os.type", "linux"),
    ];
    if let Ok(h) = nix::unistd::gethostname() {
        kv.push(KeyValue::new("host.name", h.to_string_lossy().into_owned()));
    }
    if let Ok(id) = std::fs::read_to_string("/etc/machine-id") {
        if !id.trim().is_empty() {
            kv.push(KeyValue::new("host.id", id.trim().to_string()));
        }
    }
    kv.extend(extra);
    let service = env("OTEL_SERVICE_NAME")
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "unitwatch".into());
    Resource::builder_empty()
        .with_attributes(kv)
        .with_detector(Box::new(EnvResourceDetector::new()))
        .with_service_name(service)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dmi_decides_azure() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_azure(dir.path()));
        let dmi = dir.path().join("class/dmi/id");
        std::fs::create_dir_all(&dmi).unwrap();
        std::fs::write(dmi.join("chassis_asset_tag"), "No Asset Tag\n").unwrap();
        assert!(!is_azure(dir.path()));
        std::fs::write(
            dmi.join("chassis_asset_tag"),
            format!("{AZURE_ASSET_TAG}\n"),
        )
        .unwrap();
        assert!(is_azure(dir.path()));
    }

    #[test]
    fn imds_compute_becomes_attributes() {
        let c: AzureCompute = serde_json::from_str(
            r#"{"location":"westeurope","name":"bot-1","vmId":"02aab8a4-74ef-476e-8182-f6d2ba4166a6",
                "vmSize":"Standard_B1s","resourceGroupName":"bots","subscriptionId":"8d10da13",
                "resourceId":"/subscriptions/8d10da13/resourceGroups/bots/providers/Microsoft.Compute/virtualMachines/bot-1",
                "vmScaleSetName":"","osType":"Linux","tags":"a:b"}"#,
        )
        .unwrap();
        let kv: std::collections::HashMap<String, String> = c
            .attributes()
            .into_iter()
            .map(|kv| (kv.key.to_string(), kv.value.to_string()))
            .collect();
        assert_eq!(kv["cloud.provider"], "azure");
        assert_eq!(kv["cloud.platform"], "azure_vm");
        assert_eq!(kv["cloud.region"], "westeurope");
        assert_eq!(kv["host.type"], "Standard_B1s");
        assert_eq!(kv["azure.vm.name"], "bot-1");
        assert!(
            !kv.contains_key("azure.vm.scaleset.name"),
            "empty ones are left out"
        );
    }

    #[test]
    fn resource_names_the_service_and_host_and_env_overrides() {
        let none = |_: &str| None;
        let r = build(vec![], &none);
        let get = |r: &Resource, k: &'static str| {
            r.get(&opentelemetry::Key::new(k)).map(|v| v.to_string())
        };
        assert_eq!(get(&r, "service.name").as_deref(), Some("unitwatch"));
        assert_eq!(
            get(&r, "service.version").as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(get(&r, "os.type").as_deref(), Some("linux"));
        assert!(get(&r, "host.name").is_some());
        let named = |k: &str| (k == "OTEL_SERVICE_NAME").then(|| "bots-vm".to_string());
        assert_eq!(
            get(&build(vec![], &named), "service.name").as_deref(),
            Some("bots-vm")
        );
    }
}
