//! The daemon's loop: D-Bus signals, the sweep ticker (whose completed
//! sweeps alone ping the watchdog), due restarts, settle windows, the
//! reconnect deadline, SIGHUP and SIGTERM, one at a time.

use super::*;

async fn next_signal(signals: &mut Option<Signals>) -> Option<Signal> {
    match signals {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_wall(t: Option<SystemTime>) {
    match t {
        Some(t) => {
            let d = t.duration_since(SystemTime::now()).unwrap_or_default();
            tokio::time::sleep(d).await
        }
        None => std::future::pending().await,
    }
}

async fn next_probe(runner: &mut Option<Runner>) -> crate::checks::runner::Done {
    match runner {
        Some(r) => r.next().await,
        None => std::future::pending().await,
    }
}

async fn next_journal(j: &mut Option<crate::checks::journal::follow::Follower>) {
    match j {
        Some(j) => j.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// At most this many probe results are taken in one turn of the loop.
const PROBE_BATCH: usize = 32;

/// How long the start waits for the probes' first results, so that the
/// first snapshot (and READY=1) has them; a probe slower than this shows as
/// pending until it reports.
const FIRST_RESULTS: Duration = Duration::from_secs(1);

/// How long the start and the stop wait for the snapshot's writer.
const SNAPSHOT_FLUSH: Duration = Duration::from_secs(3);

impl Supervisor {
    /// Takes in the probes' first results, for up to [`FIRST_RESULTS`].
    async fn first_results(&mut self) {
        let until = tokio::time::Instant::now() + FIRST_RESULTS;
        let waiting = |s: &Self| {
            s.checks
                .iter()
                .zip(&s.results)
                .any(|(d, r)| d.is_probe() && r.pending)
        };
        while waiting(self) {
            let Some(r) = self.runner.as_mut() else {
                return;
            };
            match tokio::time::timeout_at(until, r.next()).await {
                Ok(done) => self.on_probe(done).await,
                Err(_) => break,
            }
        }
        // The sweep that follows publishes them.
        self.publish_at = None;
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config_path: &Path) -> Result<(), DaemonError> {
    let config = Config::load(config_path)?;
    // Started first, so that events of the start (a corrupt state file)
    // are exported too.
    let telemetry =
        Settings::resolve(&config, &process_env)?.map(|s| (s.clone(), Telemetry::start(s)));
    let specs = crate::alerts::resolve(&config, &process_env)?;
    ensure_dir(&config.daemon.state_dir)?;
    let alerts = if specs.is_empty() {
        None
    } else {
        let a = Alerts::start(&specs, config.alerts_state_path())?;
        Some((specs, a))
    };
    let mut sup = Supervisor::new(config_path, config)?;
    sup.telemetry = telemetry;
    sup.alerts = alerts;
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;
    let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signal)?;

    let mut stream = sup.connect().await;
    sup.start_checks();
    sup.follow_journal(true).await;
    sup.first_results().await;
    sup.first_containers().await;
    sup.sweep().await;
    sup.first_resource_read().await;
    if sup.bus.is_none() {
        stream = None;
    }
    Event::new(
        Kind::DaemonStarted,
        Severity::Info,
        format!(
            "unitwatchd {} watching {} units, {} checks: {}",
            env!("CARGO_PKG_VERSION"),
            sup.config.units.len(),
            sup.checks.len(),
            sup.status_line
        ),
    )
    .emit();
    // The first snapshot is on disk before anyone is told the daemon is up.
    sup.publisher.flush(SNAPSHOT_FLUSH).await;
    notify::ready(&sup.status_line);

    let new_ticker = |p: Duration| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + p, p);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    };
    sup.sweep_every = sup.period();
    let mut ticker = new_ticker(sup.sweep_every);
    // An absolute deadline, kept across iterations: a sleep made afresh in
    // each turn of the loop would never finish while the sweep ticker (as
    // short as the retry wait) keeps winning the select.
    let mut reconnect_at: Option<tokio::time::Instant> = None;
    loop {
        if stream.is_none() && reconnect_at.is_none() {
            reconnect_at = Some(tokio::time::Instant::now() + RECONNECT_EVERY);
        }
        let (publish_at, stale_at) = (sup.publish_at, sup.next_stale());
        let (restart_at, settle_at) = (sup.next_deadline(), sup.settling.values().min().copied());
        let reconnect = async move {
            match reconnect_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            c = next_signal(&mut stream) => match c {
                Some(signal) => {
                    match signal {
                        Signal::Change(change) => sup.on_change(change).await,
                        Signal::Reloading => {
                            log::debug!("systemd is reloading its unit files: Restart= to be read again");
                            sup.forget_restart_settings();
                        }
                    }
                    if stream.as_ref().is_some_and(Signals::take_overflow) {
                        log::warn!("signal queue overflowed: re-reading every unit");
                        // A Reloading may be among the lost.
                        sup.forget_restart_settings();
                        sup.sweep().await;
                        // Signals were lost: the read is the stream's new start.
                        sup.streamed.clear();
                    }
                }
                None => { stream = None; sup.lost_bus("the bus closed the connection"); }
            },
            _ = ticker.tick() => {
                sup.sweep().await;
                if sup.bus.is_none() {
                    stream = None;
                }
                notify::watchdog(&sup.status_line);
            }
            done = next_probe(&mut sup.runner) => {
                sup.on_probe(done).await;
                // The rest of the batch in this turn, not one turn (and
                // one set of deadlines) each; bounded, so that a signal
                // waits for a few results at most.
                for _ in 0..PROBE_BATCH {
                    let Some(done) = sup.runner.as_mut().and_then(Runner::ready) else {
                        break;
                    };
                    sup.on_probe(done).await;
                }
            }
            Some(m) = containers::next_message(&mut sup.container_news) => sup.on_container_message(m),
            answers = sup.prefetch.next() => sup.on_prefetched(answers),
            answers = sup.resources.next() => sup.on_resources(answers),
            _ = next_journal(&mut sup.journal) => sup.on_journal().await,
            _ = sleep_until_opt(publish_at) => sup.publish(),
            _ = sleep_until_wall(stale_at) => sup.stale_due(),
            _ = sleep_until_wall(restart_at) => sup.restart_due().await,
            _ = sleep_until_wall(settle_at) => sup.settle_due().await,
            _ = reconnect => {
                reconnect_at = None;
                stream = sup.connect().await;
                if stream.is_some() {
                    sup.sweep().await;
                }
            }
            _ = hup.recv() => {
                sup.reload().await;
                sup.sweep_every = sup.period();
                ticker = new_ticker(sup.sweep_every);
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    notify::stopping();
    sup.stop_journal().await;
    sup.dirty = true;
    sup.persist();
    sup.state_writer.flush(SNAPSHOT_FLUSH).await;
    sup.publisher.flush(SNAPSHOT_FLUSH).await;
    if let Some((_, a)) = sup.alerts.take() {
        a.shutdown(Duration::from_secs(3)).await;
    }
    if let Some((_, t)) = sup.telemetry.take() {
        t.shutdown().await;
    }
    log::info!("unitwatchd stopping");
    Ok(())
}
