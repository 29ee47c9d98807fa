//! Memory samples of the watched containers, taken off the watcher's path.
//!
//! Why apart: a stats request to dockerd 20.10 takes up to a second even
//! with `one-shot` (it waits for its next collection), so 20 containers
//! sampled in the watcher's full read held its events back for 20 s. The
//! watcher hands the running containers' IDs to a job of their own each
//! interval; the job asks up to [`AT_ONCE`] at a time, within a deadline,
//! and sends back what it got. The watcher keeps the last figures and
//! fills them into what it reads; a container whose sample failed keeps
//! none (its memory check says so), never a 0.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::api::MemoryUse;
use super::engine::Engine;

/// Stats requests in flight at once.
const AT_ONCE: usize = 4;

/// The figures of one job, by container ID.
pub type Samples = HashMap<String, MemoryUse>;

/// Starts a job sampling `ids`, which sends its figures on `tx` (within
/// `deadline`; what has not come by then is left out).
pub fn start(
    engine: Engine,
    ids: Vec<String>,
    deadline: Duration,
    tx: mpsc::Sender<Samples>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut out = Samples::new();
        let asks = futures_util::stream::iter(ids.into_iter().map(|id| {
            let engine = engine.clone();
            async move {
                let m = engine.memory(&id).await;
                (id, m)
            }
        }))
        .buffer_unordered(AT_ONCE);
        let collect = asks.for_each(|(id, m)| {
            match m {
                Ok(m) => {
                    out.insert(id, m);
                }
                Err(e) => log::debug!("{}: no memory sample of {id}: {e}", engine.uri()),
            }
            std::future::ready(())
        });
        let _ = tokio::time::timeout(deadline, collect).await;
        let _ = tx.send(out).await;
    })
}
