//! SIGHUP: the configuration re-read (a bad one rejected, the running one
//! kept), the alert channels and the OTLP export swapped without the loop
//! waiting on their drains, and `unitwatchd backoff reset` requests.

use super::*;

impl Supervisor {
    /// Starts, restarts or stops the alert channels to match `specs`.
    /// When nothing changed they keep running, with their queues; any
    /// change restarts them all (their cooldowns carry over in alerts.json).
    pub async fn set_alerts(&mut self, specs: Vec<ChannelSpec>) -> Result<(), AlertError> {
        if self.alerts.as_ref().map(|(s, _)| s) == Some(&specs)
            || (self.alerts.is_none() && specs.is_empty())
        {
            return Ok(());
        }
        if let Some((_, old)) = self.alerts.take() {
            // Its drain (a hung channel's in-flight delivery) on its own
            // task: the loop goes on handling failures meanwhile.
            tokio::spawn(old.retire(Duration::from_secs(2)));
        }
        if !specs.is_empty() {
            let a = Alerts::start(&specs, self.config.alerts_state_path())?;
            self.alerts = Some((specs, a));
        }
        Ok(())
    }

    /// Starts, restarts or stops the OTLP export to match `settings`. The
    /// old export's last flush runs on its own task, bounded (5 s).
    pub fn set_telemetry(&mut self, settings: Option<Settings>) {
        if self.telemetry.as_ref().map(|(s, _)| s) == settings.as_ref() {
            return;
        }
        if let Some((_, old)) = self.telemetry.take() {
            tokio::spawn(old.stop());
        }
        self.telemetry = settings.map(|s| (s.clone(), Telemetry::start(s)));
    }

    /// SIGHUP: re-read the config (a bad one is logged and the old kept) and
    /// apply any `backoff reset` request.
    pub async fn reload(&mut self) {
        notify::reloading();
        let loaded = Config::load(&self.config_path)
            .map_err(|e| e.to_string())
            .and_then(|c| {
                let t = Settings::resolve(&c, &process_env).map_err(|e| e.to_string())?;
                let a = crate::alerts::resolve(&c, &process_env).map_err(|e| e.to_string())?;
                for spec in &a {
                    crate::alerts::notifier(spec).map_err(|e| e.to_string())?;
                }
                Ok((c, t, a))
            });
        match loaded {
            Ok((c, telemetry, alerts)) => {
                self.set_telemetry(telemetry);
                // The state file follows the new state_dir, if it moved.
                let state_dir_moved = c.daemon.state_dir != self.config.daemon.state_dir;
                if state_dir_moved {
                    if let Some((_, old)) = self.alerts.take() {
                        tokio::spawn(old.retire(Duration::from_secs(2)));
                    }
                }
                let changed = c != self.config;
                if changed {
                    self.policy = Policy::from(&c.backoff);
                    self.config = c;
                    self.start_checks();
                    self.follow_journal(false).await;
                    // Units may be new: their Restart= read ahead too.
                    self.want_restart_settings();
                    // A read in flight asked for the old thresholds.
                    self.resources.generation += 1;
                }
                if let Err(e) = self.set_alerts(alerts).await {
                    log::error!("alert channels not started: {e}");
                }
                Event::new(
                    Kind::ConfigReloaded,
                    Severity::Info,
                    format!(
                        "configuration reloaded from {}{}",
                        self.config_path.display(),
                        if changed { "" } else { " (unchanged)" }
                    ),
                )
                .quiet()
                .emit();
            }
            Err(e) => Event::new(
                Kind::ConfigRejected,
                Severity::Error,
                format!("new configuration rejected, keeping the running one: {e}"),
            )
            .emit(),
        }
        self.apply_reset_request();
        self.sweep().await;
        notify::ready(&self.status_line);
    }

    pub(super) fn apply_reset_request(&mut self) {
        let path = self.config.daemon.state_dir.join(RESET_REQUEST);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return;
        };
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let target = (line != "*").then_some(line);
            let n = self.store.reset(target);
            self.down.retain(|u| target.is_some_and(|t| t != u));
            Event::new(
                Kind::BackoffReset,
                Severity::Info,
                format!(
                    "backoff reset by request for {} ({n} entries)",
                    target.unwrap_or("all units")
                ),
            )
            .quiet()
            .emit();
            if let Some(t) = target {
                // The event goes to the unit's story too.
                log::debug!(unitwatch_unit = t; "backoff reset");
            }
        }
        self.dirty = true;
        self.persist();
        let _ = std::fs::remove_file(&path);
    }
}
