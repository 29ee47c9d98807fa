//! The watched containers in the supervisor: the engines' watchers
//! (`containers::watch`) started with the checks, and their news taken in:
//! the table the container checks read is updated, and that container's
//! checks re-run at once, as a unit's are on its D-Bus signal.

use super::*;
use crate::containers::watch::{self, News};
use crate::containers::Engine;

/// How long the start waits for the engines' first answers.
const FIRST_READ: Duration = Duration::from_secs(2);

impl Supervisor {
    /// Starts the watchers the configuration asks for, ending the old
    /// ones (called with the checks, at start and on a reload).
    pub(super) fn start_containers(&mut self) {
        for t in self.container_tasks.drain(..) {
            t.abort();
        }
        self.container_news = None;
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
        let (rx, tasks) = watch::start(engines, self.config.daemon.interval);
        self.container_news = Some(rx);
        self.container_tasks = tasks;
    }

    /// Takes in the watchers' first reads, for up to [`FIRST_READ`], so the
    /// first sweep judges what the engines said rather than a container
    /// not asked about yet (which would be told as a failure at every
    /// start). The checks are not run here: the sweep that follows runs
    /// them all, units included, once systemd has been read.
    pub(super) async fn first_containers(&mut self) {
        let until = tokio::time::Instant::now() + FIRST_READ;
        let want: HashSet<String> = checks::container::engines(&self.config)
            .into_iter()
            .flat_map(|(_, w)| w.into_iter().map(|w| w.name))
            .collect();
        while !want.iter().all(|n| self.containers.contains_key(n)) {
            let Some(rx) = self.container_news.as_mut() else {
                return;
            };
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(news)) => {
                    self.containers.insert(news.name, news.seen);
                }
                _ => return,
            }
        }
    }

    /// A watcher's news: the table updated, the container's checks run.
    pub(super) fn on_container(&mut self, news: News) {
        if let Some(at) = news.at {
            if let Ok(d) = SystemTime::now().duration_since(at) {
                log::debug!(
                    "{}.container: engine event taken in {d:?} after the engine's time",
                    news.name
                );
            }
        }
        let component = format!("{}.container", news.name);
        self.containers.insert(news.name, news.seen);
        self.run_checks_where(|d| d.unit.as_deref() == Some(component.as_str()));
        self.publish_soon();
    }
}

/// The next news of the watchers, or never when none run.
pub(super) async fn next_news(rx: &mut Option<tokio::sync::mpsc::Receiver<News>>) -> Option<News> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}
