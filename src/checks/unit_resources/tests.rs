//! The grading of the resource figures and the /proc count, on fixtures.

use super::read::*;
use super::*;
use crate::units::Fds;
use std::path::Path;
use std::time::Duration;
use crate::backoff::Timestamp;
use crate::units::{UnitStatus, UnitTable};

fn config(keys: &str) -> Config {
    Config::parse(
        &format!("[[unit]]\nname = \"a.service\"\n{keys}\n[[unit]]\nname = \"b.service\"\n"),
        Path::new("t.toml"),
    )
    .unwrap()
}

fn status(active: &str, r: Resources) -> UnitStatus {
    UnitStatus {
        active_state: active.into(),
        resources: Some(std::sync::Arc::new(r)),
        ..Default::default()
    }
}

/// Runs the check of `measurement` on `a.service` as `s`.
fn run(cfg: &Config, measurement: &str, s: UnitStatus) -> Outcome {
    let mut units = UnitTable::new();
    units.insert("a.service".into(), s);
    let checks = build(cfg);
    let def = checks
        .iter()
        .find(|d| d.id.measurement == measurement)
        .expect("a check of that figure");
    let How::State(check) = &def.how else {
        panic!("a state check")
    };
    check.run(&CheckContext {
        now: SystemTime::now(),
        units: &units,
        backoff: &Default::default(),
        systemd_error: None,
        containers: &Default::default(),
    })
}

#[test]
fn only_the_keys_set_build_checks() {
    let cfg = config("tasks_warn = 10\nfds_crit_percent = 90");
    let keys: Vec<String> = build(&cfg).iter().map(|d| d.id.key()).collect();
    assert_eq!(keys, ["a.service:fds", "a.service:tasks"]);
    assert!(counts_fds(&cfg));
    assert!(!counts_fds(&config("tasks_warn = 10")));
    assert_eq!(
        Wants::of(&cfg.units[0]),
        Wants {
            fds: true,
            tasks: true,
            ..Default::default()
        }
    );
    assert!(!Wants::of(&cfg.units[1]).any());
}

#[test]
fn tasks_are_graded_and_exported_with_the_unit() {
    let cfg = config("tasks_warn = 10\ntasks_crit = 20");
    let at = |n| {
        run(
            &cfg,
            "tasks",
            status(
                "active",
                Resources {
                    tasks: Some(Reading::Value(n)),
                    ..Default::default()
                },
            ),
        )
    };
    assert_eq!(at(9).status, Status::Pass);
    let o = at(10);
    assert_eq!(o.status, Status::Warn);
    assert_eq!(o.output.as_deref(), Some("10 tasks (warn at 10 tasks)"));
    let o = at(25);
    assert_eq!(o.status, Status::Fail);
    assert_eq!(o.output.as_deref(), Some("25 tasks (critical at 20 tasks)"));
    assert_eq!(
        o.measurements,
        [Measurement::new("unit_tasks", 25.0).label("unit", "a.service")]
    );
}

#[test]
fn what_cannot_be_read_fails_with_the_reason_and_what_systemd_lacks_warns() {
    let cfg = config("fds_warn_percent = 50\nswap_warn = \"1MiB\"");
    let o = run(
        &cfg,
        "fds",
        status(
            "active",
            Resources {
                fds: Some(Reading::Error("permission denied reading /proc/812/fd".into())),
                ..Default::default()
            },
        ),
    );
    assert_eq!(o.status, Status::Fail);
    assert_eq!(o.output.as_deref(), Some("permission denied reading /proc/812/fd"));
    assert!(o.measurements.is_empty(), "no figure is made up");
    let o = run(
        &cfg,
        "swap",
        status(
            "active",
            Resources {
                swap: Some(Reading::Unavailable("systemd reports no MemorySwapCurrent".into())),
                ..Default::default()
            },
        ),
    );
    assert_eq!(o.status, Status::Warn);
    // A unit that is not running has nothing to count.
    let o = run(&cfg, "fds", status("inactive", Resources::default()));
    assert_eq!((o.status, o.output.as_deref()), (Status::Pass, Some("not running")));
}

#[test]
fn fds_report_the_worst_process() {
    let cfg = config("fds_warn_percent = 68\nfds_crit_percent = 90");
    let at = |open| {
        run(
            &cfg,
            "fds",
            status(
                "active",
                Resources {
                    fds: Some(Reading::Value(Fds {
                        pid: 812,
                        open,
                        limit: 1024,
                        processes: 3,
                    })),
                    ..Default::default()
                },
            ),
        )
    };
    assert_eq!(at(600).status, Status::Pass);
    let o = at(712);
    assert_eq!(o.status, Status::Warn);
    assert_eq!(
        o.output.as_deref(),
        Some("pid 812 has 712 of 1024 file descriptors open (69.5%; 3 processes counted) (warn at 68%)")
    );
    assert_eq!(o.observed_value, serde_json::json!(69.53));
    assert_eq!(at(1000).status, Status::Fail);
    assert_eq!(
        at(1000).measurements,
        [
            Measurement::new("unit_fds_open", 1000.0).label("unit", "a.service"),
            Measurement::new("unit_fds_limit", 1024.0).label("unit", "a.service"),
        ]
    );
}

#[test]
fn cpu_is_the_delta_over_the_interval() {
    let t0 = std::time::Instant::now();
    let prev = Resources {
        cpu_usage_nsec: Some(Reading::Value(1_000_000_000)),
        read_at: Some(t0),
        ..Default::default()
    };
    // 1.5 s of CPU in 2 s of wall time: 75% of a core.
    let t1 = t0 + Duration::from_secs(2);
    assert_eq!(cpu_ppm(&prev, 2_500_000_000, t1), Some(750_000));
    // Two cores busy: 200%.
    assert_eq!(cpu_ppm(&prev, 5_000_000_000, t1), Some(2_000_000));
    // The counter went back (a new cgroup): no figure, not a huge one.
    assert_eq!(cpu_ppm(&prev, 10, t1), None);
    assert_eq!(cpu_ppm(&Resources::default(), 10, t1), None);

    let cfg = config("cpu_warn_percent = 50\ncpu_crit_percent = 150");
    let at = |ppm| {
        run(
            &cfg,
            "cpu",
            status(
                "active",
                Resources {
                    cpu_usage_nsec: Some(Reading::Value(1)),
                    cpu_ppm: ppm,
                    ..Default::default()
                },
            ),
        )
    };
    assert_eq!(at(None).status, Status::Pass, "one read is no interval yet");
    assert_eq!(at(Some(400_000)).status, Status::Pass);
    let o = at(Some(750_000));
    assert_eq!(o.status, Status::Warn);
    assert_eq!(o.output.as_deref(), Some("75.0% of a core (warn at 50%)"));
    assert_eq!(o.measurements[0].value, 0.75);
    assert_eq!(at(Some(2_000_000)).status, Status::Fail);
}

#[test]
fn restarts_count_systemds_and_unitwatchs_in_the_last_hour() {
    let cfg = config("restarts_warn = 5");
    let now = SystemTime::now();
    let ago = |m: u64| Timestamp(now - Duration::from_secs(m * 60));
    let mut b = UnitBackoff {
        restarts: vec![ago(5), ago(10)],
        systemd_restarts: vec![ago(1), ago(2), ago(3), ago(90)],
        ..Default::default()
    };
    let checks = build(&cfg);
    let How::State(check) = &checks[0].how else {
        panic!()
    };
    let units = UnitTable::new();
    let run = |b: &UnitBackoff| {
        let backoff = [("a.service".to_string(), b.clone())].into_iter().collect();
        check.run(&CheckContext {
            now,
            units: &units,
            backoff: &backoff,
            systemd_error: None,
            containers: &Default::default(),
        })
    };
    let o = run(&b);
    assert_eq!(o.status, Status::Pass, "5 is not more than 5: {o:?}");
    assert_eq!(
        o.output.as_deref(),
        Some("5 restarts in the last hour (3 by systemd's Restart=, 2 by unitwatch)")
    );
    b.record_systemd_restart(now);
    let o = run(&b);
    assert_eq!(o.status, Status::Warn);
    assert!(o.output.unwrap().starts_with("crash loop: 6 restarts"));
    assert_eq!(b.systemd_restarts.len(), 4, "the one 90 minutes ago pruned");
}

#[test]
fn bad_thresholds_name_the_key() {
    let bad = |keys: &str| {
        Config::parse(
            &format!("[[unit]]\nname = \"a.service\"\n{keys}\n"),
            Path::new("t.toml"),
        )
        .unwrap_err()
        .to_string()
    };
    assert_eq!(
        bad("tasks_warn = 50\ntasks_crit = 20"),
        "t.toml:3:14: unit[0].tasks_warn: 50 is above tasks_crit (20)"
    );
    assert!(bad("fds_warn_percent = 120").contains("unit[0].fds_warn_percent: must be above 0 and at most 100, got 120"));
    assert!(bad("cpu_crit_percent = 0").contains("unit[0].cpu_crit_percent: must be above 0"));
    assert!(bad("restarts_warn = 0").contains("unit[0].restarts_warn: must be at least 1"));
}

#[test]
fn counting_fds_in_proc() {
    let dir = tempfile::tempdir().unwrap();
    let limits = |soft: &str| {
        format!(
            "Limit                     Soft Limit           Hard Limit           Units\n\
             Max processes             63508                63508                processes\n\
             Max open files            {soft}                 524288               files\n"
        )
    };
    let proc_ = |pid: u32, soft: &str, fds: usize| {
        let p = dir.path().join(pid.to_string());
        std::fs::create_dir_all(p.join("fd")).unwrap();
        std::fs::write(p.join("limits"), limits(soft)).unwrap();
        for i in 0..fds {
            std::fs::write(p.join("fd").join(i.to_string()), "").unwrap();
        }
    };
    proc_(10, "1024", 100);
    proc_(11, "256", 200);
    proc_(12, "unlimited", 5000);
    // 11 is nearest its limit (78%), though 12 has more open.
    let Reading::Value(f) = count_fds(dir.path(), &[10, 11, 12, 99]) else {
        panic!()
    };
    assert_eq!(
        f,
        Fds {
            pid: 11,
            open: 200,
            limit: 256,
            processes: 3
        },
        "99 is gone and not counted"
    );
    assert_eq!(count_fds(dir.path(), &[]), Reading::Value(Fds::default()));
    match count_fds(dir.path(), &[98, 99]) {
        Reading::Error(e) => assert!(e.starts_with("cannot see pid 98 in "), "{e}"),
        r => panic!("{r:?}"),
    }
    assert_eq!(parse_nofile(&limits("4096")), Some(4096));
    // A limit once read is kept; a process gone is dropped from the cache.
    let mut cache = vec![(10, 50), (77, 1)];
    let Reading::Value(f) = count_fds_cached(dir.path(), &[10], &mut cache) else {
        panic!()
    };
    assert_eq!((f.open, f.limit), (100, 50), "the cached limit, not the file's 1024");
    assert_eq!(cache, [(10, 50)]);
    // The real /proc: this process's own count, as the kernel gives it.
    let me = std::process::id();
    let Reading::Value(f) = count_fds(Path::new("/proc"), &[me]) else {
        panic!()
    };
    let listed = std::fs::read_dir(format!("/proc/{me}/fd")).unwrap().count() as u64;
    assert!(f.open.abs_diff(listed) <= 2, "{} vs {listed}", f.open);
    assert_eq!(parse_nofile("nothing"), None);
}

#[test]
fn the_unified_cgroup_is_read_where_systemd_has_no_figure() {
    let sys = tempfile::tempdir().unwrap();
    // A hybrid host: the unified hierarchy under fs/cgroup/unified.
    let cg = sys.path().join("fs/cgroup/unified/system.slice/x.service");
    std::fs::create_dir_all(&cg).unwrap();
    std::fs::write(sys.path().join("fs/cgroup/unified/cgroup.controllers"), "cpu pids\n").unwrap();
    std::fs::write(
        cg.join("cpu.stat"),
        "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
    )
    .unwrap();
    std::fs::write(cg.join("memory.swap.current"), "4096\n").unwrap();
    assert_eq!(
        cgroup2_cpu_nsec(sys.path(), "/system.slice/x.service"),
        Some(1_500_000)
    );
    assert_eq!(
        cgroup2_u64(sys.path(), "/system.slice/x.service", "memory.swap.current"),
        Some(4096)
    );
    assert_eq!(cgroup2_cpu_nsec(sys.path(), "/system.slice/y.service"), None);
    assert_eq!(parse_usage_usec("user_usec 3\n"), None);
}

#[test]
fn the_cgroups_processes_are_listed_with_its_sub_cgroups() {
    let sys = tempfile::tempdir().unwrap();
    let cg = sys.path().join("fs/cgroup/system.slice/x.service");
    std::fs::create_dir_all(cg.join("worker")).unwrap();
    std::fs::write(sys.path().join("fs/cgroup/cgroup.controllers"), "cpu pids\n").unwrap();
    std::fs::write(cg.join("cgroup.procs"), "10\n11\n").unwrap();
    std::fs::write(cg.join("worker/cgroup.procs"), "12\n").unwrap();
    let mut pids = cgroup2_pids(sys.path(), "/system.slice/x.service").unwrap();
    pids.sort();
    assert_eq!(pids, [10, 11, 12]);
    assert_eq!(cgroup2_pids(sys.path(), "/system.slice/y.service"), None);
}
