//! `Restart=` of every watched service, read ahead on a task of its own, so
//! that a failure is told without first asking systemd whether its own
//! `Restart=` will take the unit back: that question was a round trip to
//! systemd between the failure's signal and `unit-failed`, on every
//! failure. (The failure's `Result` needs none either: systemd sends the
//! Service interface's change, which carries it, just before the Unit's.)
//!
//! `Restart=` changes only when systemd re-reads its unit files, which it
//! announces with `Reloading`. So the settings read ahead are dropped then,
//! on a new connection (systemd may have reloaded meanwhile) and when
//! signals were lost (a `Reloading` among them), and read again; a read
//! begun before that is discarded when it lands (its generation is old).
//! Until a unit's setting is known, its failure asks systemd as before.

use futures_util::StreamExt as _;
use tokio::sync::oneshot;

use super::*;

/// At most this many reads in flight at once: the read ahead must not
/// crowd out the calls a failure makes meanwhile.
const IN_FLIGHT: usize = 8;

/// One read ahead's answers: (generation, unit, has `Restart=`).
type Answers = (u64, Vec<(String, bool)>);

#[derive(Debug, Default)]
pub(super) struct Prefetch {
    /// Bumped each time the settings known so far are dropped.
    generation: u64,
    /// A read ahead is due (at the end of the next sweep, when every
    /// watched unit's object path is known).
    wanted: bool,
    /// The read ahead in flight.
    rx: Option<oneshot::Receiver<Answers>>,
}

impl Prefetch {
    /// The answers of the read ahead in flight; pending while there is none.
    pub(super) async fn next(&mut self) -> Answers {
        match self.rx.as_mut() {
            Some(rx) => match rx.await {
                Ok(a) => {
                    self.rx = None;
                    a
                }
                // The task ended without answering (a lost connection):
                // read again at the next sweep.
                Err(_) => {
                    self.rx = None;
                    self.wanted = true;
                    std::future::pending().await
                }
            },
            None => std::future::pending().await,
        }
    }
}

impl Supervisor {
    /// What is known of each unit's `Restart=` may be out of date (systemd
    /// reloaded, or might have): dropped, and read again.
    pub(super) fn forget_restart_settings(&mut self) {
        self.may_restart.clear();
        self.prefetch.generation += 1;
        self.prefetch.rx = None;
        self.prefetch.wanted = true;
    }

    /// Units may have been added (a reload of the config): read again,
    /// keeping what is known.
    pub(super) fn want_restart_settings(&mut self) {
        self.prefetch.wanted = true;
    }

    /// Starts the read ahead if one is due, for every watched service whose
    /// object path is known and whose setting is not.
    pub(super) fn start_prefetch(&mut self) {
        if !self.prefetch.wanted || self.prefetch.rx.is_some() {
            return;
        }
        let Some(bus) = self.bus.clone() else {
            return;
        };
        self.prefetch.wanted = false;
        let units: Vec<(String, String)> = self
            .config
            .units
            .iter()
            .map(|u| u.name.as_str())
            .filter(|n| n.ends_with(".service") && !self.may_restart.contains_key(*n))
            .filter_map(|n| Some((n.to_string(), self.paths.get(n)?.clone())))
            .collect();
        if units.is_empty() {
            return;
        }
        let generation = self.prefetch.generation;
        let (tx, rx) = oneshot::channel();
        self.prefetch.rx = Some(rx);
        tokio::spawn(async move {
            let answers: Vec<(String, bool)> = futures_util::stream::iter(units)
                .map(|(name, path)| {
                    let bus = bus.clone();
                    async move {
                        let r = bus.restart_setting(&name, &path).await;
                        r.ok().map(|r| (name, r != "no"))
                    }
                })
                .buffer_unordered(IN_FLIGHT)
                .filter_map(std::future::ready)
                .collect()
                .await;
            let _ = tx.send((generation, answers));
        });
    }

    /// Takes a read ahead's answers in, unless they are from before the
    /// settings were last dropped. A unit's own failure read is as fresh,
    /// and kept.
    pub(super) fn on_prefetched(&mut self, (generation, answers): Answers) {
        if generation != self.prefetch.generation {
            return;
        }
        log::debug!("read Restart= of {} services ahead", answers.len());
        for (name, may) in answers {
            self.may_restart.entry(name).or_insert(may);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_prefetch_with_nothing_in_flight_stays_pending() {
        let mut p = Prefetch::default();
        let r = tokio::time::timeout(Duration::from_millis(20), p.next()).await;
        assert!(r.is_err());
    }

    #[tokio::test]
    async fn answers_arrive_once_and_a_dropped_task_asks_for_another_read() {
        let mut p = Prefetch::default();
        let (tx, rx) = oneshot::channel();
        p.rx = Some(rx);
        tx.send((3, vec![("a.service".into(), true)])).unwrap();
        assert_eq!(p.next().await, (3, vec![("a.service".into(), true)]));
        assert!(p.rx.is_none());
        let (tx, rx) = oneshot::channel::<Answers>();
        p.rx = Some(rx);
        drop(tx);
        let r = tokio::time::timeout(Duration::from_millis(20), p.next()).await;
        assert!(r.is_err());
        assert!(p.wanted && p.rx.is_none());
    }
}
