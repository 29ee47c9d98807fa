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

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use super::api::{Inspect, MemoryUse};
use super::engine::Engine;
use super::sample::{self, Samples};

/// The wait between attempts to reach a lost engine.
const RESUBSCRIBE_EVERY: Duration = Duration::from_secs(1);

/// How long a memory sampling job may take.
const SAMPLE_DEADLINE: Duration = Duration::from_secs(10);

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
    /// Its memory is graded: sample it (a stats request per container).
    pub memory: bool,
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
    pub finished_at: String,
    /// None when not running, or the engine gave no figure.
    pub memory: Option<MemoryUse>,
    /// Its own memory limit (HostConfig.Memory), if it has one: the
    /// engine's stats give the host's memory as the "limit" of a
    /// container without one.
    pub memory_limit: Option<u64>,
    /// Stopped by hand (`docker stop`: a `stop` event since its last
    /// start): not a failure to recover from, as `systemctl stop` is not.
    pub stopped: bool,
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
            finished_at: i.state.finished_at.clone(),
            memory,
            memory_limit: (i.host_config.memory > 0).then_some(i.host_config.memory),
            stopped: false,
        }
    }

    /// Is it failing in a way a restart may mend: exited or dead (not
    /// stopped by hand), or running but unhealthy. One the engine's own
    /// restart policy is bringing back is `restarting` (the engine marks it
    /// so before it tells the death), and is left to it; one the policy
    /// has given up on (or that a `docker kill` took out of it) is exited.
    pub fn needs_recovery(&self) -> bool {
        if self.running {
            return self.unhealthy();
        }
        matches!(self.status.as_str(), "exited" | "dead") && !self.stopped
    }

    /// Its HEALTHCHECK says unhealthy.
    pub fn unhealthy(&self) -> bool {
        self.health.as_ref().is_some_and(|(h, _)| h == "unhealthy")
    }

    /// The engine's restart policy is bringing it back.
    pub fn engine_restarting(&self) -> bool {
        self.status == "restarting"
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

/// What a watcher tells the supervisor.
#[derive(Debug, Clone)]
pub enum Message {
    News(News),
    /// The answer to a [`Command::Recover`]: what was done (none: nothing
    /// needed it any more), or why it could not be.
    Recovered {
        name: String,
        result: Result<Option<String>, String>,
    },
}

/// What the supervisor asks of a watcher.
#[derive(Debug, Clone)]
pub enum Command {
    /// Bring back the failing containers of watched name `name`: start
    /// the exited ones, restart the unhealthy ones.
    Recover { name: String },
}

/// How long a container gets to stop when restarted (then it is killed).
const STOP_SECS: u32 = 10;

/// The running watchers: their messages, and where to send each watched
/// name's commands.
pub struct Watchers {
    pub messages: mpsc::Receiver<Message>,
    pub commands: HashMap<String, mpsc::Sender<Command>>,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts one watcher task per engine. `every` is the full read's
/// interval.
pub fn start(engines: Vec<(Engine, Vec<Watched>)>, every: Duration) -> Watchers {
    // Bounded: a watcher that gets ahead of the loop waits (it only holds
    // the engine's stream meanwhile, which the engine buffers).
    let (tx, messages) = mpsc::channel(256);
    let mut commands = HashMap::new();
    let mut tasks = Vec::new();
    for (engine, watched) in engines {
        let (ctx, crx) = mpsc::channel(16);
        for w in &watched {
            commands.insert(w.name.clone(), ctx.clone());
        }
        tasks.push(tokio::spawn(watch(engine, watched, every, tx.clone(), crx)));
    }
    Watchers {
        messages,
        commands,
        tasks,
    }
}

/// What a watcher knows of how its containers stopped.
#[derive(Default)]
struct Stops {
    /// Containers (by ID) with a `stop` event since their last start.
    by_hand: HashSet<String>,
    /// Exits already judged, by container ID: that exit's FinishedAt and
    /// whether it was by hand.
    known: HashMap<String, (String, bool)>,
}

impl Stops {
    fn saw(&mut self, verb: &str, id: &str) {
        match verb {
            "stop" => {
                self.by_hand.insert(id.to_string());
            }
            "start" => {
                self.by_hand.remove(id);
                self.known.remove(id);
            }
            _ => {}
        }
    }

    /// Marks each stopped container of `seen` as stopped by hand or not.
    /// An exit seen as it happens (`live`: on its die event) is not by
    /// hand unless a stop event follows (it comes after the die). One not
    /// seen (before the subscription) is looked up in the engine's
    /// history; where that cannot tell, it is taken as by hand: a
    /// container an operator stopped is never started behind their back.
    async fn mark(&mut self, engine: &Engine, seen: &mut Seen, live: bool) {
        let Ok(list) = seen else { return };
        for c in list.iter_mut().filter(|c| !c.running) {
            if self.by_hand.contains(&c.id) {
                c.stopped = true;
                continue;
            }
            if let Some((at, by_hand)) = self.known.get(&c.id) {
                if *at == c.finished_at {
                    c.stopped = *by_hand;
                    continue;
                }
            }
            let by_hand = if live {
                false
            } else {
                stopped_by_hand(engine, c).await
            };
            self.known
                .insert(c.id.clone(), (c.finished_at.clone(), by_hand));
            c.stopped = by_hand;
        }
    }
}

/// Was `c`'s exit a `docker stop`, by the engine's history around it?
async fn stopped_by_hand(engine: &Engine, c: &Container) -> bool {
    let Ok(t) = humantime::parse_rfc3339_weak(&c.finished_at) else {
        return true;
    };
    let at = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    // Up to now at most: a stream whose `until` is still to come is held
    // open by the engine until then (a tick's read of a container that
    // has just died waited 2 s here, which the benchmark caught).
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    match engine.history(&c.id, at - 5.0, (at + 2.0).min(now)).await {
        Ok(evs) => evs.iter().any(|e| e.verb() == "stop"),
        Err(e) => {
            log::warn!(
                "{}: cannot tell how {} stopped ({e}): not restarting it",
                engine.uri(),
                c.name
            );
            true
        }
    }
}

async fn watch(
    engine: Engine,
    watched: Vec<Watched>,
    every: Duration,
    tx: mpsc::Sender<Message>,
    mut commands: mpsc::Receiver<Command>,
) {
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
                    let _ = tx.send(Message::News(News { name, seen, at })).await;
                }
            }
        };
    let mut stops = Stops::default();
    // The last memory sample of each container, and the job taking the
    // next (sample.rs).
    let mut memory = Samples::new();
    let (mem_tx, mut mem_rx) = mpsc::channel::<Samples>(1);
    let mut sampling: Option<tokio::task::JoinHandle<()>> = None;
    let sample_now = |last: &HashMap<String, Seen>,
                      sampling: &mut Option<tokio::task::JoinHandle<()>>| {
        if sampling.as_ref().is_some_and(|j| !j.is_finished()) {
            return;
        }
        let ids: Vec<String> = watched
            .iter()
            .filter(|w| w.memory)
            .filter_map(|w| last.get(&w.name)?.as_ref().ok())
            .flatten()
            .filter(|c| c.running)
            .map(|c| c.id.clone())
            .collect();
        if !ids.is_empty() {
            *sampling = Some(sample::start(
                engine.clone(),
                ids,
                every.min(SAMPLE_DEADLINE),
                mem_tx.clone(),
            ));
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
                // Asked to recover meanwhile: the engine cannot be asked.
                let until = tokio::time::Instant::now() + RESUBSCRIBE_EVERY;
                while let Ok(Some(Command::Recover { name })) =
                    tokio::time::timeout_at(until, commands.recv()).await
                {
                    let result = Err(why.clone());
                    let _ = tx.send(Message::Recovered { name, result }).await;
                }
                continue;
            }
        };
        // Subscribed first, then read: what changes in between is on the
        // stream.
        for w in &watched {
            let mut seen = read(&engine, w, &memory).await;
            stops.mark(&engine, &mut seen, false).await;
            send(&mut last, &w.name, seen, None).await;
        }
        sample_now(&last, &mut sampling);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let lost = loop {
            tokio::select! {
                e = events.next() => match e {
                    Ok(Some(ev)) => {
                        let Some(cname) = ev.name().map(str::to_string) else { continue };
                        let at = (ev.time_nano > 0)
                            .then(|| SystemTime::UNIX_EPOCH + Duration::from_nanos(ev.time_nano as u64));
                        stops.saw(ev.verb(), &ev.actor.id);
                        for w in watched.iter().filter(|w| w.selects(&cname, |l| ev.has_label(l))) {
                            let mut seen = read(&engine, w, &memory).await;
                            stops.mark(&engine, &mut seen, true).await;
                            send(&mut last, &w.name, seen, at).await;
                        }
                    }
                    Ok(None) => break "the engine ended its event stream".to_string(),
                    Err(e) => break e.to_string(),
                },
                _ = tick.tick() => {
                    for w in &watched {
                        let mut seen = read(&engine, w, &memory).await;
                        stops.mark(&engine, &mut seen, false).await;
                        send(&mut last, &w.name, seen, None).await;
                    }
                    sample_now(&last, &mut sampling);
                }
                Some(got) = mem_rx.recv() => {
                    memory = got;
                    // The new figures into what was last read.
                    for w in watched.iter().filter(|w| w.memory) {
                        let Some(Ok(list)) = last.get(&w.name) else { continue };
                        let mut list = list.clone();
                        for c in list.iter_mut().filter(|c| c.running) {
                            c.memory = memory.get(&c.id).copied();
                        }
                        send(&mut last, &w.name, Ok(list), None).await;
                    }
                }
                Some(Command::Recover { name }) = commands.recv() => {
                    // On a task of its own: a restart waits up to
                    // STOP_SECS for the container to stop, and the other
                    // containers' events must not wait with it.
                    let seen = last.get(&name).cloned();
                    let (engine, tx) = (engine.clone(), tx.clone());
                    tokio::spawn(async move {
                        let result = match seen {
                            Some(Ok(list)) => recover(&engine, &list).await.map(|d| (!d.is_empty()).then(|| d.join(", "))),
                            Some(Err(e)) => Err(e),
                            None => Err(format!("nothing is known of {name} to recover")),
                        };
                        let _ = tx.send(Message::Recovered { name, result }).await;
                    });
                }
            }
        };
        log::warn!("{}: {lost}; subscribing again", engine.uri());
        drop(events);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Brings back the failing containers of `list` (one watched name's, as last
/// read): starts the exited ones, restarts the unhealthy ones. What was done (nothing, when
/// none needs it any more: the engine's policy or an operator was first).
async fn recover(engine: &Engine, list: &[Container]) -> Result<Vec<String>, String> {
    let mut done = Vec::new();
    for c in list.iter().filter(|c| c.needs_recovery()) {
        let r = if c.running {
            engine
                .restart(&c.id, STOP_SECS)
                .await
                .map(|()| format!("restarted {}", c.name))
        } else {
            engine
                .start(&c.id)
                .await
                .map(|()| format!("started {}", c.name))
        };
        done.push(r.map_err(|e| e.to_string())?);
    }
    Ok(done)
}

/// Every watched name's containers, read once (`unitwatchd check`).
pub async fn read_once(engines: Vec<(String, Vec<Watched>)>) -> ContainerTable {
    let mut table = ContainerTable::new();
    for (uri, watched) in engines {
        let engine = Engine::new(&uri, REQUEST_TIMEOUT);
        for w in watched {
            let seen = match &engine {
                Ok(e) => read_with_memory(e, &w).await,
                Err(e) => Err(e.to_string()),
            };
            table.insert(w.name, seen);
        }
    }
    table
}

/// The containers of `w`, read once, and the memory of each that runs
/// sampled now (where `w` grades it).
async fn read_with_memory(engine: &Engine, w: &Watched) -> Seen {
    let mut list = read(engine, w, &Samples::new()).await?;
    if !w.memory {
        return Ok(list);
    }
    let ids = list
        .iter()
        .filter(|c| c.running)
        .map(|c| c.id.clone())
        .collect();
    let (tx, mut rx) = mpsc::channel(1);
    sample::start(engine.clone(), ids, SAMPLE_DEADLINE, tx);
    let memory = rx.recv().await.unwrap_or_default();
    for c in list.iter_mut().filter(|c| c.running) {
        c.memory = memory.get(&c.id).copied();
    }
    Ok(list)
}

/// The containers of `w`, each inspected, with the last memory sample of
/// each that runs.
async fn read(engine: &Engine, w: &Watched, memory: &Samples) -> Seen {
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
        // The last sample (sample.rs), not a stats request here: one can
        // take a second.
        let memory = (i.state.running && w.memory)
            .then(|| memory.get(&i.id).copied())
            .flatten();
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
            memory: false,
        };
        assert!(by_name.selects("gw", |_| false) && !by_name.selects("gw2", |_| true));
        let by_label = Watched {
            name: "ibkr".into(),
            label: Some("app=ibkr".into()),
            memory: true,
        };
        assert!(by_label.selects("anything", |l| l == "app=ibkr"));
        assert!(!by_label.selects("ibkr", |_| false));
    }
}
