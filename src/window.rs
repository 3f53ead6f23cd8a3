//! Time rules, as pure functions: the collection window and the sending hours.
//!
//! The agency thinks in Danish local dates ("7 August to 20 September
//! inclusive"), so both rules are evaluated in Europe/Copenhagen, daylight
//! saving time included, while everything stored is UTC.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Europe::Copenhagen;
use chrono_tz::Tz;

/// The zone every calendar rule of canvass is evaluated in.
pub const TZ: Tz = Copenhagen;

/// The collection window: invitations are only sent for contacts made between
/// `start` and `end`, both inclusive, as local dates in Copenhagen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: NaiveDate,
    pub end: NaiveDate,
}

/// Where an instant lies relative to the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    Before,
    Inside,
    After,
}

impl Window {
    pub fn new(start: NaiveDate, end: NaiveDate) -> Window {
        Window { start, end }
    }

    /// Judges an instant (when the mailbox received the message) by its local date.
    pub fn position(&self, at: DateTime<Utc>) -> Position {
        let day = at.with_timezone(&TZ).date_naive();
        if day < self.start {
            Position::Before
        } else if day > self.end {
            Position::After
        } else {
            Position::Inside
        }
    }

    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.position(at) == Position::Inside
    }

    /// The first instant after the window (midnight after `end`, local time).
    pub fn closes_at(&self) -> DateTime<Utc> {
        local_midnight(self.end + Duration::days(1))
    }
}

fn local_midnight(day: NaiveDate) -> DateTime<Utc> {
    let naive = day.and_time(NaiveTime::MIN);
    // Midnight is never skipped by Danish DST (changes happen at 02:00/03:00).
    TZ.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| Utc.from_utc_datetime(&naive))
}

/// When invitations may be sent: local wall-clock hours on some weekdays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendingHours {
    pub start: NaiveTime,
    pub end: NaiveTime,
    pub days: Vec<Weekday>,
}

impl SendingHours {
    /// The earliest instant at or after `at` that lies inside the sending hours.
    pub fn next_open(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        let local = at.with_timezone(&TZ);
        for offset in 0..8 {
            let day = local.date_naive() + Duration::days(offset);
            if !self.days.contains(&day.weekday()) {
                continue;
            }
            let open = TZ
                .from_local_datetime(&day.and_time(self.start))
                .earliest()
                .map(|t| t.with_timezone(&Utc));
            let close = TZ
                .from_local_datetime(&day.and_time(self.end))
                .latest()
                .map(|t| t.with_timezone(&Utc));
            let (Some(open), Some(close)) = (open, close) else {
                continue;
            };
            if at < open {
                return open;
            }
            if at < close {
                return at;
            }
        }
        // Unreachable with at least one day configured; send rather than never.
        at
    }
}

/// When a message queued at `queued` may first be sent: after the configured
/// delay, moved into the sending hours when there are any.
pub fn first_send_time(
    queued: DateTime<Utc>,
    delay_minutes: u32,
    hours: Option<&SendingHours>,
) -> DateTime<Utc> {
    let earliest = queued + Duration::minutes(i64::from(delay_minutes));
    match hours {
        Some(h) => h.next_open(earliest),
        None => earliest,
    }
}

/// Exponential backoff for transient send failures: `base`, 2×, 4×, ...
/// capped at `max_minutes`.
pub fn retry_delay(attempts: u32, base_seconds: u32, max_minutes: u32) -> Duration {
    let secs = u64::from(base_seconds).saturating_mul(1u64 << attempts.saturating_sub(1).min(20));
    Duration::seconds(secs.min(u64::from(max_minutes) * 60) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn window() -> Window {
        Window::new(
            NaiveDate::from_ymd_opt(2024, 8, 7).unwrap(),
            NaiveDate::from_ymd_opt(2024, 9, 20).unwrap(),
        )
    }

    #[test]
    fn window_is_local_and_inclusive() {
        let w = window();
        // 23:30 UTC on 6 Aug is 01:30 on 7 Aug in Copenhagen (CEST, +2).
        assert_eq!(w.position(utc("2024-08-06T21:59:59Z")), Position::Before);
        assert_eq!(w.position(utc("2024-08-06T22:00:00Z")), Position::Inside);
        // The whole of 20 Sep local time is inside.
        assert_eq!(w.position(utc("2024-09-20T21:59:59Z")), Position::Inside);
        assert_eq!(w.position(utc("2024-09-20T22:00:00Z")), Position::After);
        assert_eq!(w.closes_at(), utc("2024-09-20T22:00:00Z"));
    }

    fn office() -> SendingHours {
        SendingHours {
            start: NaiveTime::from_hms_opt(8, 0, 0).unwrap(),
            end: NaiveTime::from_hms_opt(16, 0, 0).unwrap(),
            days: vec![
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
            ],
        }
    }

    #[test]
    fn sending_hours_move_to_next_opening() {
        let h = office();
        // Friday 2024-08-09 17:00 local (15:00Z) -> Monday 08:00 local (06:00Z).
        assert_eq!(
            h.next_open(utc("2024-08-09T15:00:00Z")),
            utc("2024-08-12T06:00:00Z")
        );
        // Inside hours: unchanged.
        assert_eq!(
            h.next_open(utc("2024-08-09T08:00:00Z")),
            utc("2024-08-09T08:00:00Z")
        );
        // Early morning: same day at opening.
        assert_eq!(
            h.next_open(utc("2024-08-09T03:00:00Z")),
            utc("2024-08-09T06:00:00Z")
        );
    }

    #[test]
    fn sending_hours_follow_winter_time() {
        // Monday 2024-10-28 is after the October change: 08:00 local is 07:00Z.
        let h = office();
        assert_eq!(
            h.next_open(utc("2024-10-28T00:00:00Z")),
            utc("2024-10-28T07:00:00Z")
        );
    }

    #[test]
    fn delay_then_hours() {
        let h = office();
        // 13:30Z is 15:30 in Copenhagen; 15 minutes later is still open.
        let t = first_send_time(utc("2024-08-09T13:30:00Z"), 15, Some(&h));
        assert_eq!(t, utc("2024-08-09T13:45:00Z"));
        // Closing time itself is closed.
        let t = first_send_time(utc("2024-08-09T13:30:00Z"), 30, Some(&h));
        assert_eq!(t, utc("2024-08-12T06:00:00Z"));
        let t = first_send_time(utc("2024-08-09T13:30:00Z"), 120, Some(&h));
        assert_eq!(t, utc("2024-08-12T06:00:00Z"));
        assert_eq!(
            first_send_time(utc("2024-08-09T13:30:00Z"), 0, None),
            utc("2024-08-09T13:30:00Z")
        );
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(retry_delay(1, 30, 60), Duration::seconds(30));
        assert_eq!(retry_delay(2, 30, 60), Duration::seconds(60));
        assert_eq!(retry_delay(3, 30, 60), Duration::seconds(120));
        assert_eq!(retry_delay(30, 30, 60), Duration::seconds(3600));
    }
}
