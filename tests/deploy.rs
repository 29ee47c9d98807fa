//! The Azure deployment files (deploy/): cloud-init's schema and the
//! unitwatch config it writes, the collector config, shellcheck on every
//! shell script the project ships or runs, and install-on-vm.sh run in a
//! real systemd on top of the config cloud-init leaves behind.
//! (Azure itself is out of reach here: azure-vm.sh and azure-alerts.sh are
//! checked by shellcheck only.)

mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use harness::Sandbox;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// A file's content from cloud-init.yaml's write_files, read with a YAML
/// parser (python3-yaml, which cloud-init depends on).
fn cloud_init_file(path: &str) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, yaml\n\
             doc = yaml.safe_load(open(sys.argv[1]))\n\
             print(next(f['content'] for f in doc['write_files'] if f['path'] == sys.argv[2]), end='')",
        ])
        .arg(repo("deploy/cloud-init.yaml"))
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn cloud_init_passes_its_schema_and_writes_a_valid_config() {
    let out = Command::new("cloud-init")
        .args(["schema", "--config-file"])
        .arg(repo("deploy/cloud-init.yaml"))
        .output()
        .expect("cloud-init (scripts/deps installs it)");
    assert!(out.status.success(), "{out:?}");
    let toml = cloud_init_file("/etc/unitwatch/unitwatch.toml");
    let config = unitwatch::config::Config::parse(&toml, Path::new("cloud-init.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    // Reachable by an outside monitor, on the port azure-vm.sh opens.
    assert_eq!(config.http.listen, vec!["0.0.0.0:8080".to_string()]);
    let vm = std::fs::read_to_string(repo("deploy/azure-vm.sh")).unwrap();
    assert!(vm.contains("HEALTH_PORT=${HEALTH_PORT:-8080}"));
}

#[test]
fn collector_config_sends_metrics_and_logs_to_azure_monitor() {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, yaml, json\n\
             print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(repo("deploy/otelcol-azure.yaml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(c["exporters"].get("azuremonitor").is_some());
    // The connection string comes from the environment, never the file.
    assert!(c["exporters"]["azuremonitor"]
        .get("connection_string")
        .is_none());
    for signal in ["metrics", "logs"] {
        let p = &c["service"]["pipelines"][signal];
        assert_eq!(p["receivers"], serde_json::json!(["otlp"]), "{signal}");
        assert_eq!(
            p["exporters"],
            serde_json::json!(["azuremonitor"]),
            "{signal}"
        );
    }
    // OTLP only on loopback: the collector is not a public endpoint.
    for proto in ["grpc", "http"] {
        let ep = c["receivers"]["otlp"]["protocols"][proto]["endpoint"]
            .as_str()
            .unwrap();
        assert!(ep.starts_with("127.0.0.1:"), "{proto}: {ep}");
    }
}

#[test]
fn shell_scripts_pass_shellcheck() {
    let mut files = vec![
        "debian/postinst",
        "debian/prerm",
        "debian/postrm",
        "tests/harness/boot.sh",
        "tests/harness/root.sh",
        ".ci/run",
    ];
    let dirs = ["deploy", "scripts"];
    let mut listed = Vec::new();
    for d in dirs {
        for e in std::fs::read_dir(repo(d)).unwrap() {
            let p = e.unwrap().path();
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            if text.starts_with("#!") && text.lines().next().unwrap().contains("sh") {
                listed.push(p.strip_prefix(repo("")).unwrap().display().to_string());
            }
        }
    }
    files.extend(listed.iter().map(String::as_str));
    assert!(files.iter().any(|f| f.ends_with("azure-vm.sh")));
    let out = Command::new("shellcheck")
        .args(&files)
        .current_dir(repo(""))
        .output()
        .expect("shellcheck (scripts/deps installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// What azure-vm.sh does on the VM, in a real systemd: cloud-init's config
/// is in place, then install-on-vm.sh installs the package with apt. The
/// config must survive (no conffile prompt, no overwrite) and be in force.
#[test]
fn install_on_vm_keeps_the_cloud_init_config() {
    let debs = repo("target/deb-test");
    let deb = std::fs::read_dir(&debs)
        .unwrap_or_else(|e| panic!("{}: {e}: run scripts/test", debs.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            // This version's, not the previous release's that the upgrade
            // test installs first.
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with(&format!("unitwatch_{}-", env!("CARGO_PKG_VERSION")))
                && name.ends_with(".deb")
        })
        .expect("the current package in target/deb-test");

    let sb = Sandbox::boot("deploy");
    sb.ok("rm -f /usr/sbin/policy-rc.d");
    sb.unit(
        "worker.service",
        "[Service]\nExecStart=/bin/sleep infinity\n",
    );
    sb.ok("systemctl start worker");
    let config = format!(
        "{}\n[[unit]]\nname = \"worker.service\"\n",
        cloud_init_file("/etc/unitwatch/unitwatch.toml")
    );
    sb.write("/etc/unitwatch/unitwatch.toml", &config);
    sb.write(
        "/root/install-on-vm.sh",
        &std::fs::read_to_string(repo("deploy/install-on-vm.sh")).unwrap(),
    );
    let name = deb.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::copy(&deb, sb.path(&format!("/root/{name}"))).unwrap();

    let out = sb.sh(&format!(
        "cd /root && sh install-on-vm.sh {name} </dev/null"
    ));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("is running; HEAD /health: 200"), "{text}");
    assert_eq!(sb.read("/etc/unitwatch/unitwatch.toml").unwrap(), config);
    sb.wait_for("worker watched", Duration::from_secs(10), || {
        sb.status_json()["units"].get("worker.service").map(|_| ())
    });
    // Listening on every address, as cloud-init asked.
    assert!(sb.ok("ss -ltn").contains("0.0.0.0:8080"));
}
