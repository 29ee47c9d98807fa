//! What the engine says of the watched containers, kept up to date on a
//! task of its own per engine: the `/events` stream for news in
//! milliseconds, and a full read every sweep interval as the safety net
//! (and for the memory figures, which have no event). Each change is sent
//! to the supervisor as a [`News`], which re-runs that container's checks:
//! the supervisor's loop never waits on the engine.
//!
//! A lost engine (dockerd restarted, the socket gone) is survived as a lost
//! bus is: every watched container reads as "cannot reach the engine",
//! the stream is subscribed again every second, and a full read follows
//! the new subscription, so nothing that happened in between is missed.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use super::api::{Inspect, MemoryUse};
use super::engine::{Engine, EngineError};

/// The wait between attempts to reach a lost engine.
const RESUBSCRIBE_EVERY: Duration = Duration::from_secs(1);

/// How long one request to the engine may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// One `[[container]]` as the watcher needs it: the name it is shown
/// under, and what selects its containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    pub name: String,
    /// `key=value`: the containers carrying it; else the container named
    /// `name`.
    pub label: Option<String>,
}

impl Watched {
    fn selects(&self, container: &str, labels: impl Fn(&str) -> bool) -> bool {
        match &self.label {
            Some(l) => labels(l),
            None => container == self.name,
        }
    }
}

/// One container as last read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub name: String,
    /// The engine's state: running, exited, restarting, paused, created,
    /// dead, removing.
    pub status: String,
    pub running: bool,
    pub exit_code: i64,
    pub oom_killed: bool,
    /// The HEALTHCHECK's status (healthy, unhealthy, starting) and its
    /// last output; none without a HEALTHCHECK.
    pub health: Option<(String, Option<String>)>,
    /// Restarts by the engine's own restart policy.
    pub restart_count: u64,
    /// The engine's restart policy brings it back by itself.
    pub engine_restarts: bool,
    pub finished_at: String,
    /// None when not running, or the engine gave no figure.
    pub memory: Option<MemoryUse>,
}

impl Container {
    fn of(i: &Inspect, memory: Option<MemoryUse>) -> Container {
        Container {
            id: i.id.clone(),
            name: i.name().to_string(),
            status: i.state.status.clone(),
            running: i.state.running,
            exit_code: i.state.exit_code,
            oom_killed: i.state.oom_killed,
            health: i
                .state
                .health
                .as_ref()
                .filter(|h| !h.status.is_empty() && h.status != "none")
                .map(|h| (h.status.clone(), h.last_output().map(str::to_string))),
            restart_count: i.restart_count,
            engine_restarts: i.engine_restarts(),
            finished_at: i.state.finished_at.clone(),
            memory,
        }
    }
}

/// What is known of one `[[container]]`: its containers, or why they
/// could not be read.
pub type Seen = Result<Vec<Container>, String>;

/// Each watched name's containers, as the checks read them.
pub type ContainerTable = HashMap<String, Seen>;

/// A change for the supervisor: the new state of one watched name.
#[derive(Debug, Clone)]
pub struct News {
    pub name: String,
    pub seen: Seen,
    /// When the engine said it (its event's time), for the latency.
    pub at: Option<SystemTime>,
}

/// Starts one watcher task per engine; their news arrive on the receiver.
/// `every` is the full read's interval.
pub fn start(
    engines: Vec<(Engine, Vec<Watched>)>,
    every: Duration,
) -> (mpsc::Receiver<News>, Vec<tokio::task::JoinHandle<()>>) {
    // Bounded: a watcher that gets ahead of the loop waits (it only holds
    // the engine's stream meanwhile, which the engine buffers).
    let (tx, rx) = mpsc::channel(256);
    let tasks = engines
        .into_iter()
        .map(|(engine, watched)| tokio::spawn(watch(engine, watched, every, tx.clone())))
        .collect();
    (rx, tasks)
}

async fn watch(engine: Engine, watched: Vec<Watched>, every: Duration, tx: mpsc::Sender<News>) {
    let names: Vec<&str> = watched
        .iter()
        .filter(|w| w.label.is_none())
        .map(|w| w.name.as_str())
        .collect();
    let labels: Vec<&str> = watched.iter().filter_map(|w| w.label.as_deref()).collect();
    let mut last: HashMap<String, Seen> = HashMap::new();
    let send =
        |last: &mut HashMap<String, Seen>, name: &str, seen: Seen, at: Option<SystemTime>| {
            let tx = tx.clone();
            let changed = last.get(name) != Some(&seen);
            if changed {
                last.insert(name.to_string(), seen.clone());
            }
            let name = name.to_string();
            async move {
                if changed {
                    let _ = tx.send(News { name, seen, at }).await;
                }
            }
        };
    loop {
        let mut events = match engine.events(&names, &labels).await {
            Ok(e) => e,
            Err(e) => {
                let why = e.to_string();
                for w in &watched {
                    send(&mut last, &w.name, Err(why.clone()), None).await;
                }
                tokio::time::sleep(RESUBSCRIBE_EVERY).await;
                continue;
            }
        };
        // Subscribed first, then read: what changes in between is on the
        // stream.
        for w in &watched {
            let seen = read(&engine, w).await;
            send(&mut last, &w.name, seen, None).await;
        }
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let lost = loop {
            tokio::select! {
                e = events.next() => match e {
                    Ok(Some(ev)) => {
                        let Some(cname) = ev.name().map(str::to_string) else { continue };
                        let at = (ev.time_nano > 0)
                            .then(|| SystemTime::UNIX_EPOCH + Duration::from_nanos(ev.time_nano as u64));
                        for w in watched.iter().filter(|w| w.selects(&cname, |l| ev.has_label(l))) {
                            let seen = read(&engine, w).await;
                            send(&mut last, &w.name, seen, at).await;
                        }
                    }
                    Ok(None) => break "the engine ended its event stream".to_string(),
                    Err(e) => break e.to_string(),
                },
                _ = tick.tick() => {
                    for w in &watched {
                        let seen = read(&engine, w).await;
                        send(&mut last, &w.name, seen, None).await;
                    }
                }
            }
        };
        log::warn!("{}: {lost}; subscribing again", engine.uri());
        drop(events);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every watched name's containers, read once (`unitwatchd check`).
pub async fn read_once(engines: Vec<(String, Vec<Watched>)>) -> ContainerTable {
    let mut table = ContainerTable::new();
    for (uri, watched) in engines {
        let engine = Engine::new(&uri, REQUEST_TIMEOUT);
        for w in watched {
            let seen = match &engine {
                Ok(e) => read(e, &w).await,
                Err(e) => Err(e.to_string()),
            };
            table.insert(w.name, seen);
        }
    }
    table
}

/// The containers of `w`, each inspected (and its memory sampled while
/// it runs).
async fn read(engine: &Engine, w: &Watched) -> Seen {
    let ids: Vec<String> = match &w.label {
        None => vec![w.name.clone()],
        Some(l) => match engine.list(&[], &[l]).await {
            Ok(list) => list.into_iter().map(|s| s.id).collect(),
            Err(e) => return Err(e.to_string()),
        },
    };
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let i = match engine.inspect(&id).await {
            Ok(i) => i,
            // Gone: by name, "no such container"; by label, removed since
            // the list (not one of them any more).
            Err(e) if e.is_not_found() => {
                if w.label.is_none() {
                    return Ok(Vec::new());
                }
                continue;
            }
            Err(e) => return Err(e.to_string()),
        };
        let memory = if i.state.running {
            match engine.memory(&i.id).await {
                Ok(m) => Some(m),
                Err(EngineError::Status { .. }) => None,
                Err(e) => return Err(e.to_string()),
            }
        } else {
            None
        };
        out.push(Container::of(&i, memory));
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watched_name_selects_its_container_or_its_label() {
        let by_name = Watched {
            name: "gw".into(),
            label: None,
        };
        assert!(by_name.selects("gw", |_| false) && !by_name.selects("gw2", |_| true));
        let by_label = Watched {
            name: "ibkr".into(),
            label: Some("app=ibkr".into()),
        };
        assert!(by_label.selects("anything", |l| l == "app=ibkr"));
        assert!(!by_label.selects("ibkr", |_| false));
    }
}
