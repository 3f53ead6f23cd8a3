//! When scheduled jobs are due, as pure functions over a cron expression, the
//! last completed slot (persisted in the store) and now. Cron expressions are
//! read in Europe/Copenhagen, so "every Monday at 08:00" stays 08:00 across
//! daylight saving time.
//!
//! Missed-run safety: a job whose slot passed while the daemon was down runs
//! once when it comes back — for the latest missed slot only — and a slot that
//! completed is never run again.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use cron::Schedule;

use crate::window::TZ;

/// A parsed cron expression (with seconds: `sec min hour day month weekday`).
#[derive(Debug, Clone)]
pub struct Cron {
    expr: String,
    schedule: Schedule,
}

impl Cron {
    pub fn parse(expr: &str) -> Result<Cron, String> {
        Schedule::from_str(expr)
            .map(|schedule| Cron {
                expr: expr.to_string(),
                schedule,
            })
            .map_err(|e| {
                format!("{expr:?} is not a cron expression (sec min hour day month weekday): {e}")
            })
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The first slot strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule
            .after(&t.with_timezone(&TZ))
            .next()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The latest slot in (`after`, `now`], if any.
    pub fn latest_between(
        &self,
        after: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let mut latest = None;
        // Bounded: a minutely schedule missed for a long time still ends.
        for slot in self
            .schedule
            .after(&after.with_timezone(&TZ))
            .take(1_000_000)
        {
            let slot = slot.with_timezone(&Utc);
            if slot > now {
                break;
            }
            latest = Some(slot);
        }
        latest
    }
}

/// What a scheduled job should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Never ran: remember `now` as the starting point; nothing is owed yet.
    Start,
    /// Run for this slot (the latest one missed or reached), then record it.
    Run(DateTime<Utc>),
    /// Nothing to do before this instant.
    Wait(Option<DateTime<Utc>>),
}

/// Decides a cron job: `last` is the last completed slot (or the start point).
pub fn due(cron: &Cron, last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Due {
    let Some(last) = last else {
        return Due::Start;
    };
    match cron.latest_between(last, now) {
        Some(slot) => Due::Run(slot),
        None => Due::Wait(cron.next_after(now.max(last))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn monday_8() -> Cron {
        Cron::parse("0 0 8 * * Mon").unwrap()
    }

    #[test]
    fn monday_morning_across_october_dst_change() {
        // Sunday 27 Oct 2024 Denmark leaves summer time (UTC+2 → UTC+1).
        let c = monday_8();
        assert_eq!(
            c.next_after(utc("2024-10-20T12:00:00Z")),
            Some(utc("2024-10-21T06:00:00Z"))
        );
        assert_eq!(
            c.next_after(utc("2024-10-21T06:00:00Z")),
            Some(utc("2024-10-28T07:00:00Z"))
        );
    }

    #[test]
    fn monday_morning_across_march_dst_change() {
        // Sunday 30 Mar 2025 Denmark enters summer time (UTC+1 → UTC+2).
        let c = monday_8();
        assert_eq!(
            c.next_after(utc("2025-03-24T07:00:00Z")),
            Some(utc("2025-03-31T06:00:00Z"))
        );
    }

    #[test]
    fn a_job_in_the_skipped_hour_is_not_lost() {
        // 02:30 does not exist on 30 Mar 2025 in Copenhagen; the job must still
        // run on the following days and never panic.
        let c = Cron::parse("0 30 2 * * *").unwrap();
        let next = c.next_after(utc("2025-03-29T02:00:00Z")).unwrap();
        assert!(next > utc("2025-03-29T02:00:00Z"));
        let after = c.next_after(utc("2025-03-30T00:00:00Z")).unwrap();
        assert!(after <= utc("2025-03-31T01:30:00Z"), "{after}");
    }

    #[test]
    fn missed_slots_run_once_for_the_latest() {
        let c = monday_8();
        let last = utc("2024-08-05T06:00:00Z");
        // Down for two Mondays: one run, for the latest slot.
        assert_eq!(
            due(&c, Some(last), utc("2024-08-20T09:00:00Z")),
            Due::Run(utc("2024-08-19T06:00:00Z"))
        );
        // That slot recorded: nothing until next Monday.
        assert_eq!(
            due(
                &c,
                Some(utc("2024-08-19T06:00:00Z")),
                utc("2024-08-20T09:00:00Z")
            ),
            Due::Wait(Some(utc("2024-08-26T06:00:00Z")))
        );
        // Exactly at the slot: run.
        assert_eq!(
            due(&c, Some(last), utc("2024-08-12T06:00:00Z")),
            Due::Run(utc("2024-08-12T06:00:00Z"))
        );
        assert_eq!(due(&c, None, utc("2024-08-12T06:00:00Z")), Due::Start);
    }

    #[test]
    fn bad_expressions_say_so() {
        assert!(Cron::parse("every monday")
            .unwrap_err()
            .contains("not a cron expression"));
    }
}
