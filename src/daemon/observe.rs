//! What systemd says: the connection, the full read of every watched unit,
//! and its signals, ordered against each other by systemd's serials (a read
//! can overtake signals that zbus still holds in their queue: see
//! `systemd::older`). Each move is handed to `on_transition`.

use super::*;
use crate::replay::Replay;

impl Supervisor {
    /// Connects and subscribes; on failure records why and returns None.
    pub(super) async fn connect(&mut self) -> Option<Signals> {
        log::debug!("connecting to systemd over D-Bus");
        let attempt = async {
            // Bounded: the loop must keep sweeping (and pinging the watchdog)
            // while a restarting dbus-daemon leaves the socket unanswered.
            let bus = Systemd::connect_timeout(CONNECT_TIMEOUT).await?;
            let stream = bus.subscribe().await?;
            Ok::<_, SystemdError>((bus, stream))
        };
        match attempt.await {
            Ok((bus, stream)) => {
                if self.bus_error.as_deref() != Some("not connected yet") {
                    Event::new(
                        Kind::SystemdReconnected,
                        Severity::Info,
                        "reconnected to systemd over D-Bus",
                    )
                    .emit();
                }
                self.bus = Some(bus);
                self.bus_error = None;
                // Serials are per connection of systemd's: start afresh.
                self.listed_serial = None;
                self.streamed.clear();
                self.result_serial.clear();
                // systemd may have reloaded while this daemon was away.
                self.forget_restart_settings();
                Some(stream)
            }
            Err(e) => {
                let first = self.bus_error.as_deref() == Some("not connected yet");
                let msg = e.to_string();
                if first || self.bus_error.as_deref() != Some(msg.as_str()) {
                    Event::new(
                        Kind::SystemdUnreachable,
                        Severity::Error,
                        format!("cannot reach systemd: {msg}"),
                    )
                    .emit();
                }
                self.bus_error = Some(msg);
                None
            }
        }
    }

    /// The bus went away: unit checks say so until it is back.
    pub(super) fn lost_bus(&mut self, why: &str) {
        if self.bus.take().is_some() {
            Event::new(
                Kind::SystemdUnreachable,
                Severity::Error,
                format!("lost the connection to systemd: {why}; reconnecting"),
            )
            .emit();
        }
        self.bus_error = Some(format!("lost the connection to systemd: {why}"));
        self.run_checks(None);
        self.publish();
    }

    /// Re-reads every watched unit and handles whatever moved since the
    /// last look (a signal may have been missed, or this is the first look).
    pub(super) async fn refresh_units(&mut self) -> Result<(), SystemdError> {
        let Some(bus) = &self.bus else {
            return Ok(());
        };
        let (fresh, serial) = read_units(bus, &self.config, &self.units).await?;
        self.listed_serial = Some(serial);
        // The whole table is updated before any reaction, so that checks
        // run during a reaction see every unit's current state.
        let mut moved = Vec::new();
        for (name, path, status) in fresh {
            // A unit's object path follows from its name: known once seen.
            if !self.paths.contains_key(&name) {
                self.by_path.insert(path.clone(), name.clone());
                self.paths.insert(name.clone(), path);
            }
            let changed = self.units.get(&name).is_none_or(|p| !p.same_state(&status));
            if !status.is_failed() {
                self.restarting.remove(&name);
            }
            // Stale signals still queued are replayed against this read.
            if let Some(r) = self.streamed.get_mut(&name) {
                r.reread(status.clone());
            }
            let prev = self.units.insert(name.clone(), status);
            if changed {
                // The read is ahead of the signals here: keep where they
                // had the unit (the oldest, if an earlier read moved it
                // too), for the stale ones still queued.
                if let Some(p) = &prev {
                    let read = &self.units[&name];
                    self.streamed
                        .entry(name.clone())
                        .or_insert_with(|| Replay::new(p.clone(), read.clone()));
                }
                moved.push((name, prev));
            }
        }
        for (name, prev) in moved {
            self.on_transition(&name, prev, Told::default()).await;
        }
        Ok(())
    }

    /// Handles one unit property change from a signal.
    pub(super) async fn on_change(&mut self, change: Change) {
        let Some(name) = self.by_path.get(&change.path).cloned() else {
            return;
        };
        #[cfg(feature = "test-hooks")]
        self.test_late_read("test-late-read-signal", true).await;
        if self
            .listed_serial
            .is_some_and(|listed| crate::systemd::older(change.serial, listed))
        {
            self.on_stale_change(&name, &change).await;
            return;
        }
        let Some(status) = self.units.get_mut(&name) else {
            return;
        };
        let prev = status.clone();
        let moved = change.apply(status);
        if moved && !status.is_active() {
            // Its figures were of the run that ended.
            status.resources = None;
            status.memory_current = None;
        }
        if change.result.is_some() {
            // Every service's Service signal comes here: no new key (and
            // no allocation) once the unit is known.
            match self.result_serial.get_mut(&name) {
                Some(s) => *s = change.serial,
                None => {
                    self.result_serial.insert(name.clone(), change.serial);
                }
            }
        }
        // Newer than the last read: the signals have caught up with it.
        self.streamed.remove(&name);
        if moved {
            // systemd moved the unit: a restart job in flight has run.
            self.restarting.remove(&name);
            self.on_transition(&name, Some(prev), Told::by(&change))
                .await;
            self.persist();
            self.publish_soon();
        }
    }

    /// A change systemd sent before the last full read, whose newer state
    /// the table holds. Applied over the read it would take the unit back
    /// in time; dropped, it could hide a crash that systemd's `Restart=`
    /// undid by the read. `Replay` tells which moves are news: those the
    /// table then follows are reacted to as if the read had not been.
    async fn on_stale_change(&mut self, name: &str, change: &Change) {
        let Some(read) = self.units.get(name).cloned() else {
            return;
        };
        let replay = self
            .streamed
            .entry(name.to_string())
            .or_insert_with(|| Replay::new(read.clone(), read));
        let Some(moved) = replay.step(change) else {
            log::debug!(
                "{name}: signal {} is older than the last read and not news",
                change.serial
            );
            return;
        };
        log::debug!(
            "{name}: signal {} is older than the last read, which did not show {}/{}",
            change.serial,
            moved.active_state,
            moved.sub_state
        );
        let from = self.units.insert(name.to_string(), moved);
        self.restarting.remove(name);
        self.on_transition(name, from, Told::by(change)).await;
        self.persist();
        self.publish_soon();
    }
}
