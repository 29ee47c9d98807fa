//! The .deb in a real systemd (tests/harness) on clean Debian roots that
//! tests/harness/root.sh debootstraps (kept in target/roots/): install with
//! apt, which resolves Depends from Debian's own packages; an upgrade from
//! the previous release (scripts/prev-release builds it from its commit) to
//! this one, keeping an edited config and the state files; purge leaving
//! nothing. On Debian 11, polkit 0.105 for real: the .pkla grant, and
//! whether the release binary runs there at all. scripts/test builds the
//! packages into target/deb-test/ first.

mod harness;

use std::path::PathBuf;
use std::time::Duration;

use harness::Sandbox;

/// (older, current) packages in target/debian, by dpkg's version order.
fn packages() -> (PathBuf, PathBuf) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/deb-test");
    let mut debs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}: run scripts/test (it builds the packages)",
                dir.display()
            )
        })
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    debs.sort_by(|a, b| {
        let v = |p: &PathBuf| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.split('_').nth(1).unwrap_or("").to_string()
        };
        let (va, vb) = (v(a), v(b));
        if std::process::Command::new("dpkg")
            .args(["--compare-versions", &va, "lt", &vb])
            .status()
            .unwrap()
            .success()
        {
            std::cmp::Ordering::Less
        } else if va == vb {
            std::cmp::Ordering::Equal
        } else {
            std::cmp::Ordering::Greater
        }
    });
    assert!(
        debs.len() >= 2,
        "need an older and a current package in {} (scripts/test builds them): {debs:?}",
        dir.display()
    );
    (debs[0].clone(), debs[debs.len() - 1].clone())
}

/// Where a test leaves figures for scripts/test to print.
fn report(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/deb-test")
        .join(name)
}

/// Copies a package into the sandbox; returns its path there.
fn put(sb: &Sandbox, deb: &PathBuf) -> String {
    let inside = format!(
        "/var/cache/unitwatch-test/{}",
        deb.file_name().unwrap().to_string_lossy()
    );
    std::fs::create_dir_all(sb.path("/var/cache/unitwatch-test")).unwrap();
    std::fs::copy(deb, sb.path(&inside)).unwrap();
    inside
}

/// A clean Debian root of `suite` (tests/harness/root.sh), built on first
/// use and kept in target/roots/; `download` are the packages whose .debs
/// it holds in its apt cache, uninstalled, for apt to resolve offline.
fn clean_root(suite: &str, download: &[&str]) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/roots")
        .join(suite);
    if !root.join(".complete").exists() {
        let out = std::process::Command::new("sh")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/harness/root.sh"
            ))
            .arg(suite)
            .arg(&root)
            .args(download)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "root.sh {suite}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    root
}

/// Debian 12 as debootstrap leaves it, with polkitd's .debs in the cache.
fn bookworm() -> PathBuf {
    clean_root("bookworm", &["polkitd"])
}

/// Debian 11: polkit 0.105 (policykit-1) and glibc 2.31.
fn bullseye() -> PathBuf {
    clean_root("bullseye", &["policykit-1"])
}

/// Two units to watch and not to watch.
fn workers(sb: &Sandbox) {
    sb.unit(
        "worker.service",
        "[Service]\nExecStart=/bin/sleep infinity\n",
    );
    sb.unit(
        "other.service",
        "[Service]\nExecStart=/bin/sleep infinity\n",
    );
    sb.ok("systemctl start worker other");
}

fn boot() -> Sandbox {
    let sb = Sandbox::boot_on("deb", &bookworm());
    workers(&sb);
    sb
}

/// `apt-get install` of files or packages, from what the root's apt cache
/// holds (the sandbox has no network): Depends resolved as on a VM.
fn apt_install(sb: &Sandbox, what: &str) -> String {
    sb.ok(&format!(
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -o Dpkg::Use-Pty=0 {what} 2>&1"
    ))
}

/// The polkit list the service writes as root (`config polkit-rules`).
const LIST: &str = "/etc/polkit-1/rules.d/49-unitwatch-units.rules";
const PKLA: &str = "/var/lib/polkit-1/localauthority/10-vendor.d/unitwatch.pkla";

/// Ubuntu 22.04's polkit (policykit-1 0.105) reads no JavaScript rules: the
/// postinst gives it the .pkla instead, and the package takes it away on
/// remove. Simulated here: polkitd removed, a policykit-1 0.105 stand-in
/// package installed (this tests the maintainer scripts, not polkit 0.105).
#[test]
fn polkit_0105_gets_the_pkla_grant() {
    let (_, new) = packages();
    let sb = boot();
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("pk");
    std::fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
    std::fs::write(
        pkg.join("DEBIAN/control"),
        "Package: policykit-1\nVersion: 0.105-33\nArchitecture: all\nMaintainer: test <t@example.org>\nDescription: stand-in for Ubuntu 22.04's polkit\n",
    )
    .unwrap();
    let stand_in = dir.path().join("policykit-1_0.105-33_all.deb");
    let built = std::process::Command::new("dpkg-deb")
        .args(["--build", "--root-owner-group"])
        .arg(&pkg)
        .arg(&stand_in)
        .output()
        .unwrap();
    assert!(built.status.success(), "{built:?}");
    let stand_in_in = put(&sb, &stand_in);
    let new_in = put(&sb, &new);
    // (The clean root has no polkit installed yet.)
    sb.ok(&format!("dpkg -i {stand_in_in}"));
    let out = apt_install(&sb, &new_in);
    let pkla = sb
        .read(PKLA)
        .unwrap_or_else(|| panic!("postinst installs the .pkla on polkit 0.105: {out}"));
    assert!(pkla.contains("Identity=unix-user:unitwatch"), "{pkla}");
    assert!(
        pkla.contains("Action=org.freedesktop.systemd1.manage-units"),
        "{pkla}"
    );
    sb.ok("apt-get remove -y unitwatch");
    assert!(!sb.path(PKLA).exists(), "the grant outlived the package");
}

/// Debian 11, booted as it is (systemd 247, polkit 0.105 from Debian's
/// policykit-1, glibc 2.31), the polkit of Ubuntu 22.04. The release binary
/// needs glibc 2.34, so the package cannot install there: apt refuses it
/// for libc6, and the binary itself does not start. The .pkla grant is
/// tested alone, as the postinst installs it: a restart by the `unitwatch`
/// user passes, the same request by another user is refused, and, since
/// polkit 0.105 sees neither the unit nor the verb, `unitwatch` may stop
/// any unit too (the README says so).
#[test]
fn polkit_0105_for_real_on_debian_11() {
    let (_, new) = packages();
    let sb = Sandbox::boot_on("bullseye", &bullseye());
    workers(&sb);
    let new_in = put(&sb, &new);
    // glibc 2.31: the package's Depends cannot be met, and its binary
    // cannot run.
    let refused = sb.sh(&format!(
        "DEBIAN_FRONTEND=noninteractive apt-get install -y {new_in} 2>&1"
    ));
    let said = String::from_utf8_lossy(&refused.stdout);
    assert!(!refused.status.success(), "installed on glibc 2.31: {said}");
    assert!(said.contains("libc6"), "{said}");
    sb.ok(&format!("dpkg-deb -x {new_in} /tmp/unpacked"));
    let ran = sb.sh("/tmp/unpacked/usr/bin/unitwatchd --version 2>&1");
    let said = String::from_utf8_lossy(&ran.stdout);
    assert!(!ran.status.success(), "{said}");
    assert!(said.contains("GLIBC_2.3"), "{said}");

    // polkit 0.105, from Debian's package.
    apt_install(&sb, "policykit-1");
    let version = sb.ok("dpkg-query -W -f '${Version}' policykit-1");
    assert!(version.starts_with("0.105"), "{version}");
    // What the postinst does, run as it is: the user (sysusers.d), the
    // .pkla where the package puts it, then the script's own choice.
    sb.write(
        "/etc/sysusers.d/unitwatch.conf",
        &harness::read_repo("packaging/unitwatch.sysusers"),
    );
    sb.ok("systemd-sysusers /etc/sysusers.d/unitwatch.conf");
    sb.write(
        "/usr/share/unitwatch/unitwatch-polkit-0.105.pkla",
        &harness::read_repo("packaging/unitwatch-polkit-0.105.pkla"),
    );
    sb.write("/var/tmp/postinst", &harness::read_repo("debian/postinst"));
    sb.ok("sh /var/tmp/postinst configure");
    assert!(
        sb.path(PKLA).exists(),
        "the postinst did not install the .pkla"
    );
    sb.ok("systemctl restart polkit");
    let as_user = |user: &str, cmd: &str| {
        sb.sh(&format!(
            "setpriv --reuid={user} --regid={user} --clear-groups {cmd} 2>&1"
        ))
    };
    let restarted = sb.prop("worker.service", "ActiveEnterTimestampMonotonic");
    let ok = as_user("unitwatch", "systemctl restart worker.service");
    assert!(ok.status.success(), "{ok:?}");
    assert_ne!(
        sb.prop("worker.service", "ActiveEnterTimestampMonotonic"),
        restarted
    );
    // Another system user gets nothing from it.
    let no = as_user("nobody", "systemctl restart worker.service");
    assert!(!no.status.success(), "{no:?}");
    // 0.105 cannot tell the verb or the unit: stop is granted as well.
    let stop = as_user("unitwatch", "systemctl stop other.service");
    assert!(stop.status.success(), "{stop:?}");
    assert_eq!(sb.prop("other.service", "ActiveState"), "inactive");
    // Without the grant, the same restart is refused.
    sb.ok(&format!("rm {PKLA} && systemctl restart polkit"));
    let no = as_user("unitwatch", "systemctl restart worker.service");
    assert!(!no.status.success(), "{no:?}");
}

#[test]
fn install_upgrade_purge() {
    let (old, new) = packages();
    let sb = boot();
    let old_in = put(&sb, &old);
    let new_in = put(&sb, &new);

    // Install with apt, as on a VM: the clean root has no polkit, and apt
    // brings Debian's polkitd in for the package's Depends.
    assert!(!sb
        .sh("dpkg-query -W -f '${Status}' polkitd | grep -q 'install ok installed'")
        .status
        .success());
    let out = apt_install(&sb, &old_in);
    assert!(
        out.contains("polkitd"),
        "apt did not resolve polkitd: {out}"
    );
    assert!(
        sb.sh("dpkg-query -W -f '${Status}' polkitd | grep -q 'install ok installed'")
            .status
            .success(),
        "{out}"
    );
    // Install: both services running, hardened, answering.
    for u in ["unitwatch", "unitwatch-http"] {
        sb.wait_for(&format!("{u} active"), Duration::from_secs(10), || {
            (sb.prop(u, "ActiveState") == "active").then_some(())
        });
    }
    // polkitd 122 reads 50-unitwatch.rules: no coarse .pkla grant.
    assert!(!sb.path(PKLA).exists());
    let uid = sb.ok("id -u unitwatch");
    assert_ne!(uid.trim(), "0");
    let pid = sb.prop("unitwatch", "MainPID");
    assert_eq!(sb.ok(&format!("ps -o user= -p {pid}")).trim(), "unitwatch");
    sb.wait_for("/health 200", Duration::from_secs(10), || {
        (sb.curl("http://127.0.0.1:8080/health").0 == 200).then_some(())
    });
    assert!(sb.ok("unitwatchd config check").contains("valid"));

    // Hardening, as systemd scores it; scripts/test prints the figures.
    let mut figures = String::new();
    for (unit, target) in [("unitwatch.service", 3.0), ("unitwatch-http.service", 2.0)] {
        let exposure = sb.security_exposure(unit);
        figures += &format!(
            "systemd-analyze security {unit}: exposure {exposure:.1} (target <= {target:.1})\n"
        );
        assert!(exposure <= target, "{unit}: exposure {exposure} > {target}");
    }
    std::fs::write(report("security.txt"), &figures).unwrap();

    // The manual and the completions are installed and render.
    for page in ["unitwatchd", "unitwatch-http", "unitwatch.toml"] {
        let out = sb.ok(&format!("man -P cat {page} 2>&1"));
        assert!(out.contains("SEE ALSO"), "man {page}: {out}");
    }
    assert!(sb
        .path("/usr/share/bash-completion/completions/unitwatchd")
        .exists());

    // The operator watches a unit: edit, reload, a failure, a restart
    // through polkit, backoff state on disk.
    let conf = sb.read("/etc/unitwatch/unitwatch.toml").unwrap();
    let shipped_changed = conf != harness::read_repo("packaging/unitwatch.toml");
    sb.write(
        "/etc/unitwatch/unitwatch.toml",
        &format!("{conf}\n[[unit]]\nname = \"worker.service\"\n# edited by the operator\n"),
    );
    sb.ok("systemctl reload unitwatch");
    sb.wait_for("worker watched", Duration::from_secs(10), || {
        sb.status_json()["units"].get("worker.service").map(|_| ())
    });
    // polkit: the watched unit may be restarted by the unitwatch user, an
    // unwatched one may not.
    let as_unitwatch = |cmd: &str| {
        sb.sh(&format!(
            "setpriv --reuid=unitwatch --regid=unitwatch --clear-groups {cmd}"
        ))
    };
    assert!(as_unitwatch("systemctl restart worker.service")
        .status
        .success());
    harness::assert_refused_by_polkit(
        &as_unitwatch("systemctl restart other.service"),
        "an unwatched unit",
    );
    assert_eq!(sb.prop("other.service", "ActiveState"), "active");
    assert!(!as_unitwatch("systemctl stop worker.service")
        .status
        .success());

    sb.kill_main("worker.service");
    sb.wait_for("worker restarted", Duration::from_secs(30), || {
        (sb.journal("UNITWATCH_EVENT=unit-restarted").len() == 1).then_some(())
    });
    // The event is logged as the restart is issued; the state file follows
    // within one write, off the daemon's loop.
    sb.wait_for("backoff.json written", Duration::from_secs(5), || {
        let b = sb.read("/var/lib/unitwatch/backoff.json")?;
        let v: serde_json::Value = serde_json::from_str(&b).ok()?;
        (v["units"]["worker.service"]["attempts"] == 1).then_some(())
    });

    // Upgrade: services restarted, config edit and backoff state kept.
    let pids = (
        sb.prop("unitwatch", "MainPID"),
        sb.prop("unitwatch-http", "MainPID"),
    );
    // Upgrade: the previous release's code and state files to this one's,
    // unattended. The config is a conffile the operator edited: where the
    // shipped one changed too, dpkg would ask (and, with no terminal, stop
    // half-configured), so an unattended upgrade says what it wants: keep
    // the operator's, the new default beside it as .dpkg-dist.
    apt_install(
        &sb,
        &format!("-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold {new_in}"),
    );
    // An upgraded machine is as a fresh install: 0.1.0-1 enabled the
    // socket unit, which is an alternative to [http] listen, not a default.
    assert_eq!(
        sb.sh_out("systemctl is-enabled unitwatch-http.socket")
            .trim(),
        "disabled"
    );
    assert_eq!(sb.prop("unitwatch-http.socket", "ActiveState"), "inactive");
    let dist = sb.read("/etc/unitwatch/unitwatch.toml.dpkg-dist");
    if shipped_changed {
        assert_eq!(
            dist.as_deref(),
            Some(harness::read_repo("packaging/unitwatch.toml").as_str()),
            "the new default is not beside the kept config"
        );
    } else {
        assert!(dist.is_none(), "no new default, yet a .dpkg-dist");
    }
    sb.wait_for("restarted by the upgrade", Duration::from_secs(10), || {
        let now = (
            sb.prop("unitwatch", "MainPID"),
            sb.prop("unitwatch-http", "MainPID"),
        );
        (now.0 != pids.0 && now.1 != pids.1 && now.0 != "0" && now.1 != "0").then_some(())
    });
    assert!(sb
        .read("/etc/unitwatch/unitwatch.toml")
        .unwrap()
        .contains("# edited by the operator"));
    assert_eq!(sb.backoff_json()["units"]["worker.service"]["attempts"], 1);
    // The package's generator: the capability to count another user's
    // descriptors only while the config counts them, from the next
    // daemon-reload, and gone again with the keys.
    assert_eq!(sb.prop("unitwatch", "CapabilityBoundingSet"), "");
    let edited = sb.read("/etc/unitwatch/unitwatch.toml").unwrap();
    // Into the last table, the operator's [[unit]] worker.service.
    // And the systemd-journal group only while a journal check reads
    // another unit's entries.
    sb.write(
        "/etc/unitwatch/unitwatch.toml",
        &format!(
            "{edited}\nfds_warn_percent = 70\n\
             [[check]]\ntype = \"journal\"\nname = \"worker-log\"\nunit = \"worker.service\"\n\
             priority = \"err\"\nwarn_count = 1000\n"
        ),
    );
    sb.ok("systemctl daemon-reload && systemctl restart unitwatch");
    assert_eq!(
        sb.prop("unitwatch", "CapabilityBoundingSet"),
        "cap_dac_read_search"
    );
    assert_eq!(
        sb.prop("unitwatch", "SupplementaryGroups"),
        "systemd-journal"
    );
    let c = sb.wait_check("worker-log:journal", "pass", Duration::from_secs(15));
    assert!(
        c["output"].as_str().unwrap().ends_with(" in the last 5m"),
        "{c}"
    );
    sb.wait_for(
        "worker's descriptors counted",
        Duration::from_secs(15),
        || {
            let c = harness::check_of(&sb.status_json(), "worker.service:fds").clone();
            (c["status"] == "pass" && c["output"].as_str()?.contains(" file descriptors open"))
                .then_some(())
        },
    );
    sb.write("/etc/unitwatch/unitwatch.toml", &edited);
    sb.ok("systemctl daemon-reload && systemctl restart unitwatch");
    assert_eq!(sb.prop("unitwatch", "CapabilityBoundingSet"), "");
    assert_eq!(sb.prop("unitwatch", "SupplementaryGroups"), "");
    let version = sb.ok("dpkg-query -W -f '${Version}' unitwatch");
    assert!(
        new.to_string_lossy().contains(&format!("_{version}_")),
        "{version}"
    );
    sb.wait_for("/health 200 after upgrade", Duration::from_secs(10), || {
        (sb.curl("http://127.0.0.1:8080/health").0 == 200).then_some(())
    });
    // This version's service writes, as root at its start, the list polkit
    // answers from (the previous release had none), with the operator's
    // unit in it.
    let listed = sb
        .read(LIST)
        .expect("the service writes the polkit list at start and reload");
    assert!(listed.contains("\"worker.service\""), "{listed}");
    assert_eq!(sb.ok(&format!("stat -c '%U %a' {LIST}")).trim(), "root 644");
    // Unit names shaped like options, which systemd accepts: this
    // version's rule passes them after "--", so none is read as a flag
    // (`-h` and `-V` exit 0, as --help and --version, which allowed them:
    // with the previous release's rule, -hostile.service was allowed).
    let hostile = [
        "-hostile.service",
        "-V.service",
        "--help.service",
        "--config.service",
    ];
    for name in hostile {
        sb.unit(name, "[Service]\nExecStart=/bin/sleep infinity\n");
    }
    for name in hostile {
        harness::assert_refused_by_polkit(
            &as_unitwatch(&format!("systemctl --no-ask-password start -- {name}")),
            name,
        );
        assert_eq!(sb.prop(name, "ActiveState"), "inactive", "{name}");
    }
    // The watched unit is still allowed.
    assert!(
        as_unitwatch("systemctl --no-ask-password restart -- worker.service")
            .status
            .success()
    );

    // Idempotent: the same version again (dpkg runs every script anew).
    sb.ok(&format!("dpkg -i {new_in}"));
    for u in ["unitwatch", "unitwatch-http"] {
        sb.wait_for(
            &format!("{u} active after reinstall"),
            Duration::from_secs(10),
            || (sb.prop(u, "ActiveState") == "active").then_some(()),
        );
    }
    assert_eq!(sb.backoff_json()["units"]["worker.service"]["attempts"], 1);
    assert!(sb
        .read("/etc/unitwatch/unitwatch.toml")
        .unwrap()
        .contains("# edited by the operator"));

    let files = sb.ok("dpkg -L unitwatch");

    // The socket unit is installed, not enabled; switching to it serves
    // on systemd's socket.
    assert_eq!(
        sb.sh_out("systemctl is-enabled unitwatch-http.socket")
            .trim(),
        "disabled"
    );
    sb.ok("systemctl disable --now unitwatch-http.service");
    sb.ok("systemctl enable --now unitwatch-http.socket");
    sb.wait_for(
        "/health 200 by socket activation",
        Duration::from_secs(10),
        || (sb.curl("http://127.0.0.1:8080/health").0 == 200).then_some(()),
    );
    assert_eq!(sb.prop("unitwatch-http.service", "ActiveState"), "active");

    // Remove: services stopped, config and state kept.
    sb.ok("apt-get remove -y unitwatch");
    assert!(
        !sb.path(LIST).exists(),
        "the polkit list outlived the package"
    );
    for u in ["unitwatch", "unitwatch-http", "unitwatch-http.socket"] {
        assert_eq!(sb.prop(u, "ActiveState"), "inactive", "{u}");
    }
    assert_ne!(sb.curl("http://127.0.0.1:8080/health").0, 200);
    assert!(sb.path("/etc/unitwatch/unitwatch.toml").exists());
    assert!(sb.path("/var/lib/unitwatch/backoff.json").exists());

    // Purge: nothing of the package left.
    sb.ok("apt-get purge -y unitwatch");
    let mut left: Vec<String> = files
        .lines()
        .filter(|f| !f.is_empty())
        .filter(|f| {
            // Shared directories that other packages own too.
            let p = sb.path(f);
            p.exists() && !p.is_dir()
        })
        .map(str::to_string)
        .collect();
    for p in [
        "/etc/unitwatch",
        "/var/lib/unitwatch",
        "/run/unitwatch",
        "/usr/share/unitwatch",
    ] {
        if sb.path(p).exists() {
            left.push(p.to_string());
        }
    }
    let links = sb.sh_out(
        "find /etc/systemd /var/lib/systemd/deb-systemd-helper-enabled -name '*unitwatch*' 2>/dev/null",
    );
    left.extend(links.lines().map(str::to_string));
    if sb.sh("getent passwd unitwatch").status.success() {
        left.push("user unitwatch".into());
    }
    if sb.sh("getent group unitwatch").status.success() {
        left.push("group unitwatch".into());
    }
    assert!(left.is_empty(), "left after purge: {left:?}");
    assert_eq!(sb.prop("unitwatch", "LoadState"), "not-found");
}

/// lintian on the current package: no error and no warning that is not
/// overridden with a reason (packaging/lintian-overrides).
#[test]
fn lintian_is_clean() {
    let (_, new) = packages();
    let out = std::process::Command::new("lintian")
        // --fail-on would count overridden findings too when they are
        // shown: judge by the lines instead (overridden ones print as O:).
        .args([
            "--pedantic",
            "--display-info",
            "--show-overrides",
            "--fail-on",
            "none",
        ])
        .arg(&new)
        .output()
        .expect("lintian (scripts/deps installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    std::fs::write(
        report("lintian.txt"),
        format!("lintian --pedantic {}:\n{text}", new.display()),
    )
    .unwrap();
    let findings: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("E: ") || l.starts_with("W: "))
        .collect();
    assert!(findings.is_empty(), "{findings:?}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The overrides are in force (a renamed tag would leave them unused).
    assert!(!text.contains("unused-override"), "{text}");
}
