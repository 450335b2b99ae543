//! A bound on how often one kind of event is logged: a peer that can make a
//! node log at will (a warning per refused connection) must not fill its log.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lets at most `max` events per `window` be logged and counts the others,
/// so that one summary line can say how many were not.
pub(crate) struct LogLimit {
    /// What the events are, plural ("refused connections").
    what: &'static str,
    max: u32,
    window: Duration,
    state: Mutex<State>,
}

struct State {
    started: Instant,
    logged: u32,
    skipped: u64,
}

impl LogLimit {
    pub(crate) fn new(what: &'static str, max: u32, window: Duration) -> LogLimit {
        LogLimit { what, max, window, state: Mutex::new(State { started: Instant::now(), logged: 0, skipped: 0 }) }
    }

    /// At most 20 events per 10 s: the bound of every warning a peer or an
    /// outsider can cause.
    pub(crate) fn of_peer_events(what: &'static str) -> LogLimit {
        LogLimit::new(what, 20, Duration::from_secs(10))
    }

    /// Whether to log an event now: `Some(n)` to log it, after a summary of
    /// the `n` events of an ended window that were not logged (if `n > 0`);
    /// `None` to skip it (it is counted).
    pub(crate) fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    /// Runs `log` (which logs the event) if the event is admitted, after a
    /// line saying how many events of an ended window were not logged.
    pub(crate) fn warn(&self, log: impl FnOnce()) {
        if let Some(skipped) = self.admit() {
            self.report(skipped);
            log();
        }
    }

    /// Says how many events of an ended window were not logged, if any and
    /// not said yet: called periodically, so that the count of a burst is
    /// logged even when no later event comes to carry it.
    pub(crate) fn report_skipped(&self) {
        self.report(self.take_skipped_at(Instant::now()));
    }

    fn report(&self, skipped: u64) {
        if skipped > 0 {
            tracing::warn!("{skipped} more {} not logged", self.what);
        }
    }

    fn take_skipped_at(&self, now: Instant) -> u64 {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.roll(&mut s, now)
    }

    fn admit_at(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let skipped = self.roll(&mut s, now);
        if s.logged < self.max {
            s.logged += 1;
            Some(skipped)
        } else {
            s.skipped += 1;
            None
        }
    }

    /// Starts a new window if the current one has ended; returns the events
    /// the ended one skipped.
    fn roll(&self, s: &mut State, now: Instant) -> u64 {
        if now.saturating_duration_since(s.started) < self.window {
            return 0;
        }
        s.started = now;
        s.logged = 0;
        std::mem::take(&mut s.skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_max_per_window_then_one_count_of_the_rest() {
        let limit = LogLimit::new("events", 3, Duration::from_secs(10));
        let t0 = Instant::now();
        let first: Vec<_> = (0..1000).map(|_| limit.admit_at(t0)).collect();
        assert_eq!(first.iter().filter(|a| a.is_some()).count(), 3);
        assert!(first[..3].iter().all(|a| *a == Some(0)));
        assert_eq!(limit.admit_at(t0 + Duration::from_secs(9)), None);
        // The next window's first event carries the count of the skipped ones.
        assert_eq!(limit.admit_at(t0 + Duration::from_secs(11)), Some(998));
        assert_eq!(limit.admit_at(t0 + Duration::from_secs(11)), Some(0));
    }

    #[test]
    fn a_quiet_period_reports_the_skipped_count_once() {
        let limit = LogLimit::new("events", 1, Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(limit.admit_at(t0), Some(0));
        assert_eq!(limit.admit_at(t0), None);
        assert_eq!(limit.admit_at(t0), None);
        assert_eq!(limit.take_skipped_at(t0 + Duration::from_secs(5)), 0, "the window is still open");
        let later = t0 + Duration::from_secs(10);
        assert_eq!(limit.take_skipped_at(later), 2);
        assert_eq!(limit.take_skipped_at(later), 0);
    }
}
