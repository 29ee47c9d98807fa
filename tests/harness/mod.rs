//! A real systemd 252 as PID 1 in fresh namespaces over an overlay of `/`,
//! for tests that claim systemd, D-Bus, sd_notify or journald behaviour.
//!
//! Each [`Sandbox`] boots its own systemd (about a second); dropping it
//! powers it off and removes its overlay. Needs root. Run the tests one at a
//! time (`--test-threads 1`, as scripts/test does): the sandboxes share the
//! host's cgroup tree, so two at once that run units of the same name
//! collide there.
#![allow(dead_code)]

pub mod engine;
pub mod receiver;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Units of this machine image that would start in every sandbox and only
/// add noise (they are enabled on the host, and the sandbox overlays `/`).
const MASKED: &[&str] = &[
    "postgresql.service",
    "e2scrub_reap.service",
    "getty@tty1.service",
    "systemd-timesyncd.service",
    "monit.service",
    "prometheus.service",
    "prometheus-node-exporter.service",
    // A test starts its own engine (harness/engine.rs), with the flags
    // this machine kind needs; the host's would fail to start here.
    "docker.service",
    "docker.socket",
    "containerd.service",
];

pub struct Sandbox {
    pub dir: PathBuf,
    pub pid1: u32,
    unshare: Child,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where the sandbox sees the built binaries: a bind mount of their
/// directory (see boot.sh), outside /tmp and /run so that services with
/// PrivateTmp= see them too.
pub const BIN_DIR: &str = "/usr/local/lib/unitwatch-test";

/// boot.sh's bind mounts: the build's binary directory at [`BIN_DIR`].
fn bind_mounts() -> Vec<String> {
    let host = PathBuf::from(env!("CARGO_BIN_EXE_unitwatchd"));
    let dir = host.parent().expect("binary has a directory");
    vec![format!("{}:{BIN_DIR}", dir.display())]
}

/// rotel-agent, the OTLP collector the telemetry tests and the benchmark
/// run (`pip install --pre rotel`; the binary sits inside the package).
pub fn rotel_agent() -> PathBuf {
    let out = Command::new("python3")
        .args([
            "-c",
            "import rotel, os; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))",
        ])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "rotel is not installed (scripts/deps: pip install --pre rotel): {out:?}"
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// A built binary, as the sandbox and its services see it.
pub fn bin(name: &str) -> PathBuf {
    Path::new(BIN_DIR).join(name)
}

/// The built daemon, as the sandbox sees it.
pub fn unitwatchd_bin() -> PathBuf {
    bin("unitwatchd")
}

impl Sandbox {
    /// Boots a fresh systemd over an overlay of this machine's `/` and waits
    /// until it is running.
    pub fn boot(name: &str) -> Sandbox {
        Sandbox::boot_on(name, Path::new("/"))
    }

    /// Boots a fresh systemd over an overlay of `lower` (a whole root, such
    /// as one that tests/harness/root.sh debootstrapped) and waits until it
    /// is running.
    pub fn boot_on(name: &str, lower: &Path) -> Sandbox {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the systemd harness needs root (run the tests with sudo, as CI does)"
        );
        let dir = PathBuf::from(format!(
            "/var/tmp/unitwatch-sandbox-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let units = dir.join("upper/etc/systemd/system");
        std::fs::create_dir_all(&units).unwrap();
        for u in MASKED {
            std::os::unix::fs::symlink("/dev/null", units.join(u)).unwrap();
        }
        // The image may forbid service starts from maintainer scripts.
        let log = std::fs::File::create(dir.join("boot.log")).unwrap();
        let unshare = Command::new("unshare")
            .args([
                "--pid",
                "--fork",
                "--mount",
                "--net",
                "--uts",
                "--ipc",
                "--propagation",
                "private",
            ])
            .env("LOWER", lower)
            .arg(repo().join("tests/harness/boot.sh"))
            .arg(&dir)
            .args(bind_mounts())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn unshare");
        let children = format!("/proc/{0}/task/{0}/children", unshare.id());
        let start = Instant::now();
        let pid1 = loop {
            if let Some(p) = std::fs::read_to_string(&children)
                .ok()
                .and_then(|s| s.split_whitespace().next().map(|p| p.parse().unwrap()))
            {
                // Wait until the child has exec'd systemd (it is the boot
                // script until then).
                let comm = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
                if comm.trim() == "systemd" {
                    break p;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "systemd did not start: {}",
                std::fs::read_to_string(dir.join("boot.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let sb = Sandbox { dir, pid1, unshare };
        let state = sb.wait_for("systemd to boot", Duration::from_secs(30), || {
            let out = sb.sh("systemctl is-system-running");
            let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
            matches!(s.as_str(), "running" | "degraded").then_some(s)
        });
        if state == "degraded" {
            eprintln!("{}", sb.sh_out("systemctl --failed --no-pager"));
        }
        sb.sh("ip link set lo up");
        sb
    }

    /// Runs `cmd` with sh inside the sandbox.
    pub fn sh(&self, cmd: &str) -> Output {
        Command::new("nsenter")
            .args([
                "-t",
                &self.pid1.to_string(),
                "-a",
                "-r",
                "-w",
                "sh",
                "-c",
                cmd,
            ])
            .stdin(Stdio::null())
            .output()
            .expect("nsenter")
    }

    /// stdout of `cmd`, whatever its exit code.
    pub fn sh_out(&self, cmd: &str) -> String {
        String::from_utf8_lossy(&self.sh(cmd).stdout).into_owned()
    }

    /// stdout of `cmd`, which must succeed.
    pub fn ok(&self, cmd: &str) -> String {
        let out = self.sh(cmd);
        assert!(
            out.status.success(),
            "`{cmd}` failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A path inside the sandbox, seen from the host.
    pub fn path(&self, p: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{}", self.pid1, p))
    }

    pub fn write(&self, p: &str, content: &str) {
        let path = self.path(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    pub fn read(&self, p: &str) -> Option<String> {
        std::fs::read_to_string(self.path(p)).ok()
    }

    /// Installs a unit file and reloads systemd.
    pub fn unit(&self, name: &str, body: &str) {
        self.write(&format!("/etc/systemd/system/{name}"), body);
        self.ok("systemctl daemon-reload");
    }

    /// Runs rotel as the transient unit `rotel` on 127.0.0.1:4317 (gRPC)
    /// and :4318 (HTTP), printing what it receives to /var/log/rotel.log.
    pub fn start_rotel(&self) {
        self.ok(&format!(
            "systemd-run --unit=rotel -p StandardOutput=file:/var/log/rotel.log {} start \
             --otlp-grpc-endpoint 127.0.0.1:4317 --otlp-http-endpoint 127.0.0.1:4318 \
             --debug-log metrics --debug-log logs --debug-log-verbosity detailed --exporter blackhole",
            rotel_agent().display()
        ));
        self.wait_for("rotel listening", Duration::from_secs(10), || {
            self.sh("ss -ltn | grep -q 127.0.0.1:4318")
                .status
                .success()
                .then_some(())
        });
    }

    /// A listener on 127.0.0.1:`port`, the transient unit `deadhook`, that
    /// takes connections and never reads them: every request to it hangs
    /// (an alert channel or a collector that never answers).
    pub fn start_dead_listener(&self, port: u16) {
        self.ok(&format!(
            "systemd-run --unit=deadhook /usr/bin/python3 -c \
             'import socket,time; s=socket.socket(); s.bind((\"127.0.0.1\",{port})); s.listen(1024); time.sleep(86400)'"
        ));
        self.wait_for("the dead listener", Duration::from_secs(10), || {
            self.sh(&format!("ss -ltn | grep -q 127.0.0.1:{port}"))
                .status
                .success()
                .then_some(())
        });
    }

    /// tests/check_server.py (a real HTTP server with endpoints that pass,
    /// fail, hang or follow a flag file) as the transient unit
    /// `checkserver` on 127.0.0.1:`port`.
    pub fn start_check_server(&self, port: u16) {
        // Copied in: the checkout may be where the sandbox sees another
        // file system (a /tmp clone, under the sandbox's own /tmp).
        let script = "/usr/local/share/unitwatch-test/check_server.py";
        self.write(script, &read_repo("tests/check_server.py"));
        self.ok(&format!(
            "systemd-run --unit=checkserver /usr/bin/python3 {script} {port} /var/log/checkserver.log"
        ));
        self.wait_for("the check server", Duration::from_secs(10), || {
            self.sh(&format!("ss -ltn | grep -q 127.0.0.1:{port}"))
                .status
                .success()
                .then_some(())
        });
    }

    /// Installs unitwatch.service from `systemd/` (every command pointed at
    /// the built binary, so its ExecStartPre= and ExecReload= run as
    /// shipped: the config check, and the polkit list as root), writes
    /// `config`, and starts it.
    pub fn start_unitwatch(&self, config: &str, dropin: &str) {
        self.install_unitwatch_user();
        self.write("/etc/unitwatch/unitwatch.toml", config);
        let bin = unitwatchd_bin();
        let unit = std::fs::read_to_string(repo().join("systemd/unitwatch.service"))
            .unwrap()
            .replace("/usr/bin/unitwatchd", &bin.display().to_string());
        self.write("/etc/systemd/system/unitwatch.service", &unit);
        self.write(
            "/etc/systemd/system/unitwatch.service.d/test.conf",
            &format!(
                "[Service]\nExecStart=\nExecStart={0} run\n{dropin}\n",
                bin.display()
            ),
        );
        self.ok("systemctl daemon-reload");
        self.ok("systemctl start unitwatch");
    }

    /// What the package installs for the daemon's user, from `packaging/`:
    /// the `unitwatch` user (sysusers.d), its directories (tmpfiles.d) and
    /// the polkit rule, its binary path pointed at the built one.
    pub fn install_unitwatch_user(&self) {
        self.write(
            "/etc/sysusers.d/unitwatch.conf",
            &read_repo("packaging/unitwatch.sysusers"),
        );
        self.ok("systemd-sysusers /etc/sysusers.d/unitwatch.conf");
        self.write(
            "/etc/tmpfiles.d/unitwatch.conf",
            &read_repo("packaging/unitwatch.tmpfiles"),
        );
        self.ok("systemd-tmpfiles --create /etc/tmpfiles.d/unitwatch.conf");
        let rule = read_repo("packaging/50-unitwatch.rules").replace(
            "\"/usr/bin/unitwatchd\"",
            &format!("{:?}", unitwatchd_bin().display().to_string()),
        );
        self.write("/etc/polkit-1/rules.d/50-unitwatch.rules", &rule);
        // The generator that grants CAP_DAC_READ_SEARCH while the config
        // counts descriptors; systemd runs it at each daemon-reload.
        let generator = read_repo("packaging/unitwatch-generator").replace(
            "/usr/bin/unitwatchd",
            &unitwatchd_bin().display().to_string(),
        );
        let at = "/etc/systemd/system-generators/unitwatch-generator";
        self.write(at, &generator);
        self.ok(&format!("chmod 755 {at}"));
    }

    /// Installs unitwatch-http.service (`systemd/`) and .socket (`packaging/`; the
    /// binary pointed at the built one) without starting either.
    pub fn install_http(&self) {
        let bin = bin("unitwatch-http");
        for (f, from) in [
            ("unitwatch-http.service", "systemd"),
            ("unitwatch-http.socket", "packaging"),
        ] {
            let unit = std::fs::read_to_string(repo().join(from).join(f)).unwrap();
            self.write(&format!("/etc/systemd/system/{f}"), &unit);
        }
        self.write(
            "/etc/systemd/system/unitwatch-http.service.d/test.conf",
            &format!("[Service]\nExecStart=\nExecStart={}\n", bin.display()),
        );
        self.ok("systemctl daemon-reload");
    }

    /// Waits until check `key` of status.json has `status`, and returns it.
    pub fn wait_check(&self, key: &str, status: &str, within: Duration) -> serde_json::Value {
        self.wait_check_where(key, status, within, |c| c["status"] == status)
    }

    /// Waits until check `key` of status.json is as `ok` wants it (`what`
    /// says how, for the timeout's message), and returns it.
    pub fn wait_check_where(
        &self,
        key: &str,
        what: &str,
        within: Duration,
        ok: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        self.wait_for(&format!("{key} {what}"), within, || {
            let c = check_of(&self.status_json(), key).clone();
            ok(&c).then_some(c)
        })
    }

    /// `systemd-analyze security UNIT`'s overall exposure:
    /// "Overall exposure level for X: 2.1 OK" -> 2.1
    pub fn security_exposure(&self, unit: &str) -> f64 {
        let out = self.ok(&format!("systemd-analyze security --no-pager {unit}"));
        let line = out
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .unwrap_or_else(|| panic!("no exposure in: {out}"));
        line.split(':')
            .nth(1)
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("cannot read {line:?}"))
    }

    /// `curl` inside the sandbox: (HTTP status, body).
    pub fn curl(&self, args: &str) -> (u16, String) {
        let out = self.sh_out(&format!("curl -s -m 5 -w '\n%{{http_code}}' {args}"));
        let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// `journalctl -o json` entries of unitwatch matching `filter`
    /// (e.g. "UNITWATCH_EVENT=unit-failed").
    pub fn journal(&self, filter: &str) -> Vec<serde_json::Value> {
        self.sh_out(&format!(
            "journalctl -u unitwatch -o json --no-pager {filter}"
        ))
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
    }

    /// Messages of unitwatch's journal, for failure output.
    pub fn journal_text(&self) -> String {
        self.sh_out("journalctl -u unitwatch -o cat --no-pager | tail -60")
    }

    pub fn prop(&self, unit: &str, prop: &str) -> String {
        self.sh_out(&format!("systemctl show -p {prop} --value -- {unit}"))
            .trim()
            .to_string()
    }

    /// SIGKILL to the unit's main process (avoids systemctl kill's noise
    /// about auxiliary processes in this sandbox).
    pub fn kill_main(&self, unit: &str) {
        self.ok(&format!("systemctl kill --kill-who=main -s KILL {unit}"));
    }

    /// Kills `unit` and waits for unitwatch to bring it back (its
    /// `unit-restarted` events past `restarts_before`); returns how long the
    /// unit was down, as systemd saw it.
    pub fn kill_and_wait_back(&self, unit: &str, restarts_before: usize) -> Duration {
        let killed = monotonic_us();
        self.kill_main(unit);
        self.wait_for("unitwatch to restart it", Duration::from_secs(30), || {
            (self
                .journal(&format!(
                    "UNITWATCH_EVENT=unit-restarted UNITWATCH_UNIT={unit}"
                ))
                .len()
                > restarts_before)
                .then_some(())
        });
        self.wait_active(unit, Duration::from_secs(10));
        let t = |p: &str| self.prop(unit, p).parse::<u64>().unwrap();
        Duration::from_micros(t("ActiveEnterTimestampMonotonic") - killed)
    }

    pub fn wait_active(&self, unit: &str, timeout: Duration) {
        self.wait_for(&format!("{unit} active"), timeout, || {
            (self.prop(unit, "ActiveState") == "active").then_some(())
        });
    }

    /// Polls `f` every 50 ms until it yields, or fails the test with the
    /// daemon's journal after `timeout`.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut() -> Option<T>,
    ) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = f() {
                return v;
            }
            if start.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n--- unitwatch journal ---\n{}",
                    self.journal_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn status_json(&self) -> serde_json::Value {
        serde_json::from_str(
            &self
                .read("/run/unitwatch/status.json")
                .expect("status.json"),
        )
        .expect("status.json parses")
    }

    /// backoff.json once it holds still: the daemon writes it off its
    /// loop, within one write after the event that changed it, so a read
    /// right after the event may find the write before. Two reads 50 ms
    /// apart that agree (or the last read after 3 s of changes).
    pub fn backoff_json(&self) -> serde_json::Value {
        let read = || {
            self.read("/var/lib/unitwatch/backoff.json")
                .expect("backoff.json")
        };
        let mut last = read();
        for _ in 0..60 {
            std::thread::sleep(Duration::from_millis(50));
            let now = read();
            if now == last {
                break;
            }
            last = now;
        }
        serde_json::from_str(&last).expect("backoff.json parses")
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.sh("systemctl poweroff --no-block");
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.unshare.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !matches!(self.unshare.try_wait(), Ok(Some(_))) {
            let _ = Command::new("kill")
                .args(["-KILL", &self.pid1.to_string()])
                .status();
            let _ = self.unshare.wait();
        }
        if std::env::var_os("UNITWATCH_KEEP_SANDBOX").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// CLOCK_MONOTONIC in µs: the sandbox shares the host's kernel clock, so
/// this compares with systemd's `*TimestampMonotonic` properties.
pub fn monotonic_us() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000
}

/// A field of a journal entry as a string.
pub fn field<'a>(e: &'a serde_json::Value, k: &str) -> &'a str {
    e.get(k).and_then(|v| v.as_str()).unwrap_or("")
}

/// The check `key` of a snapshot (panics, with the snapshot, if absent).
pub fn check_of<'a>(snap: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    snap["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == key)
        .unwrap_or_else(|| panic!("no check {key} in {snap:#}"))
}

pub fn read_repo(p: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(p)).unwrap()
}

/// `promtool check metrics` on an exposition: panics with promtool's
/// findings unless it is clean.
pub fn promtool_check(exposition: &[u8]) {
    use std::io::Write;
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/deps installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(exposition)
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What a benchmark prints of a set of samples (ms). A p99 is reported only
/// from 200 samples up: of fewer, the 99th percentile is the maximum itself.
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub p99: Option<f64>,
    pub max: f64,
}

/// The fewest samples of which a p99 is reported.
pub const P99_SAMPLES: usize = 200;

impl Summary {
    pub fn of(mut v: Vec<f64>) -> Summary {
        assert!(!v.is_empty(), "no samples");
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
        Summary {
            n: v.len(),
            median: at(0.5),
            p99: (v.len() >= P99_SAMPLES).then(|| at(0.99)),
            max: v[v.len() - 1],
        }
    }

    /// Prints one line: `name  n=..  median ..  p99 ..  max ..` (ms).
    pub fn print(&self, name: &str, width: usize) {
        let p99 = match self.p99 {
            Some(p) => format!("p99 {p:>8.3} ms"),
            None => format!("p99 {:>8}   ", "(n<200)"),
        };
        println!(
            "{name:<width$} n={:<4} median {:>8.3} ms   {p99}   max {:>8.3} ms",
            self.n, self.median, self.max
        );
    }
}

/// A benchmark's verdict on a target.
/// Fails the test unless `out`, a systemctl run, was refused by polkit
/// (and not failed for another reason, such as a unit that is missing).
pub fn assert_refused_by_polkit(out: &Output, what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{what}: allowed");
    assert!(
        err.contains("Access denied") || err.contains("authentication required"),
        "{what}: refused, but not by polkit: {err}"
    );
}

pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT MET"
    }
}
