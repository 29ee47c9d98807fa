//! `[[check]] type = "tcp"`: does `address` accept a connection, and how
//! fast? Every address the name resolves to is tried in turn, within the
//! one timeout; refused, timed out and a name that does not resolve each
//! say so in their own words.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use serde::Deserialize;

use crate::checks::common::{from_table, probe_figures, Common, PROBE_DURATION, PROBE_SUCCESS};
use crate::checks::kind::{Build, Kind, Make};
use crate::checks::{fmt_duration, grade, millis, How, Outcome, Probe, ProbeCtx, Status};
use crate::config::{opt_duration, Config, KeySeg};
use crate::manual::KeyDoc;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpConfig {
    pub address: String,
    #[serde(default, deserialize_with = "opt_duration")]
    pub latency_warn: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub latency_crit: Option<Duration>,
}

pub const KIND: Kind = Kind {
    name: "tcp",
    keys: &[
        KeyDoc::check("tcp", "address", "required", "\"127.0.0.1:4002\"",
            "HOST:PORT to connect to: an IPv4 address, [IPv6]:PORT, or a name (resolved at every run; each address it gives is tried in turn)."),
        KeyDoc::check("tcp", "latency_warn", "none", "\"200ms\"",
            "Warn when the connection took this long or longer."),
        KeyDoc::check("tcp", "latency_crit", "none", "\"1s\"",
            "Fail when the connection took this long or longer."),
    ],
    metrics: &[PROBE_DURATION, PROBE_SUCCESS],
    make: Make::Check {
        check,
        about: "Connects to a TCP port: pass when it accepts, with the connect time graded by latency_warn and latency_crit. The connection is closed at once; nothing is sent.",
    },
};

pub const BUILD: Build = Build::Check(build);

type Problems = Vec<(Vec<KeySeg>, String)>;

/// Reads and validates the kind's keys.
fn read(t: &toml::Table) -> Result<TcpConfig, Problems> {
    let c: TcpConfig = from_table(t.clone())?;
    let at = |k: &'static str| vec![KeySeg::Key(k)];
    if let Err(m) = split_host_port(&c.address) {
        return Err(vec![(at("address"), m)]);
    }
    if let (Some(w), Some(cr)) = (c.latency_warn, c.latency_crit) {
        if w > cr {
            return Err(vec![(
                at("latency_warn"),
                format!(
                    "{} is above latency_crit ({})",
                    fmt_duration(w),
                    fmt_duration(cr)
                ),
            )]);
        }
    }
    Ok(c)
}

fn check(t: &toml::Table, _: &Common, _: &Config) -> Result<(), Problems> {
    read(t).map(|_| ())
}

fn build(t: &toml::Table, common: &Common, _: &Config) -> Result<How, Problems> {
    let c = read(t)?;
    Ok(How::Probe(Arc::new(TcpProbe {
        name: common.key(),
        config: c,
    })))
}

/// "host:port", "[v6]:port": the host and the port, or why not.
pub fn split_host_port(a: &str) -> Result<(String, u16), String> {
    let (host, port) = a
        .rsplit_once(':')
        .ok_or_else(|| format!("{a:?} has no port: write HOST:PORT (\"[::1]:PORT\" for IPv6)"))?;
    let host = match host.strip_prefix('[') {
        Some(h) => h
            .strip_suffix(']')
            .ok_or_else(|| format!("{a:?}: an IPv6 address goes in brackets, [::1]:PORT"))?,
        None if host.contains(':') => {
            return Err(format!(
                "{a:?}: an IPv6 address goes in brackets, [::1]:PORT"
            ))
        }
        None => host,
    };
    if host.is_empty() {
        return Err(format!("{a:?} has no host"));
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{a:?}: {port:?} is not a port (1-65535)"))?;
    Ok((host.to_string(), port))
}

pub struct TcpProbe {
    name: String,
    config: TcpConfig,
}

impl Probe for TcpProbe {
    fn run(self: Arc<Self>, ctx: ProbeCtx) -> BoxFuture<'static, Outcome> {
        Box::pin(async move {
            let (o, took) = self.connect(&ctx).await;
            probe_figures(o, &self.name, took)
        })
    }
}

impl TcpProbe {
    async fn connect(&self, ctx: &ProbeCtx) -> (Outcome, Option<Duration>) {
        let address = &self.config.address;
        let timeout = fmt_duration(ctx.timeout);
        let Ok((host, port)) = split_host_port(address) else {
            return (
                Outcome::error(format!("{address:?} is not HOST:PORT")),
                None,
            );
        };
        let lookup =
            tokio::time::timeout_at(ctx.deadline, tokio::net::lookup_host((host.as_str(), port)));
        let addrs: Vec<std::net::SocketAddr> = match lookup.await {
            Err(_) => {
                return (
                    Outcome::error(format!("cannot resolve {host}: no answer within {timeout}")),
                    None,
                )
            }
            Ok(Err(e)) => return (Outcome::error(format!("cannot resolve {host}: {e}")), None),
            Ok(Ok(a)) => a.collect(),
        };
        if addrs.is_empty() {
            return (
                Outcome::error(format!("cannot resolve {host}: no address")),
                None,
            );
        }
        let mut errors = Vec::new();
        for addr in &addrs {
            let t0 = Instant::now();
            match tokio::time::timeout_at(ctx.deadline, tokio::net::TcpStream::connect(addr)).await
            {
                Ok(Ok(stream)) => {
                    let took = t0.elapsed();
                    // Closed with a reset, as HAProxy closes its checks: a
                    // check that closes first would otherwise leave a
                    // TIME_WAIT socket behind at every run (a minute each,
                    // 6000 of them for 100 checks a second), and it costs
                    // the peer a FIN exchange for nothing it needed.
                    let _ = stream.set_zero_linger();
                    drop(stream);
                    return (self.graded(*addr, took), Some(took));
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    errors.push(format!("connection refused by {addr}"));
                }
                Ok(Err(e)) => errors.push(format!("cannot connect to {addr}: {e}")),
                Err(_) => {
                    errors.push(format!(
                        "no answer from {addr} within {timeout} (timed out)"
                    ));
                    break;
                }
            }
        }
        (Outcome::error(errors.join("; ")), None)
    }

    fn graded(&self, addr: std::net::SocketAddr, took: Duration) -> Outcome {
        let ms = millis(took);
        let c = &self.config;
        let status = grade(
            took.as_secs_f64(),
            c.latency_warn.map(|d| d.as_secs_f64()),
            c.latency_crit.map(|d| d.as_secs_f64()),
        );
        let o = Outcome::new(status, ms, Some("ms"));
        match status {
            Status::Pass => o,
            Status::Warn => o.with_output(format!(
                "{addr} accepted in {ms} ms (warn at {})",
                fmt_duration(c.latency_warn.unwrap_or_default())
            )),
            Status::Fail => o.with_output(format!(
                "{addr} accepted in {ms} ms (critical at {})",
                fmt_duration(c.latency_crit.unwrap_or_default())
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_split_or_refused_plainly() {
        assert_eq!(
            split_host_port("127.0.0.1:80").unwrap(),
            ("127.0.0.1".into(), 80)
        );
        assert_eq!(split_host_port("[::1]:4002").unwrap(), ("::1".into(), 4002));
        assert_eq!(
            split_host_port("db.internal:5432").unwrap(),
            ("db.internal".into(), 5432)
        );
        assert!(split_host_port("::1:80").unwrap_err().contains("brackets"));
        assert!(split_host_port("host").unwrap_err().contains("no port"));
        assert!(split_host_port("host:0")
            .unwrap_err()
            .contains("not a port"));
        assert!(split_host_port("host:http")
            .unwrap_err()
            .contains("not a port"));
        assert!(split_host_port(":80").unwrap_err().contains("no host"));
    }
}
