//! sd_notify messages to the service manager. Outside systemd (no
//! NOTIFY_SOCKET) they are no-ops, so the daemon also runs by hand.

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        log::debug!("sd_notify failed: {e}");
    }
}

pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Sent only after a sweep completed: a hung loop stops the pings and
/// systemd's watchdog kills and restarts the daemon.
pub fn watchdog(status: &str) {
    send(&[NotifyState::Watchdog, NotifyState::Status(status)]);
}

pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

pub fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    // systemd >= 253 wants MONOTONIC_USEC with RELOADING=1; older ignores it.
    if let Ok(m) = NotifyState::monotonic_usec_now() {
        states.push(m);
    }
    send(&states);
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// The watchdog period systemd expects for this process, if any.
pub fn watchdog_period() -> Option<Duration> {
    sd_notify::watchdog_enabled()
}
