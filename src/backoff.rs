//! Reconnect backoff and outage logging shared by the IMAP and SMTP loops:
//! exponential delays with a cap, and one log line when a dependency goes away
//! and one when it is back, not one per attempt.

use std::time::{Duration, Instant};

/// Exponential backoff: 1 s, 2 s, 4 s, ... up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            next: min,
            min,
            max,
        }
    }

    /// The delay to wait now; the following one doubles.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Tracks whether a dependency is down, so that an outage is logged once.
#[derive(Debug)]
pub struct Outage {
    what: &'static str,
    since: Option<Instant>,
    failures: u64,
}

impl Outage {
    pub fn new(what: &'static str) -> Outage {
        Outage {
            what,
            since: None,
            failures: 0,
        }
    }

    /// Records a failure; logs only the first of an outage.
    pub fn failed(&mut self, error: &dyn std::fmt::Display) {
        self.failures += 1;
        if self.since.is_none() {
            self.since = Some(Instant::now());
            tracing::warn!(target: "canvass::outage", dependency = self.what, error = %error, "{} unavailable; retrying with backoff", self.what);
        } else {
            tracing::debug!(dependency = self.what, error = %error, failures = self.failures, "still unavailable");
        }
    }

    /// Records a success; logs the end of an outage.
    pub fn ok(&mut self) {
        if let Some(since) = self.since.take() {
            tracing::info!(
                dependency = self.what,
                down_for_s = since.elapsed().as_secs(),
                failures = self.failures,
                "{} is back",
                self.what
            );
        }
        self.failures = 0;
    }

    pub fn is_down(&self) -> bool {
        self.since.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let d: Vec<u64> = (0..5).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(d, [1, 2, 4, 5, 5]);
        b.reset();
        assert_eq!(b.next_delay().as_secs(), 1);
    }

    #[test]
    fn outage_is_tracked() {
        let mut o = Outage::new("smtp");
        assert!(!o.is_down());
        o.failed(&"refused");
        o.failed(&"refused");
        assert!(o.is_down());
        o.ok();
        assert!(!o.is_down());
    }
}
