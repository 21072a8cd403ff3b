//! The systemd notification protocol (`sd_notify`): `READY=1` once the gateway serves, `WATCHDOG=1` at
//! half of `WATCHDOG_USEC`, `STOPPING=1` when a planned stop starts draining.
//!
//! **Invariant:** nothing is sent unless systemd asked for it by setting `NOTIFY_SOCKET` (the unit is
//! `Type=notify`); the watchdog is pinged only when `WATCHDOG_USEC` is set and `WATCHDOG_PID`, if set, is
//! this process. Sending is best effort and never blocks or fails the gateway: a lost datagram costs at
//! worst a restart by systemd, which the gateway recovers from like any other. The pings come from the
//! gateway's own main loop, so a wedged loop stops them and systemd restarts the process.
//!
//! The protocol is one datagram per message on a Unix socket, so there is no dependency: the send lives
//! in the `systemd_unix` leaf; on Windows there is no systemd and every send is a no-op.

use std::time::Duration;

#[cfg(unix)]
#[path = "systemd_unix.rs"]
mod os;
#[cfg(windows)]
#[path = "systemd_windows.rs"]
mod os;

/// The variable systemd sets to the notification socket's path (`@` = Linux abstract namespace).
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// A `Type=notify` unit's connection to systemd: the socket it named in `NOTIFY_SOCKET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdNotify {
    socket: std::ffi::OsString,
}

impl SdNotify {
    /// `Some` when systemd asked for notifications (`NOTIFY_SOCKET` is set and not empty).
    pub fn from_env() -> Option<SdNotify> {
        std::env::var_os(NOTIFY_SOCKET)
            .filter(|s| !s.is_empty())
            .map(|socket| SdNotify { socket })
    }

    /// `READY=1`: the gateway serves.
    pub fn ready(&self) {
        self.send("READY=1");
    }

    /// `STOPPING=1`: a planned stop has begun (the drain may take up to `drain_timeout_secs`).
    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// One watchdog ping.
    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    fn send(&self, message: &str) {
        if let Err(e) = os::send(&self.socket, message.as_bytes()) {
            tracing::debug!("sd_notify {message} failed: {e}");
        }
    }
}

/// How often to ping, if systemd watches this process: half of `WATCHDOG_USEC`.
pub fn watchdog_interval() -> Option<Duration> {
    interval_for(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

/// The pure part of [`watchdog_interval`].
pub fn interval_for(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok() != Some(me)
    {
        return None;
    }
    let usec = usec?.trim().parse::<u64>().ok().filter(|&u| u > 0)?;
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_interval_is_half_and_only_for_us() {
        assert_eq!(
            interval_for(Some("60000000"), None, 7),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            interval_for(Some("60000000"), Some("7"), 7),
            Some(Duration::from_secs(30))
        );
        assert_eq!(interval_for(Some("60000000"), Some("8"), 7), None);
        assert_eq!(interval_for(Some("0"), None, 7), None);
        assert_eq!(interval_for(Some("x"), None, 7), None);
        assert_eq!(interval_for(None, None, 7), None);
    }
}
