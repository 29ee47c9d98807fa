//! The watched containers in the supervisor: the engines' watchers
//! (`containers::watch`) started with the checks, their news taken in (the
//! table the container checks read is updated, and that container's checks
//! re-run at once, as a unit's are on its D-Bus signal), and recovery: a
//! failing container's restart planned on the same backoff, hourly cap and
//! backoff.json as a unit's (under the key `NAME.container`), and issued
//! through its watcher when due, so the loop never waits on the engine.

use super::*;
use crate::containers::watch::{self, Command, Container, Message, News};
use crate::containers::Engine;

/// How long the start waits for the engines' first answers.
const FIRST_READ: Duration = Duration::from_secs(3);

/// The backoff key of watched container `name`.
fn key(name: &str) -> String {
    format!("{name}.container")
}

impl Supervisor {
    /// The `[[container]]` watched as `name`.
    fn container_config(&self, name: &str) -> Option<&checks::container::ContainerConfig> {
        self.config.containers.iter().find(|c| c.name == name)
    }

    /// Starts the watchers the configuration asks for, ending the old
    /// ones (called with the checks, at start and on a reload).
    pub(super) fn start_containers(&mut self) {
        for t in self.container_tasks.drain(..) {
            t.abort();
        }
        self.container_news = None;
        self.container_cmds.clear();
        self.container_recovering.clear();
        self.container_ready.clear();
        let engines: Vec<(Engine, Vec<watch::Watched>)> = checks::container::engines(&self.config)
            .into_iter()
            // The configuration's validation has accepted each URI.
            .filter_map(|(uri, w)| {
                Engine::new(&uri, watch::REQUEST_TIMEOUT)
                    .ok()
                    .map(|e| (e, w))
            })
            .collect();
        let watched: HashSet<String> = engines
            .iter()
            .flat_map(|(_, w)| w.iter().map(|w| w.name.clone()))
            .collect();
        self.containers.retain(|n, _| watched.contains(n));
        if engines.is_empty() {
            return;
        }
        let w = watch::start(engines, self.config.daemon.interval);
        self.container_news = Some(w.messages);
        self.container_cmds = w.commands;
        self.container_tasks = w.tasks;
    }

    /// Takes in the watchers' first reads, for up to [`FIRST_READ`], so the
    /// first sweep judges what the engines said rather than a container
    /// not asked about yet (which would be told as a failure at every
    /// start). The checks are not run here: the sweep that follows runs
    /// them all, units included, once systemd has been read.
    pub(super) async fn first_containers(&mut self) {
        let until = tokio::time::Instant::now() + FIRST_READ;
        while !self
            .config
            .containers
            .iter()
            .all(|c| self.containers.contains_key(&c.name))
        {
            let Some(rx) = self.container_news.as_mut() else {
                return;
            };
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(Message::News(news))) => {
                    self.containers.insert(news.name, news.seen);
                }
                Ok(Some(Message::Recovered { .. })) => {}
                _ => return,
            }
        }
        // Decided by the sweep's checks, then here.
    }

    /// A watcher's message.
    pub(super) fn on_container_message(&mut self, m: Message) {
        match m {
            Message::News(news) => self.on_container(news),
            Message::Recovered { name, result } => {
                self.container_recovering.remove(&name);
                let k = key(&name);
                match result {
                    Ok(None) => {
                        // Back by itself before its turn: not a restart.
                        let e = self.store.entry(&k);
                        e.pending_restart_at = None;
                        e.pending_reason = None;
                        self.dirty = true;
                        log::info!(unitwatch_unit = k.as_str(); "planned restart of {k} not needed: it is back");
                    }
                    Ok(Some(done)) => {
                        log::debug!("{k}: {done}");
                        let now = SystemTime::now();
                        self.restarted(k, now, Ok(()));
                        if let Some(c) = self.container_config(&name) {
                            if !c.ready.is_empty() {
                                self.container_ready
                                    .insert(name, (now, now + c.ready_timeout));
                            }
                        }
                    }
                    Err(e) => self.restarted(k, SystemTime::now(), Err(e)),
                }
                self.persist();
                self.publish_soon();
            }
        }
    }

    /// News: the table updated, the container's checks run, its recovery
    /// decided.
    fn on_container(&mut self, news: News) {
        if let Some(at) = news.at {
            if let Ok(d) = SystemTime::now().duration_since(at) {
                log::debug!(
                    "{}.container: engine event taken in {d:?} after the engine's time",
                    news.name
                );
            }
        }
        let component = key(&news.name);
        let name = news.name.clone();
        self.containers.insert(news.name, news.seen);
        self.run_checks_where(|d| d.unit.as_deref() == Some(component.as_str()));
        self.supervise_container(&name, SystemTime::now());
        self.persist();
        self.publish_soon();
    }

    /// Every watched container decided on (the sweep's safety net).
    pub(super) fn supervise_containers(&mut self, now: SystemTime) {
        let names: Vec<String> = self
            .config
            .containers
            .iter()
            .map(|c| c.name.clone())
            .collect();
        for n in names {
            self.supervise_container(&n, now);
        }
    }

    /// Plans a failing container's recovery, notes a healthy one's health,
    /// or cancels a restart planned for one an operator has stopped since.
    fn supervise_container(&mut self, name: &str, now: SystemTime) {
        let Some(cfg) = self.container_config(name) else {
            return;
        };
        // Its restart in progress (a stop, then a start) is not judged
        // until its answer: the stop would read as one by hand.
        if !cfg.restart || self.container_recovering.contains(name) {
            return;
        }
        let Some(Ok(list)) = self.containers.get(name) else {
            // The engine unreachable, or not asked yet: nothing to do
            // through it.
            return;
        };
        let k = key(name);
        match decide(list) {
            Decision::Healthy => self.note_healthy(&k, now),
            Decision::Recover(reason) => {
                if self.store.entry(&k).pending_restart_at.is_some() {
                    return;
                }
                self.store.entry(&k).record_failure(now);
                self.plan(&k, now, reason);
            }
            Decision::Leave(why) => {
                let e = self.store.entry(&k);
                if e.pending_restart_at.take().is_some() {
                    e.pending_reason = None;
                    self.dirty = true;
                    log::info!(unitwatch_unit = k.as_str(); "planned restart of {k} cancelled: {why}");
                }
            }
        }
    }

    /// The watched containers with a restart planned and not yet asked
    /// for, and when each is due.
    fn planned_containers(&self) -> impl Iterator<Item = (&str, SystemTime)> {
        self.config
            .containers
            .iter()
            .filter(|c| c.restart && !self.container_recovering.contains(&c.name))
            .filter_map(|c| {
                let at = self.store.units.get(&key(&c.name))?.pending_restart_at?;
                Some((c.name.as_str(), at.0))
            })
    }

    /// When the next planned container restart, or ready_timeout's end,
    /// is due.
    pub(super) fn next_container_deadline(&self) -> Option<SystemTime> {
        self.planned_containers()
            .map(|(_, at)| at)
            .chain(self.container_ready.values().map(|w| w.1))
            .min()
    }

    /// Judges the restarted containers whose ready checks are awaited:
    /// `unit-recovered` once every one of them has passed in a run started
    /// after the restart, a critical `recovery-failed` (with the failing
    /// checks' outputs) when ready_timeout ends first.
    pub(super) fn ready_due(&mut self, now: SystemTime) {
        if self.container_ready.is_empty() {
            return;
        }
        let waits: Vec<(String, (SystemTime, SystemTime))> = self
            .container_ready
            .iter()
            .map(|(n, w)| (n.clone(), *w))
            .collect();
        for (name, (since, until)) in waits {
            // The field, not container_config: the wait is removed below
            // while the config is borrowed.
            let Some(cfg) = self.config.containers.iter().find(|c| c.name == name) else {
                self.container_ready.remove(&name);
                continue;
            };
            let mut failing = Vec::new();
            let mut passed = Vec::new();
            for r in &cfg.ready {
                let found = self
                    .checks
                    .iter()
                    .zip(&self.results)
                    .find(|(d, _)| &*d.id.component == r.as_str());
                match found {
                    Some((d, f))
                        if !f.pending
                            && f.status == checks::Status::Pass
                            && f.time.system_time() >= since_ms(since) =>
                    {
                        passed.push(d.key().to_string())
                    }
                    Some((d, f)) => failing.push(format!(
                        "{}: {}{}",
                        d.key(),
                        f.status.as_str(),
                        f.output
                            .as_deref()
                            .map(|o| format!(" ({o})"))
                            .unwrap_or_default()
                    )),
                    None => failing.push(format!("{r}: no such check")),
                }
            }
            let k = key(&name);
            if failing.is_empty() {
                self.container_ready.remove(&name);
                let took = now.duration_since(since).unwrap_or_default();
                Event::new(
                    Kind::UnitRecovered,
                    Severity::Info,
                    format!(
                        "{k} recovered: ready ({} passed) {} after its restart",
                        passed.join(", "),
                        fmt_delay(Duration::from_millis(took.as_millis() as u64))
                    ),
                )
                .unit(&k)
                .emit();
            } else if now >= until {
                self.container_ready.remove(&name);
                Event::new(
                    Kind::RecoveryFailed,
                    Severity::Critical,
                    format!(
                        "{k} restarted but not ready within {}: {}",
                        fmt_delay(cfg.ready_timeout),
                        failing.join("; ")
                    ),
                )
                .unit(&k)
                .emit();
            }
        }
    }

    /// Asks the watchers to recover the containers that are due; each
    /// answer comes back as a message.
    pub(super) fn recover_due_containers(&mut self, now: SystemTime) {
        let due: Vec<String> = self
            .planned_containers()
            .filter(|(_, at)| *at <= now)
            .map(|(n, _)| n.to_string())
            .collect();
        for name in due {
            let sent = match self.container_cmds.get(&name) {
                Some(tx) => tx
                    .try_send(Command::Recover { name: name.clone() })
                    .map_err(|e| format!("its watcher cannot take the request: {e}")),
                None => Err("no watcher runs for it".to_string()),
            };
            match sent {
                Ok(()) => {
                    self.container_recovering.insert(name);
                }
                Err(why) => self.restarted(key(&name), now, Err(why)),
            }
        }
    }
}

/// `t` to the millisecond, as a result's time is kept (a run started in
/// the same millisecond as the restart counts as after it).
fn since_ms(t: SystemTime) -> SystemTime {
    checks::Stamp::of(t).system_time()
}

/// What a container's state calls for.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// Every container runs, none unhealthy.
    Healthy,
    /// One or more need a restart, for this reason.
    Recover(&'static str),
    /// Failing, but not for unitwatch to restart (why).
    Leave(&'static str),
}

/// The decision on one watched name's containers: pure, so it is tested
/// without an engine.
fn decide(list: &[Container]) -> Decision {
    if list.is_empty() {
        return Decision::Leave("no container to restart");
    }
    if list.iter().all(|c| c.running && !c.unhealthy()) {
        return Decision::Healthy;
    }
    match list.iter().find(|c| c.needs_recovery()) {
        Some(c) if c.oom_killed && !c.running => Decision::Recover("oom-killed"),
        Some(c) if c.running => Decision::Recover("unhealthy"),
        Some(_) => Decision::Recover("exited"),
        None if list.iter().any(Container::engine_restarting) => {
            Decision::Leave("its restart policy is bringing it back")
        }
        None => Decision::Leave("stopped by hand"),
    }
}

/// The next message of the watchers, or never when none run.
pub(super) async fn next_message(
    rx: &mut Option<tokio::sync::mpsc::Receiver<Message>>,
) -> Option<Message> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(status: &str) -> Container {
        Container {
            id: "id".into(),
            name: "gw".into(),
            status: status.into(),
            running: status == "running",
            exit_code: 137,
            oom_killed: false,
            health: None,
            restart_count: 0,
            finished_at: String::new(),
            memory: None,
            memory_limit: None,
            stopped: false,
        }
    }

    #[test]
    fn a_container_is_restarted_only_when_unitwatch_should() {
        assert_eq!(decide(&[c("running")]), Decision::Healthy);
        assert_eq!(decide(&[c("exited")]), Decision::Recover("exited"));
        let mut oom = c("exited");
        oom.oom_killed = true;
        assert_eq!(decide(&[oom]), Decision::Recover("oom-killed"));
        let mut sick = c("running");
        sick.health = Some(("unhealthy".into(), None));
        assert_eq!(decide(&[sick]), Decision::Recover("unhealthy"));
        let mut starting = c("running");
        starting.health = Some(("starting".into(), None));
        assert_eq!(decide(&[starting]), Decision::Healthy);
        // docker stop by hand is not overruled, and the engine's own
        // restart policy is not doubled.
        let mut stopped = c("exited");
        stopped.stopped = true;
        assert_eq!(decide(&[stopped]), Decision::Leave("stopped by hand"));
        assert_eq!(
            decide(&[c("restarting")]),
            Decision::Leave("its restart policy is bringing it back")
        );
        // A policy the engine gave up on (or a docker kill took it out
        // of): nobody else brings it back.
        assert_eq!(decide(&[c("exited")]), Decision::Recover("exited"));
        // One of a label's containers down is enough.
        assert_eq!(
            decide(&[c("running"), c("exited")]),
            Decision::Recover("exited")
        );
        assert_eq!(decide(&[]), Decision::Leave("no container to restart"));
    }
}
