//! `[[check]] type = "command"`: runs a program, a Nagios plugin or any
//! other, and reads its verdict by the plugin convention: exit 0 OK,
//! 1 WARNING, 2 CRITICAL, 3 UNKNOWN (a failure that says so). The first line
//! of its output is the check's output; performance data after `|` is
//! parsed by the plugin guidelines and exported.
//!
//! No shell: `command` is the program and its arguments. It runs as the
//! daemon's own user with an empty environment but PATH and LC_ALL=C, in a
//! process group of its own, which is killed whole at the timeout (and once
//! the program is done, so nothing it left behind lives on).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::Deserialize;
use tokio::io::AsyncReadExt;

use crate::checks::common::{from_table, probe_figures, Common, PROBE_DURATION, PROBE_SUCCESS};
use crate::checks::kind::{Build, Kind, Make, MetricDoc};
use crate::checks::{fmt_duration, How, Measurement, Outcome, Probe, ProbeCtx, Status};
use crate::config::{Config, KeySeg};
use crate::manual::KeyDoc;

mod perfdata;

pub use perfdata::{parse_output, Perf};

/// What is read of the program's output; the rest is drained unread.
pub const OUTPUT_CAP: usize = 4096;

/// The PATH a command runs with (its environment is otherwise empty).
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    pub command: Vec<String>,
}

const PERFDATA: MetricDoc = MetricDoc {
    name: "command_perfdata",
    help: "A performance figure the check's command printed after '|', as printed (label: its label, uom: its unit of measure)",
    otlp: "unitwatch.command.perfdata",
    otlp_unit: "1",
    otlp_scale: 1.0,
};

pub const KIND: Kind = Kind {
    name: "command",
    keys: &[KeyDoc::check(
        "command",
        "command",
        "required",
        "[\"/usr/lib/nagios/plugins/check_tcp\", \"-H\", \"127.0.0.1\", \"-p\", \"4002\"]",
        "The program (an absolute path) and its arguments; no shell. Exit 0 passes, 1 warns, 2 fails, 3 (UNKNOWN) and anything else fail. The first line of output (4 KiB at most is read) becomes the output, and its performance data ('label'=value[UOM];warn;crit;min;max) is exported as unitwatch_command_perfdata{check,label,uom}.",
    )],
    metrics: &[PROBE_DURATION, PROBE_SUCCESS, PERFDATA],
    make: Make::Check {
        check,
        about: "Runs a program (a Nagios plugin from monitoring-plugins, or one of your own) as the unitwatch user, with no shell and a clean environment, and reads its exit status by the plugin convention.",
    },
};

pub const BUILD: Build = Build::Check(build);

type Problems = Vec<(Vec<KeySeg>, String)>;

/// Reads and validates the kind's keys.
fn read(t: &toml::Table) -> Result<CommandConfig, Problems> {
    let c: CommandConfig = from_table(t.clone())?;
    let at = || vec![KeySeg::Key("command")];
    match c.command.first() {
        None => {
            return Err(vec![(
                at(),
                "needs the program to run, e.g. [\"/usr/lib/nagios/plugins/check_dummy\", \"0\"]"
                    .into(),
            )])
        }
        Some(p) if !p.starts_with('/') => {
            return Err(vec![(
                vec![KeySeg::Key("command"), KeySeg::Index(0)],
                format!("{p:?} is not an absolute path (there is no shell and no search of PATH)"),
            )])
        }
        _ => {}
    }
    if c.command.iter().any(|a| a.contains('\0')) {
        return Err(vec![(at(), "an argument holds a NUL byte".into())]);
    }
    Ok(c)
}

fn check(t: &toml::Table, _: &Common, _: &Config) -> Result<(), Problems> {
    read(t).map(|_| ())
}

fn build(t: &toml::Table, common: &Common, _: &Config) -> Result<How, Problems> {
    let c = read(t)?;
    Ok(How::Probe(Arc::new(CommandProbe {
        name: common.key(),
        argv: c.command,
    })))
}

pub struct CommandProbe {
    name: String,
    argv: Vec<String>,
}

/// Kills the process group when dropped, unless disarmed: a run cut off
/// from outside (the runner's backstop, a reload) leaves nothing behind.
struct Group(Option<i32>);

impl Group {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads up to [`OUTPUT_CAP`] bytes, then drains the rest, so that a
/// chatty program is neither blocked on a full pipe nor held in memory.
async fn read_capped(r: Option<impl tokio::io::AsyncRead + Unpin>) -> Vec<u8> {
    let Some(mut r) = r else { return Vec::new() };
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => {
                let room = OUTPUT_CAP.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

impl Probe for CommandProbe {
    fn run(self: Arc<Self>, ctx: ProbeCtx) -> BoxFuture<'static, Outcome> {
        Box::pin(async move {
            let t0 = Instant::now();
            let (o, perf) = self.execute(&ctx).await;
            let took = t0.elapsed();
            let mut o = probe_figures(o, &self.name, Some(took));
            for p in perf {
                let mut m = Measurement::new(PERFDATA.name, p.value)
                    .label("check", self.name.as_str())
                    .label("label", p.label);
                if !p.uom.is_empty() {
                    m = m.label("uom", p.uom);
                }
                o.measurements.push(m);
            }
            o
        })
    }
}

impl CommandProbe {
    async fn execute(&self, ctx: &ProbeCtx) -> (Outcome, Vec<Perf>) {
        let program = &self.argv[0];
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(&self.argv[1..])
            .env_clear()
            .env("PATH", PATH)
            .env("LC_ALL", "C")
            .current_dir("/")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return (Outcome::error(format!("cannot run {program}: {e}")), vec![]),
        };
        let mut group = Group(child.id().map(|p| p as i32));
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let all = async {
            let (out, err, status) =
                tokio::join!(read_capped(stdout), read_capped(stderr), child.wait());
            (out, err, status)
        };
        let (out, err, status) = match tokio::time::timeout_at(ctx.deadline, all).await {
            Ok(r) => r,
            Err(_) => {
                group.kill();
                let _ = tokio::time::timeout(Duration::from_secs(1), child.wait()).await;
                return (
                    Outcome::error(format!(
                        "{program} did not finish within {} (timed out); its process group was killed",
                        fmt_duration(ctx.timeout)
                    )),
                    vec![],
                );
            }
        };
        // Whatever it started and left running goes with it.
        group.kill();
        let status = match status {
            Ok(s) => s,
            Err(e) => {
                return (
                    Outcome::error(format!("cannot wait for {program}: {e}")),
                    vec![],
                )
            }
        };
        let text = String::from_utf8_lossy(if out.is_empty() { &err } else { &out }).into_owned();
        let (first, perf) = parse_output(&text);
        let (st, word) = match status.code() {
            Some(0) => (Status::Pass, "OK"),
            Some(1) => (Status::Warn, "WARNING"),
            Some(2) => (Status::Fail, "CRITICAL"),
            Some(3) => (Status::Fail, "UNKNOWN"),
            Some(_) => (Status::Fail, "ERROR"),
            None => (Status::Fail, "KILLED"),
        };
        let mut o = Outcome::new(st, word, None);
        let said = match (status.code(), first.is_empty()) {
            (Some(3), true) => Some("UNKNOWN (exit 3): the plugin could not check".to_string()),
            (Some(3), false) if !first.starts_with("UNKNOWN") => {
                Some(format!("UNKNOWN (exit 3): {first}"))
            }
            (Some(c), _) if c > 3 => Some(format!(
                "{program} exited with status {c}, not a plugin's 0-3{}",
                if first.is_empty() {
                    String::new()
                } else {
                    format!(": {first}")
                }
            )),
            (None, _) => Some(format!("{program} was killed by a signal ({status})")),
            (_, true) if st != Status::Pass => Some(format!(
                "{program} exited {} with no output",
                status.code().unwrap_or(-1)
            )),
            (_, true) => None,
            (_, false) => Some(first),
        };
        if let Some(s) = said {
            o = o.with_output(s);
        }
        (o, perf)
    }
}
