//! Sending limits and throttling (pure): what the provider enforces per
//! mailbox, and how the outbox keeps under it.
//!
//! [`Pacer`] remembers when each message started and to how many recipients,
//! over the last 24 hours, and says how many messages may start now and when
//! the next may. Windows slide (Exchange counts "per minute" and "per day" as
//! rolling windows). A throttling reply ([`is_throttling`]) pauses all sending
//! for [`THROTTLE_PAUSE`], doubling while it repeats: slow down and retry,
//! never a failure or a bounce. The history lives in memory: after a restart
//! the day's count starts again at zero (the provider's own count does not;
//! its throttling replies then slow canvass down).

use std::collections::VecDeque;

use chrono::{DateTime, Duration, Utc};

/// The limits the outbox keeps to (`None`: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Simultaneous SMTP connections (checked against `pool_size`).
    pub max_connections: Option<u32>,
    pub messages_per_minute: Option<u32>,
    pub messages_per_day: Option<u32>,
    pub recipients_per_day: Option<u32>,
}

/// The first pause after a throttling reply.
pub const THROTTLE_PAUSE: Duration = Duration::seconds(60);
/// The longest pause while throttling repeats.
pub const MAX_THROTTLE_PAUSE: Duration = Duration::minutes(30);

#[derive(Debug, Clone)]
pub struct Pacer {
    limits: Limits,
    /// (start time, recipients), oldest first, last 24 h.
    history: VecDeque<(DateTime<Utc>, u32)>,
    paused_until: Option<DateTime<Utc>>,
    pause: Duration,
}

impl Pacer {
    pub fn new(limits: Limits) -> Pacer {
        Pacer {
            limits,
            history: VecDeque::new(),
            paused_until: None,
            pause: THROTTLE_PAUSE,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// New limits (a reload): what was already sent still counts against
    /// them.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    fn forget_before(&mut self, now: DateTime<Utc>) {
        let day_ago = now - Duration::days(1);
        while self.history.front().is_some_and(|(t, _)| *t <= day_ago) {
            self.history.pop_front();
        }
    }

    /// May a message to `recipients` start now? If not, when to look again.
    pub fn check(&mut self, now: DateTime<Utc>, recipients: u32) -> Result<(), DateTime<Utc>> {
        self.forget_before(now);
        if let Some(until) = self.paused_until {
            if now < until {
                return Err(until);
            }
            self.paused_until = None;
        }
        let mut wait: Option<DateTime<Utc>> = None;
        let mut later = |t: DateTime<Utc>| wait = Some(wait.map_or(t, |w: DateTime<Utc>| w.max(t)));
        if let Some(max) = self.limits.messages_per_minute {
            let minute_ago = now - Duration::minutes(1);
            let recent: Vec<DateTime<Utc>> = self
                .history
                .iter()
                .filter(|(t, _)| *t > minute_ago)
                .map(|(t, _)| *t)
                .collect();
            if recent.len() as u32 >= max.max(1) {
                // Free when the oldest of the last `max` leaves the window.
                later(recent[recent.len() - max.max(1) as usize] + Duration::minutes(1));
            }
        }
        if let Some(max) = self.limits.messages_per_day {
            if self.history.len() as u32 >= max.max(1) {
                later(self.history[self.history.len() - max.max(1) as usize].0 + Duration::days(1));
            }
        }
        if let Some(max) = self.limits.recipients_per_day {
            let total: u32 = self.history.iter().map(|(_, n)| *n).sum();
            if total + recipients > max.max(1) && !self.history.is_empty() {
                // Free when enough of the oldest have left the window.
                let mut freed = 0;
                let need = total + recipients - max.max(1);
                for (t, n) in &self.history {
                    freed += n;
                    if freed >= need {
                        later(*t + Duration::days(1));
                        break;
                    }
                }
            }
        }
        match wait {
            Some(t) => Err(t),
            None => Ok(()),
        }
    }

    /// A message to `recipients` starts now (call after [`Self::check`] said yes).
    pub fn record(&mut self, now: DateTime<Utc>, recipients: u32) {
        self.history.push_back((now, recipients));
    }

    /// The server asked to slow down: pause everything, longer each time.
    pub fn throttled(&mut self, now: DateTime<Utc>) -> DateTime<Utc> {
        let until = now + self.pause;
        self.paused_until = Some(until);
        self.pause = (self.pause * 2).min(MAX_THROTTLE_PAUSE);
        until
    }

    /// Sending is paused by a throttling reply.
    pub fn paused(&self, now: DateTime<Utc>) -> bool {
        self.paused_until.is_some_and(|until| now < until)
    }

    /// A message was accepted: the throttling is over.
    pub fn accepted(&mut self) {
        self.pause = THROTTLE_PAUSE;
    }
}

/// Is this SMTP reply the server asking to slow down (rather than refusing
/// the message)? `432 4.3.2` (Exchange: too many concurrent connections or
/// messages), `421` (service not available / too many connections), `4.7.x`
/// with a rate or limit, `451 4.7.500`-style throttles, Exchange's
/// `554 5.2.0 … SubmissionQuotaExceeded`, Gmail's `550 5.4.5` daily quota
/// and `421 4.7.28` / `4.7.0 … rate limited`.
pub fn is_throttling(reply: &str) -> bool {
    let r = reply.trim_start();
    let lower = r.to_ascii_lowercase();
    let code = r.get(..3).unwrap_or("");
    if code == "421" || code == "432" || lower.contains("4.3.2") {
        return true;
    }
    let ratey = [
        "rate",
        "limit",
        "quota",
        "throttl",
        "too many",
        "too much",
        "try again later",
    ]
    .iter()
    .any(|w| lower.contains(w));
    if code.starts_with('4') && lower.contains("4.7.") && ratey {
        return true;
    }
    if lower.contains("5.4.5") && lower.contains("quota") {
        return true;
    }
    lower.contains("submissionquotaexceeded")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    #[test]
    fn thirty_a_minute_then_wait_for_the_window_to_slide() {
        let mut p = Pacer::new(Limits {
            messages_per_minute: Some(30),
            ..Limits::default()
        });
        for i in 0..30 {
            assert_eq!(p.check(t(i), 1), Ok(()));
            p.record(t(i), 1);
        }
        // The 31st waits until the first leaves the minute.
        assert_eq!(p.check(t(30), 1), Err(t(60)));
        assert_eq!(p.check(t(60), 1), Ok(()));
    }

    #[test]
    fn recipients_per_day_count_every_recipient() {
        let mut p = Pacer::new(Limits {
            recipients_per_day: Some(10),
            ..Limits::default()
        });
        p.record(t(0), 4);
        p.record(t(10), 4);
        assert_eq!(p.check(t(20), 2), Ok(()));
        // 4 + 4 + 3 > 10: wait until the first 4 leave the day.
        assert_eq!(p.check(t(20), 3), Err(t(86_400)));
        assert_eq!(p.check(t(86_400), 3), Ok(()));
    }

    #[test]
    fn messages_per_day() {
        let mut p = Pacer::new(Limits {
            messages_per_day: Some(2),
            ..Limits::default()
        });
        p.record(t(0), 1);
        p.record(t(5), 1);
        assert_eq!(p.check(t(6), 1), Err(t(86_405 - 5)));
    }

    #[test]
    fn no_limits_never_wait() {
        let mut p = Pacer::new(Limits::default());
        for i in 0..10_000 {
            p.record(t(0), 50);
            assert_eq!(p.check(t(0), 50), Ok(()), "{i}");
        }
    }

    #[test]
    fn throttling_pauses_and_backs_off() {
        let mut p = Pacer::new(Limits::default());
        assert_eq!(p.throttled(t(0)), t(60));
        assert!(p.paused(t(30)));
        assert_eq!(p.check(t(30), 1), Err(t(60)));
        assert_eq!(p.check(t(60), 1), Ok(()));
        assert!(!p.paused(t(60)));
        assert_eq!(p.throttled(t(60)), t(180));
        p.accepted();
        assert_eq!(p.throttled(t(200)), t(260));
    }

    #[test]
    fn throttling_replies_are_recognised() {
        for r in [
            "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded",
            "421 4.7.0 Temporary System Problem. Try again later",
            "421 4.7.28 Gmail has detected an unusual rate of mail",
            "451 4.7.500 Server busy. Please try again later. Rate limit exceeded",
            "550 5.4.5 Daily user sending quota exceeded",
            "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException",
            "421 Too many connections",
            "450 4.7.1 Error: too much mail from 127.0.0.1",
        ] {
            assert!(is_throttling(r), "{r}");
        }
        for r in [
            "550 5.1.1 user unknown",
            "451 4.3.0 Temporary lookup failure",
            "554 5.7.1 Relay access denied",
            "535 5.7.3 Authentication unsuccessful",
        ] {
            assert!(!is_throttling(r), "{r}");
        }
    }
}
