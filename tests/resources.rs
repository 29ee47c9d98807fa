//! Per-unit resources in a real systemd 252, with unitwatch.service as
//! shipped (the `unitwatch` user, its hardening, the package's generator):
//! a unit of another user that opens files in a loop crosses the FD warn,
//! then the crit threshold, and a delegated unit's process in a sub-cgroup
//! is counted; without the generator's drop-in the count fails
//! with the reason instead of reading 0; a unit that spawns threads crosses
//! the tasks thresholds, a busy loop the CPU threshold, and a crash loop
//! under systemd's own Restart= the restarts warning. And the host's: CPU
//! contention crosses `[pressure] cpu_warn` (PSI).

mod harness;

use std::time::Duration;

use harness::{field, Sandbox};
use serde_json::Value;

fn check(s: &Value, key: &str) -> Value {
    harness::check_of(s, key).clone()
}

/// Waits until check `key` has `status`, and returns it.
fn reach(sb: &Sandbox, key: &str, status: &str) -> Value {
    sb.wait_check(key, status, Duration::from_secs(15))
}

/// Holds as many open files (and threads) as its control files say.
const HOG: &str = "import os, threading, time\n\
files, threads = [], []\n\
while True:\n    \
    n = int(open('/var/lib/hog/fds').read() or 0)\n    \
    while len(files) < n:\n        files.append(open('/dev/null'))\n    \
    while len(files) > n:\n        files.pop().close()\n    \
    t = int(open('/var/lib/hog/threads').read() or 0)\n    \
    while len(threads) < t:\n        \
        e = threading.Event(); th = threading.Thread(target=e.wait, daemon=True); th.start(); threads.append(e)\n    \
    while len(threads) > t:\n        threads.pop().set()\n    \
    time.sleep(0.1)\n";

#[test]
fn fds_tasks_and_cpu_cross_their_thresholds_as_the_shipped_unit_sees_them() {
    let sb = Sandbox::boot("resources");
    sb.write("/var/lib/hog/fds", "0");
    sb.write("/var/lib/hog/threads", "0");
    sb.write("/var/lib/hog/hog.py", HOG);
    // Another user than unitwatch (DynamicUser), 200 descriptors at most.
    sb.unit(
        "hog.service",
        "[Service]\nDynamicUser=yes\nLimitNOFILE=200\nExecStart=/usr/bin/python3 /var/lib/hog/hog.py\n",
    );
    sb.unit(
        "spin.service",
        "[Service]\nCPUAccounting=yes\nExecStart=/bin/sh -c 'while :; do :; done'\n",
    );
    // A delegated unit whose descriptor holder lives in a sub-cgroup of
    // its own, as a container manager's payload would: counted too.
    sb.write(
        "/var/lib/hog/nest.sh",
        "cg=/sys/fs/cgroup/unified$(grep '^0::' /proc/self/cgroup | cut -d: -f3)\n\
         [ -d /sys/fs/cgroup/unified ] || cg=/sys/fs/cgroup$(grep '^0::' /proc/self/cgroup | cut -d: -f3)\n\
         mkdir -p $cg/payload\n\
         python3 -c 'import time; f=[open(\"/dev/null\") for _ in range(120)]; time.sleep(3600)' &\n\
         echo $! > $cg/payload/cgroup.procs\n\
         echo $! > /run/nest-payload.pid\n\
         exec sleep infinity\n",
    );
    sb.unit(
        "nest.service",
        "[Service]\nDelegate=yes\nLimitNOFILE=200\nExecStart=/bin/sh /var/lib/hog/nest.sh\n",
    );
    sb.ok("systemctl start hog nest");
    let config = "[daemon]\ninterval = \"1s\"\n\
        [[unit]]\nname = \"nest.service\"\nrestart = false\nfds_warn_percent = 50\n\
        [[unit]]\nname = \"hog.service\"\nrestart = false\nfds_warn_percent = 50\nfds_crit_percent = 80\ntasks_warn = 20\ntasks_crit = 40\nswap_warn = \"1GiB\"\n\
        [[unit]]\nname = \"spin.service\"\nrestart = false\ncpu_warn_percent = 40\ncpu_crit_percent = 300\n";
    sb.start_unitwatch(config, "");
    // The generator granted the one capability, for this config, and the
    // unit stays within its hardening target (scripts/test prints it).
    assert_eq!(
        sb.prop("unitwatch", "CapabilityBoundingSet"),
        "cap_dac_read_search"
    );
    let score = sb.security_exposure("unitwatch.service");
    eprintln!("systemd-analyze security unitwatch.service with fds keys: exposure {score:.1} (target <= 3.0)");
    assert!(score <= 3.0, "exposure {score}");
    let pid = sb.prop("hog", "MainPID");
    let c = reach(&sb, "hog.service:fds", "pass");
    let out = c["output"].as_str().unwrap();
    assert!(
        out.starts_with(&format!("pid {pid} has "))
            && out.contains(" of 200 file descriptors open"),
        "{c}"
    );
    // The payload in nest's sub-cgroup is the process nearest its limit.
    let c = reach(&sb, "nest.service:fds", "warn");
    let payload = sb.ok("cat /run/nest-payload.pid");
    let cgroup = sb.ok(&format!("cat /proc/{}/cgroup", payload.trim()));
    assert!(cgroup.contains("nest.service/payload"), "{cgroup}");
    assert!(
        c["output"]
            .as_str()
            .unwrap()
            .starts_with(&format!("pid {} has ", payload.trim())),
        "{c}"
    );
    // python's own descriptors, then 100 more: 50% and up warns.
    sb.write("/var/lib/hog/fds", "100");
    let c = reach(&sb, "hog.service:fds", "warn");
    let open: u64 = out_number(&c, "has ");
    assert!((100..130).contains(&open), "{c}");
    assert!(
        c["output"].as_str().unwrap().ends_with("(warn at 50%)"),
        "{c}"
    );
    // The daemon's count is the kernel's: /proc/PID/fd as root, now.
    let truth: u64 = sb
        .ok(&format!("ls /proc/{pid}/fd | wc -l"))
        .trim()
        .parse()
        .unwrap();
    assert_eq!(open, truth, "{c}");
    sb.write("/var/lib/hog/fds", "170");
    let c = reach(&sb, "hog.service:fds", "fail");
    assert!(
        c["output"].as_str().unwrap().ends_with("(critical at 80%)"),
        "{c}"
    );
    let m: Vec<&Value> = c["measurements"].as_array().unwrap().iter().collect();
    assert_eq!(m[0]["name"], "unit_fds_open");
    assert_eq!(m[0]["labels"]["unit"], "hog.service");
    assert_eq!(m[1]["value"], 200.0);
    sb.write("/var/lib/hog/fds", "0");
    reach(&sb, "hog.service:fds", "pass");

    // Threads: TasksCurrent counts them with the process.
    sb.write("/var/lib/hog/threads", "25");
    let c = reach(&sb, "hog.service:tasks", "warn");
    let tasks = c["observed_value"].as_u64().unwrap();
    assert!((26..30).contains(&tasks), "{c}");
    sb.write("/var/lib/hog/threads", "45");
    reach(&sb, "hog.service:tasks", "fail");
    sb.write("/var/lib/hog/threads", "0");
    reach(&sb, "hog.service:tasks", "pass");

    // A busy loop: about one core, over the 40% warning, under 300%.
    let c = reach(&sb, "spin.service:cpu", "pass");
    assert_eq!(c["output"], "not running");
    sb.ok("systemctl start spin");
    let c = reach(&sb, "spin.service:cpu", "warn");
    let pct = c["observed_value"]
        .as_f64()
        .unwrap_or_else(|| panic!("{c}"));
    assert!(pct > 40.0 && pct < 130.0, "{c}");
    sb.ok("systemctl stop spin");
    reach(&sb, "spin.service:cpu", "pass");

    // Swap: a figure where the kernel accounts it; where it does not
    // (cgroup v1 memory, systemd 252 has no MemorySwapCurrent), a warning
    // that says so, not a 0.
    let c = check(&sb.status_json(), "hog.service:swap");
    if c["status"] == "warn" {
        assert!(c["observed_value"].is_null(), "{c}");
        assert!(
            c["output"]
                .as_str()
                .unwrap()
                .contains("swap is accounted on the unified cgroup hierarchy only"),
            "{c}"
        );
    } else {
        assert_eq!(c["status"], "pass", "{c}");
        assert!(c["observed_value"].is_u64(), "{c}");
    }

    // The changes were logged as events, with the unit.
    let events = sb.journal("UNITWATCH_EVENT=check-changed UNITWATCH_CHECK=hog.service:fds");
    assert!(
        events
            .iter()
            .any(|e| field(e, "MESSAGE").contains("warn -> fail")),
        "{events:?}"
    );
    assert!(events
        .iter()
        .all(|e| field(e, "UNITWATCH_UNIT") == "hog.service"));

    // Without the generator's drop-in, the shipped unit's own hardening
    // hides hog's processes: the check fails and says why, never 0.
    sb.ok("rm /etc/systemd/system-generators/unitwatch-generator");
    sb.ok("systemctl daemon-reload");
    sb.ok("systemctl restart unitwatch");
    assert_eq!(sb.prop("unitwatch", "CapabilityBoundingSet"), "");
    eprintln!(
        "systemd-analyze security unitwatch.service as shipped: exposure {:.1}",
        sb.security_exposure("unitwatch.service")
    );
    let c = reach(&sb, "hog.service:fds", "fail");
    assert!(
        c["output"]
            .as_str()
            .unwrap()
            .starts_with(&format!("cannot see pid {pid} in /proc")),
        "{c}"
    );
    assert!(c["measurements"].is_null(), "{c}");
}

/// The number after `after` in a check's output.
fn out_number(c: &Value, after: &str) -> u64 {
    let out = c["output"].as_str().unwrap();
    let rest = &out[out.find(after).unwrap() + after.len()..];
    rest.split(|ch: char| !ch.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_crash_loop_under_systemds_restart_warns() {
    let sb = Sandbox::boot("resources-restarts");
    sb.unit(
        "crashy.service",
        "[Unit]\nStartLimitIntervalSec=0\n[Service]\nRestart=always\nRestartSec=300ms\nExecStart=/bin/sh -c 'sleep 0.3; exit 3'\n",
    );
    sb.start_unitwatch(
        "[daemon]\ninterval = \"1s\"\n[[unit]]\nname = \"crashy.service\"\nrestarts_warn = 3\n",
        "",
    );
    // The generator grants nothing for a config that counts no descriptors.
    assert_eq!(sb.prop("unitwatch", "CapabilityBoundingSet"), "");
    sb.ok("systemctl start crashy");
    let c = reach(&sb, "crashy.service:restarts", "warn");
    let out = c["output"].as_str().unwrap();
    assert!(out.starts_with("crash loop: "), "{c}");
    assert!(out.contains("by systemd's Restart="), "{c}");
    assert!(c["observed_value"].as_u64().unwrap() >= 4, "{c}");
    // The hour's restarts are kept with the backoff state: a restart of the
    // daemon does not forget the loop.
    sb.ok("systemctl stop crashy");
    sb.ok("systemctl restart unitwatch");
    let c = reach(&sb, "crashy.service:restarts", "warn");
    assert!(c["observed_value"].as_u64().unwrap() >= 4, "{c}");
}

#[test]
fn cpu_contention_crosses_the_pressure_threshold() {
    let sb = Sandbox::boot("resources-psi");
    // The host's own pressure now (a busy CI machine has some): the
    // threshold is set above it, for the contention below to cross.
    let now = std::fs::read_to_string("/proc/pressure/cpu")
        .expect("this kernel has no PSI: the test needs it");
    let base: f64 = unitwatch::checks::pressure::some_avg60(&now).unwrap();
    let warn = (base + 5.0).ceil();
    sb.start_unitwatch(
        &format!("[daemon]\ninterval = \"1s\"\n[pressure]\ncpu_warn = {warn}\ncpu_crit = 99\n"),
        "",
    );
    let c = sb.wait_check_where(
        "pressure:cpu",
        "with a figure",
        Duration::from_secs(15),
        |c| c["observed_value"].is_number(),
    );
    assert_eq!(c["status"], "pass", "{c}");
    // Four busy loops on two cores: some task always waits for a CPU, and
    // the minute's average climbs (about 15 points in 10 s).
    sb.unit(
        "contend.service",
        "[Service]\nExecStart=/bin/sh -c 'for i in 1 2 3 4; do (while :; do :; done) & done; wait'\n",
    );
    sb.ok("systemctl start contend");
    let c = sb.wait_check("pressure:cpu", "warn", Duration::from_secs(45));
    sb.ok("systemctl stop contend");
    let out = c["output"].as_str().unwrap();
    assert!(
        out.starts_with("some task stalled on cpu ")
            && out.ends_with(&format!("(warn at {warn}%)")),
        "{c}"
    );
    let m = &c["measurements"][0];
    assert_eq!(m["name"], "pressure_some_avg60_ratio");
    assert_eq!(m["labels"]["resource"], "cpu");
    assert!(m["value"].as_f64().unwrap() * 100.0 >= warn, "{c}");
}
