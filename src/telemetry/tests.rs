//! The event queue: bounded, oldest dropped and counted, and a sink that
//! keeps no export alive.

use super::*;
use crate::events::Kind;

fn shared(queue_size: usize) -> Arc<Shared> {
    let config = crate::config::Config::parse(
        &format!("[telemetry]\nqueue_size = {queue_size}\n"),
        std::path::Path::new("t.toml"),
    )
    .unwrap();
    let s = Settings::for_config(&config, &|_| None).unwrap();
    Arc::new(Shared::new(&s, None))
}

fn event(n: usize) -> Event {
    Event::new(
        Kind::CheckChanged,
        EventSeverity::Info,
        format!("event {n}"),
    )
}

#[test]
fn a_full_queue_drops_the_oldest_and_counts_them() {
    let sh = shared(3);
    let sink = Sink(Arc::downgrade(&sh));
    for n in 0..5 {
        sink.event(&event(n), SystemTime::now());
    }
    let q = sh.queue.lock().unwrap();
    let kept: Vec<&str> = q.iter().map(|q| q.event.message.as_str()).collect();
    assert_eq!(kept, ["event 2", "event 3", "event 4"]);
    assert_eq!(sh.dropped.load(Ordering::Relaxed), 2);
    assert!(
        sh.dropping.load(Ordering::Relaxed),
        "one episode, warned once"
    );
}

#[test]
fn a_sink_keeps_no_export_alive_and_outlives_it_harmlessly() {
    let sh = shared(3);
    let sink = Sink(Arc::downgrade(&sh));
    sink.event(&event(0), SystemTime::now());
    assert_eq!(sh.queue.lock().unwrap().len(), 1, "a live export queues");
    // Only the export owns its state: stopping it frees the queue,
    // whatever sink is still registered.
    assert_eq!(Arc::strong_count(&sh), 1);
    drop(sh);
    assert!(sink.0.upgrade().is_none(), "the export's state is gone");
    sink.event(&event(1), SystemTime::now());
    assert!(
        sink.0.upgrade().is_none(),
        "and an event does not revive it"
    );
}
