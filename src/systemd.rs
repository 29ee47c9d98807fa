//! The systemd D-Bus client: reading unit state, the signal stream, and the
//! restart calls.
//!
//! A full read of every watched unit is one `ListUnitsByNames` call (state of
//! all units in one round trip); per-unit property reads are kept to what
//! signals do not carry (MemoryCurrent) or what a decision needs now.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use zbus::message::Type as MsgType;
use zbus::{Connection, MatchRule, Message, MessageStream, OwnedObjectPath, OwnedVariant, Variant};
use zbus_systemd::systemd1::ManagerProxy;

use crate::units::UnitStatus;

const SYSTEMD: &str = "org.freedesktop.systemd1";
const UNIT_IFACE: &str = "org.freedesktop.systemd1.Unit";

/// A failed conversation with systemd, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{action}: {source}")]
pub struct SystemdError {
    pub action: String,
    #[source]
    pub source: zbus::Error,
}

fn err(action: impl Into<String>) -> impl FnOnce(zbus::Error) -> SystemdError {
    let action = action.into();
    move |source| SystemdError { action, source }
}

/// systemd's answer to a Get of a property it does not have.
fn unknown_property(e: &zbus::Error) -> bool {
    const NAME: &str = "org.freedesktop.DBus.Error.UnknownProperty";
    match e {
        zbus::Error::MethodError(name, _, _) => name.as_str() == NAME,
        zbus::Error::FDO(f) => matches!(**f, zbus::fdo::Error::UnknownProperty(_)),
        _ => false,
    }
}

/// A numeric property as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prop {
    Value(u64),
    /// systemd has no figure.
    Missing,
    /// The read failed: what and why.
    Error(String),
}

/// One unit as `ListUnitsByNames` returns it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub name: String,
    pub path: String,
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
}

/// One row of `ListUnitsByNames`: name, description, load, active and sub
/// state, followed unit, object path, job id, job type, job path.
type ListedRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    OwnedObjectPath,
    u32,
    String,
    OwnedObjectPath,
);

/// A property change of one unit, from a `PropertiesChanged` signal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Change {
    pub path: String,
    /// systemd's serial of the signal: see [`older`].
    pub serial: u32,
    pub load_state: Option<String>,
    pub active_state: Option<String>,
    pub sub_state: Option<String>,
    pub result: Option<String>,
    pub n_restarts: Option<u32>,
    /// `StateChangeTimestamp`, µs since the epoch: when systemd moved the
    /// unit (for a failure, the moment it saw the main process exit).
    pub state_change_usec: Option<u64>,
}

impl Change {
    /// When systemd moved the unit, if the signal says.
    pub fn changed_at(&self) -> Option<SystemTime> {
        self.state_change_usec
            .filter(|&us| us > 0)
            .map(|us| SystemTime::UNIX_EPOCH + Duration::from_micros(us))
    }

    /// Applies the change to `s`; true when ActiveState or SubState moved
    /// (systemd repeats ActiveState in every signal: only a new value counts).
    pub fn apply(&self, s: &mut UnitStatus) -> bool {
        let before = (s.active_state.clone(), s.sub_state.clone());
        if let Some(v) = &self.load_state {
            s.load_state.clone_from(v);
        }
        if let Some(v) = &self.active_state {
            s.active_state.clone_from(v);
        }
        if let Some(v) = &self.sub_state {
            s.sub_state.clone_from(v);
        }
        if let Some(v) = &self.result {
            s.result = Some(v.clone());
        }
        if let Some(v) = self.n_restarts {
            s.n_restarts = Some(v);
        }
        before != (s.active_state.clone(), s.sub_state.clone())
    }
}

/// Parses a `PropertiesChanged` signal; `None` for other messages.
pub fn parse_change(msg: &Message) -> Option<Change> {
    let header = msg.header();
    if header.member()?.as_str() != "PropertiesChanged" {
        return None;
    }
    let path = header.path()?.to_string();
    let body = msg.body();
    let (_iface, props, _invalidated): (String, HashMap<String, OwnedVariant>, Vec<String>) =
        body.deserialize().ok()?;
    let string = |k: &str| match props.get(k).map(|v| &**v) {
        Some(Variant::Str(s)) => Some(s.as_str().to_string()),
        _ => None,
    };
    let n_restarts = match props.get("NRestarts").map(|v| &**v) {
        Some(Variant::U32(n)) => Some(*n),
        _ => None,
    };
    let state_change_usec = match props.get("StateChangeTimestamp").map(|v| &**v) {
        Some(Variant::U64(n)) => Some(*n),
        _ => None,
    };
    Some(Change {
        path,
        serial: msg.primary_header().serial_num().get(),
        load_state: string("LoadState"),
        active_state: string("ActiveState"),
        sub_state: string("SubState"),
        result: string("Result"),
        n_restarts,
        state_change_usec,
    })
}

/// Was message `a` sent by systemd before message `b`?
///
/// systemd numbers every message it sends on its bus connection, signals
/// and method replies alike, from one counter, and the bus keeps the
/// sender's serial. So a signal's serial orders it against the reply to a
/// `ListUnitsByNames`. That matters because zbus queues signals apart from
/// replies: a signal sent before the reply can reach the loop after the
/// reply's fresher state is applied. systemd sends such signals on every
/// `RestartUnit` of a failed unit (ActiveState still `failed`, with the new
/// job), so without this a sweep that caught the restarted unit active was
/// followed by a stale "failed", a spurious failure and a planned restart.
/// Compared in wrapping arithmetic, as serials wrap at 2^32.
pub fn older(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// The D-Bus interface that carries `Result`, `NRestarts` and
/// `MemoryCurrent` for a unit of this type, if any.
pub fn type_interface(unit: &str) -> Option<&'static str> {
    Some(match unit.rsplit_once('.')?.1 {
        "service" => "org.freedesktop.systemd1.Service",
        "socket" => "org.freedesktop.systemd1.Socket",
        "mount" => "org.freedesktop.systemd1.Mount",
        "swap" => "org.freedesktop.systemd1.Swap",
        "slice" => "org.freedesktop.systemd1.Slice",
        "scope" => "org.freedesktop.systemd1.Scope",
        "timer" => "org.freedesktop.systemd1.Timer",
        "path" => "org.freedesktop.systemd1.Path",
        "automount" => "org.freedesktop.systemd1.Automount",
        _ => return None,
    })
}

/// How many parsed changes may wait for the supervisor loop.
const SIGNAL_QUEUE: usize = 4096;

/// Unit property changes, read off the bus by their own task.
///
/// The bus socket must always be drained: zbus stops reading it when a match
/// queue is full, and then the replies to the supervisor's own method calls
/// never arrive (a deadlock seen when ListUnitsByNames loads 50 units and
/// systemd answers with a burst of signals). So a task moves parsed changes
/// into a bounded queue; when that is full a change is dropped and
/// `overflowed` is set, and the supervisor re-reads everything instead.
pub struct Signals {
    rx: mpsc::Receiver<Signal>,
    overflowed: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

/// What systemd said, in the order it said it.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// A unit's properties changed.
    Change(Change),
    /// `Reloading`: systemd re-reads (or has re-read) its unit files
    /// (`daemon-reload`), so settings read before, `Restart=`, may differ.
    Reloading,
}

impl Signals {
    /// The next signal; `None` once the connection is gone.
    pub async fn next(&mut self) -> Option<Signal> {
        self.rx.recv().await
    }

    /// Were changes dropped since the last call?
    pub fn take_overflow(&self) -> bool {
        self.overflowed.swap(false, Ordering::Relaxed)
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A connection to the system bus and systemd's manager object. Cloned
/// for tasks of their own (the same connection).
#[derive(Clone)]
pub struct Systemd {
    conn: Connection,
    manager: ManagerProxy<'static>,
}

impl Systemd {
    /// Connects to the system bus (honouring `DBUS_SYSTEM_BUS_ADDRESS`).
    pub async fn connect() -> Result<Self, SystemdError> {
        let conn = Connection::system()
            .await
            .map_err(err("connect to the system bus"))?;
        let manager = ManagerProxy::new(&conn)
            .await
            .map_err(err("open systemd's manager object"))?;
        Ok(Systemd { conn, manager })
    }

    /// Connects, giving up after `timeout` (the CLI must not hang on a
    /// machine without a bus).
    pub async fn connect_timeout(timeout: Duration) -> Result<Self, SystemdError> {
        match tokio::time::timeout(timeout, Self::connect()).await {
            Ok(r) => r,
            Err(_) => Err(SystemdError {
                action: "connect to the system bus".into(),
                source: zbus::Error::Failure(format!("no answer within {timeout:?}")),
            }),
        }
    }

    /// Subscribes to systemd's signals and returns the stream of unit
    /// `PropertiesChanged`. The match rule is added before `Subscribe` so
    /// that nothing emitted in between is lost.
    pub async fn subscribe(&self) -> Result<Signals, SystemdError> {
        let rule = MatchRule::builder()
            .msg_type(MsgType::Signal)
            .sender(SYSTEMD)
            .interface("org.freedesktop.DBus.Properties")
            .member("PropertiesChanged")
            .path_namespace("/org/freedesktop/systemd1/unit")
            .build()
            .map_err(err("build the signal match rule"))?;
        let mut stream = MessageStream::for_match_rule(rule, &self.conn, None)
            .await
            .map_err(err("add the signal match rule"))?;
        let reloading = MatchRule::builder()
            .msg_type(MsgType::Signal)
            .sender(SYSTEMD)
            .interface("org.freedesktop.systemd1.Manager")
            .member("Reloading")
            .path("/org/freedesktop/systemd1")
            .build()
            .map_err(err("build the Reloading match rule"))?;
        let mut reloads = MessageStream::for_match_rule(reloading, &self.conn, None)
            .await
            .map_err(err("add the Reloading match rule"))?;
        self.manager
            .subscribe()
            .await
            .map_err(err("Subscribe to systemd's signals"))?;
        let (tx, rx) = mpsc::channel(SIGNAL_QUEUE);
        let overflowed = Arc::new(AtomicBool::new(false));
        let flag = overflowed.clone();
        let task = tokio::spawn(async move {
            loop {
                // Reloading first: zbus files each message in its stream's
                // queue as it reads the socket, so a Reloading that is
                // queued came before any change still queued beside it.
                let signal = tokio::select! {
                    biased;
                    m = reloads.next() => match m {
                        Some(Ok(_)) => Some(Signal::Reloading),
                        _ => break,
                    },
                    m = stream.next() => match m {
                        Some(Ok(msg)) => parse_change(&msg).map(Signal::Change),
                        _ => break,
                    },
                };
                let Some(signal) = signal else { continue };
                match tx.try_send(signal) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => flag.store(true, Ordering::Relaxed),
                    Err(mpsc::error::TrySendError::Closed(_)) => break,
                }
            }
        });
        Ok(Signals {
            rx,
            overflowed,
            task,
        })
    }

    /// The state of every named unit in one call, with the serial of
    /// systemd's reply (to order it against signals: [`older`]). Units that
    /// do not exist come back with `LoadState=not-found`.
    pub async fn list(&self, names: &[String]) -> Result<(Vec<Listed>, u32), SystemdError> {
        let reply = self
            .manager_call("ListUnitsByNames", &(names,))
            .await
            .map_err(err("ListUnitsByNames"))?;
        let serial = reply.primary_header().serial_num().get();
        let rows: Vec<ListedRow> = reply
            .body()
            .deserialize()
            .map_err(err("decode the reply to ListUnitsByNames"))?;
        let units = rows
            .into_iter()
            .map(|r| Listed {
                name: r.0,
                load_state: r.2,
                active_state: r.3,
                sub_state: r.4,
                path: r.6.to_string(),
            })
            .collect();
        Ok((units, serial))
    }

    /// A method of systemd's manager object, its reply whole (with its
    /// serial, which the typed proxy hides).
    async fn manager_call<B>(&self, method: &str, body: &B) -> zbus::Result<Message>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        self.conn
            .call_method(
                Some(SYSTEMD),
                "/org/freedesktop/systemd1",
                Some("org.freedesktop.systemd1.Manager"),
                method,
                body,
            )
            .await
    }

    async fn get(&self, path: &str, iface: &str, prop: &str) -> Result<OwnedVariant, SystemdError> {
        let reply = self
            .conn
            .call_method(
                Some(SYSTEMD),
                path,
                Some("org.freedesktop.DBus.Properties"),
                "Get",
                &(iface, prop),
            )
            .await
            .map_err(err(format!("read {prop} of {path}")))?;
        reply
            .body()
            .deserialize::<OwnedVariant>()
            .map_err(err(format!("decode {prop} of {path}")))
    }

    /// `Result` of a unit ("success", "signal", "start-limit-hit" ...).
    pub async fn result(&self, unit: &str, path: &str) -> Result<Option<String>, SystemdError> {
        let Some(iface) = type_interface(unit) else {
            return Ok(None);
        };
        Ok(match &*self.get(path, iface, "Result").await? {
            Variant::Str(s) => Some(s.as_str().to_string()),
            _ => None,
        })
    }

    /// A `u64` property of the unit's type interface (`TasksCurrent`,
    /// `CPUUsageNSec` ...): [`Prop::Missing`] where systemd keeps no such
    /// figure (it reports u64::MAX, or this systemd has no such property).
    pub async fn unit_u64(&self, unit: &str, path: &str, prop: &str) -> Prop {
        let Some(iface) = type_interface(unit) else {
            return Prop::Missing;
        };
        match self.get(path, iface, prop).await {
            Ok(v) => match &*v {
                Variant::U64(n) if *n != u64::MAX => Prop::Value(*n),
                _ => Prop::Missing,
            },
            // An older systemd (252 has no MemorySwapCurrent).
            Err(e) if unknown_property(&e.source) => Prop::Missing,
            Err(e) => Prop::Error(e.to_string()),
        }
    }

    /// A string property of the unit's type interface (`ControlGroup`, a
    /// timer's `Unit`); none when it is empty.
    pub async fn unit_str(
        &self,
        unit: &str,
        path: &str,
        prop: &str,
    ) -> Result<Option<String>, SystemdError> {
        let Some(iface) = type_interface(unit) else {
            return Ok(None);
        };
        Ok(match &*self.get(path, iface, prop).await? {
            Variant::Str(s) if !s.is_empty() => Some(s.as_str().to_string()),
            _ => None,
        })
    }

    /// The unit's `ControlGroup` ("/system.slice/x.service"); none when it
    /// has none (not running).
    pub async fn control_group(
        &self,
        unit: &str,
        path: &str,
    ) -> Result<Option<String>, SystemdError> {
        self.unit_str(unit, path, "ControlGroup").await
    }

    /// The PIDs of every process in the unit's cgroup, sub-cgroups too
    /// (`GetUnitProcesses`).
    pub async fn unit_pids(&self, unit: &str) -> Result<Vec<u32>, SystemdError> {
        let reply = self
            .manager_call("GetUnitProcesses", &(unit,))
            .await
            .map_err(err(format!("GetUnitProcesses {unit}")))?;
        let rows: Vec<(String, u32, String)> = reply
            .body()
            .deserialize()
            .map_err(err(format!("decode the reply to GetUnitProcesses {unit}")))?;
        Ok(rows.into_iter().map(|r| r.1).collect())
    }

    /// The service's `Restart=` setting ("no", "always", "on-failure" ...);
    /// "no" for units that are not services.
    pub async fn restart_setting(&self, unit: &str, path: &str) -> Result<String, SystemdError> {
        if !unit.ends_with(".service") {
            return Ok("no".into());
        }
        Ok(
            match &*self
                .get(path, "org.freedesktop.systemd1.Service", "Restart")
                .await?
            {
                Variant::Str(s) => s.as_str().to_string(),
                _ => "no".into(),
            },
        )
    }

    /// When the unit last entered the active state.
    pub async fn active_enter(&self, path: &str) -> Result<Option<SystemTime>, SystemdError> {
        Ok(
            match &*self.get(path, UNIT_IFACE, "ActiveEnterTimestamp").await? {
                Variant::U64(0) => None,
                Variant::U64(us) => Some(SystemTime::UNIX_EPOCH + Duration::from_micros(*us)),
                _ => None,
            },
        )
    }

    /// `RestartUnit(name, "replace")`: queues the job and returns.
    pub async fn restart(&self, unit: &str) -> Result<(), SystemdError> {
        self.manager
            .restart_unit(unit.to_string(), "replace".into())
            .await
            .map(|_| ())
            .map_err(err(format!("RestartUnit {unit}")))
    }

    /// `ResetFailedUnit(name)`: clears the failed state and the start limit.
    pub async fn reset_failed(&self, unit: &str) -> Result<(), SystemdError> {
        self.manager
            .reset_failed_unit(unit.to_string())
            .await
            .map_err(err(format!("ResetFailedUnit {unit}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_reports_only_real_moves() {
        let mut s = UnitStatus {
            load_state: "loaded".into(),
            active_state: "active".into(),
            sub_state: "running".into(),
            ..Default::default()
        };
        let same = Change {
            active_state: Some("active".into()),
            n_restarts: Some(2),
            ..Default::default()
        };
        assert!(!same.apply(&mut s));
        assert_eq!(s.n_restarts, Some(2));
        let failed = Change {
            active_state: Some("failed".into()),
            sub_state: Some("failed".into()),
            result: Some("signal".into()),
            ..Default::default()
        };
        assert!(failed.apply(&mut s));
        assert!(s.is_failed());
        assert_eq!(s.result.as_deref(), Some("signal"));
    }

    #[test]
    fn serials_order_across_the_wrap() {
        assert!(older(471, 473));
        assert!(!older(478, 473));
        assert!(!older(473, 473), "the same message is not older");
        assert!(older(u32::MAX - 1, 2), "2 came after the wrap");
        assert!(!older(2, u32::MAX - 1));
    }

    #[test]
    fn interfaces_by_type() {
        assert_eq!(
            type_interface("a.service"),
            Some("org.freedesktop.systemd1.Service")
        );
        assert_eq!(type_interface("multi-user.target"), None);
    }
}
