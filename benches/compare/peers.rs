//! The peers, as released by Debian: monit and prometheus-node-exporter,
//! fetched with `apt-get download` and unpacked with `dpkg -x` into
//! `target/peers/` (never installed, so no service of theirs is enabled),
//! and run in the sandbox as transient units.

use std::path::PathBuf;
use std::time::Duration;

use crate::harness::Sandbox;

/// Where the peers are unpacked: under the checkout, which the sandbox
/// sees (its /tmp is its own).
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/peers")
}

/// Fetches and unpacks both packages once; their binaries' paths.
pub fn unpack() -> (PathBuf, PathBuf) {
    let root = root();
    let monit = root.join("usr/bin/monit");
    let nodeexp = root.join("usr/bin/prometheus-node-exporter");
    if !monit.exists() || !nodeexp.exists() {
        let debs = root.join("debs");
        std::fs::create_dir_all(&debs).unwrap();
        let ok = std::process::Command::new("apt-get")
            .args(["download", "monit", "prometheus-node-exporter"])
            .current_dir(&debs)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "apt-get download monit prometheus-node-exporter failed");
        for e in std::fs::read_dir(&debs).unwrap().flatten() {
            let ok = std::process::Command::new("dpkg")
                .arg("-x")
                .arg(e.path())
                .arg(&root)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "dpkg -x {} failed", e.path().display());
        }
    }
    (monit, nodeexp)
}

/// Starts monit on `units` (each a `check program` of `systemctl
/// is-active`, restarted with `systemctl restart` when it is not), every
/// `cycle_s` seconds, as a transient unit.
pub fn start_monit(sb: &Sandbox, monit: &std::path::Path, units: &[String], cycle_s: u32) {
    let mut rc = format!(
        "set daemon {cycle_s}\nset logfile /var/log/monit-bench.log\nset idfile /run/monit-bench.id\nset statefile /run/monit-bench.state\n"
    );
    for u in units {
        let name = u.replace(['@', '.'], "_");
        rc += &format!(
            "check program {name} with path \"/bin/systemctl is-active --quiet {u}\"\n  if status != 0 then exec \"/bin/systemctl restart {u}\"\n"
        );
    }
    sb.write("/etc/monit-bench.rc", &rc);
    sb.ok("chmod 600 /etc/monit-bench.rc");
    sb.ok(&format!(
        "systemd-run --unit=monit-bench --property=CPUAccounting=yes {} -I -c /etc/monit-bench.rc",
        monit.display()
    ));
    // Past its start and first cycle.
    std::thread::sleep(Duration::from_secs(2 + u64::from(cycle_s)));
}

pub fn stop(sb: &Sandbox, unit: &str) {
    sb.sh(&format!(
        "systemctl stop {unit}; systemctl reset-failed {unit}"
    ));
}

/// Starts node_exporter with the systemd collector on 127.0.0.1:9100,
/// on `units` only (`--collector.systemd.unit-include`): every unit of the
/// sandbox is running, and unitwatch reports only the N it watches.
pub fn start_node_exporter(sb: &Sandbox, bin: &std::path::Path, units: &[String]) {
    let names: Vec<String> = units.iter().map(|u| u.replace('.', "\\.")).collect();
    sb.write(
        "/etc/nodeexp-bench.args",
        &format!("--collector.systemd.unit-include=^({})$\n", names.join("|")),
    );
    sb.ok(&format!(
        "systemd-run --unit=nodeexp-bench sh -c 'exec {} --collector.systemd --web.listen-address=127.0.0.1:9100 \"$(cat /etc/nodeexp-bench.args)\"'",
        bin.display()
    ));
    sb.wait_for("node_exporter answering", Duration::from_secs(10), || {
        (sb.curl("-o /dev/null http://127.0.0.1:9100/metrics").0 == 200).then_some(())
    });
}
