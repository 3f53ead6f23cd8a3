//! Scheduled work, in one loop: the managers' digest on its cron schedule
//! (missed-run safe: the last completed slot is kept in the store), one final
//! digest when the collection window closes, and reminders to those who have
//! not answered; the retention purge once it is due and, with an IMAP mailbox,
//! a daily sweep of its sent and processed folders. What is due is decided by
//! pure functions ([`crate::schedule`], [`reminder_due`], [`crate::retention`]);
//! the loop only sleeps until the next thing is due.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::address::Address;
use crate::analysis::digest::{self, Snapshot};
use crate::config::RemindersConfig;
use crate::pipeline::Pipeline;
use crate::schedule::{self, Due};
use crate::shutdown::Shutdown;
use crate::store::{Delivery, Invitation, JobState, Purpose, StoreError};
use crate::token::Token;
use crate::window::{self, Window};

pub const DIGEST_JOB: &str = "digest";
pub const FINAL_DIGEST_JOB: &str = "final_digest";
pub const REMINDER_JOB: &str = "reminders";
/// Retention (src/retention.rs): its state is the deadline it completed.
pub const RETENTION_JOB: &str = "retention";
/// The daily sweep of the mailbox's sent and processed folders once the
/// retention is due (src/ingest/imap/purge.rs); its state is its last run.
pub const MAILBOX_SWEEP_JOB: &str = "mailbox_sweep";
/// The daily log line when the trust setting refuses most consultants' mail;
/// its state is when it was last logged.
pub const TRUST_WARNING_JOB: &str = "trust_warning";
/// A mailbox sweep that fails is tried again after this long.
const MAILBOX_SWEEP_RETRY: chrono::Duration = chrono::Duration::hours(1);
/// A sweep is one bounded unit of work, even against a server that stalls.
const MAILBOX_SWEEP_LIMIT: Duration = Duration::from_secs(300);
/// How often reminders are looked for.
pub const REMINDER_EVERY: chrono::Duration = chrono::Duration::hours(1);
/// The longest the loop sleeps without looking (a changed clock, a reload).
const MAX_SLEEP: Duration = Duration::from_secs(300);

/// Whether an invitation is due a reminder now: delivered, not answered,
/// opted out or bounced, fewer than `max` reminders, `after_days` since the
/// last contact, the window still open, and the address still held.
pub fn reminder_due(
    inv: &Invitation,
    now: DateTime<Utc>,
    cfg: RemindersConfig,
    window: &Window,
) -> bool {
    if cfg.after_days == 0 || inv.reminders >= cfg.max || !window.contains(now) {
        return false;
    }
    if inv.answered
        || inv.opted_out
        || inv.bounced
        || inv.address.is_none()
        || inv.token_nonce.is_none()
    {
        return false;
    }
    let Delivery::Sent { at } = inv.delivery else {
        return false;
    };
    let last = inv.last_reminder_at.unwrap_or(at).max(at);
    now - last >= chrono::Duration::days(i64::from(cfg.after_days))
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot build the digest: {0}")]
    Render(String),
}

pub struct Scheduler {
    pub pipeline: Arc<Pipeline>,
}

/// A rendered digest for one manager.
pub struct RenderedDigest {
    pub to: Address,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub chart: Option<Vec<u8>>,
}

impl Scheduler {
    pub async fn run(self, shutdown: Shutdown) {
        while !shutdown.is_triggered() {
            let wait = match self.tick(Utc::now()).await {
                Ok(next) => next.map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO)),
                Err(e) => {
                    tracing::error!(error = %e, "scheduled job failed; retrying in a minute");
                    Some(Duration::from_secs(60))
                }
            };
            let wait = wait
                .unwrap_or(MAX_SLEEP)
                .min(MAX_SLEEP)
                .max(Duration::from_millis(50));
            // A reload wakes it: the next tick reads the new config.
            tokio::select! {
                stop = shutdown.sleep(wait) => if stop { break },
                _ = self.pipeline.config_changed() => {}
            }
        }
        tracing::debug!("scheduler stopped");
    }

    /// Runs whatever is due at `now`; returns when something next is due.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, JobError> {
        let cfg = self.pipeline.config();
        let store = &self.pipeline.store;
        let mut next: Vec<DateTime<Utc>> = Vec::new();

        // The digest, on its schedule.
        let state = store.job_state(DIGEST_JOB)?;
        match schedule::due(&cfg.digest.schedule, state.last, now) {
            Due::Start => {
                store
                    .set_job_state(
                        DIGEST_JOB,
                        &JobState {
                            last: Some(now),
                            data: state.data,
                        },
                    )
                    .await?;
                next.extend(cfg.digest.schedule.next_after(now));
            }
            Due::Run(slot) => {
                let sent = self.queue_digests(now, false)?;
                tracing::info!(slot = %slot, managers = sent, "digest queued");
                let snapshot = serde_json::to_string(&self.snapshot()?).ok();
                store
                    .set_job_state(
                        DIGEST_JOB,
                        &JobState {
                            last: Some(slot),
                            data: snapshot,
                        },
                    )
                    .await?;
                next.extend(cfg.digest.schedule.next_after(now));
            }
            Due::Wait(t) => next.extend(t),
        }

        // One final digest when the window has closed.
        let closes = cfg.window.closes_at();
        if cfg.digest.final_digest {
            if now >= closes {
                if store.job_state(FINAL_DIGEST_JOB)?.last.is_none() {
                    let sent = self.queue_digests(now, true)?;
                    tracing::info!(
                        managers = sent,
                        "final digest queued: the collection window has closed"
                    );
                    store
                        .set_job_state(
                            FINAL_DIGEST_JOB,
                            &JobState {
                                last: Some(now),
                                data: None,
                            },
                        )
                        .await?;
                }
            } else {
                next.push(closes);
            }
        }

        // Reminders, once an hour while the window is open.
        if cfg.reminders.after_days > 0 && cfg.window.contains(now) {
            let state = store.job_state(REMINDER_JOB)?;
            let due_at = state.last.map(|l| l + REMINDER_EVERY).unwrap_or(now);
            if now >= due_at {
                let queued = self.queue_reminders(now)?;
                if queued > 0 {
                    tracing::info!(queued, "reminders queued");
                    self.pipeline.wake_outbox();
                }
                store
                    .set_job_state(
                        REMINDER_JOB,
                        &JobState {
                            last: Some(now),
                            data: None,
                        },
                    )
                    .await?;
                next.push(now + REMINDER_EVERY);
            } else {
                next.push(due_at);
            }
        }

        // Retention: invitees' addresses erased once, [retention] days after the window closed.
        let days = cfg.retention.erase_addresses_after_days;
        let erase_at = crate::retention::erase_at(&cfg.window, days);
        let done = store.job_state(RETENTION_JOB)?.last;
        if crate::retention::job_due(&cfg.window, days, now, done) {
            let r = store.purge_addresses(false)?;
            tracing::info!(
                erased = r.erased,
                dropped_invitations = r.dropped_invitations,
                dropped_reminders = r.dropped_reminders,
                after_days = days,
                "retention: invitees' addresses erased"
            );
            let data = serde_json::to_string(&r).ok();
            // Flushed with the job state: the erasure is durable before it is recorded.
            let state = JobState {
                last: Some(erase_at),
                data,
            };
            store.set_job_state(RETENTION_JOB, &state).await?;
        } else if now < erase_at {
            next.push(erase_at);
        }

        // A trust setting that refuses most consultants' mail: once a day in the log.
        if let Some(warning) = crate::control::current_status(&self.pipeline)?.trust_warning {
            let last = store.job_state(TRUST_WARNING_JOB)?.last;
            if last.is_none_or(|l| now - l >= chrono::Duration::days(1)) {
                tracing::warn!(setting = %crate::control::trust_setting(&cfg), "{warning}");
                let state = JobState {
                    last: Some(now),
                    data: None,
                };
                store.set_job_state(TRUST_WARNING_JOB, &state).await?;
            }
        }

        // The mailbox: canvass' sent copies and processed triggers, daily once
        // the retention is due, so that no folder keeps an address or a live link.
        if let crate::config::Inbound::Imap(imap) = &cfg.inbound {
            let last = store.job_state(MAILBOX_SWEEP_JOB)?.last;
            match crate::retention::mailbox_sweep_due(&cfg.window, days, now, last) {
                Err(when) => next.push(when),
                Ok(before) => {
                    let sweep = crate::retention::MailboxSweep::Retention { before };
                    let run = crate::ingest::imap::sweep_mailbox(imap, Some(store), &sweep, false);
                    match tokio::time::timeout(MAILBOX_SWEEP_LIMIT, run).await {
                        Ok(Ok(r)) => {
                            let deleted: u64 = r.folders.iter().map(|f| f.deleted).sum();
                            tracing::info!(
                                deleted,
                                notes = r.notes.len(),
                                "retention: mailbox swept"
                            );
                            for n in &r.notes {
                                tracing::warn!(note = %n, "retention: mailbox sweep");
                            }
                            let state = JobState {
                                last: Some(now),
                                data: serde_json::to_string(&r).ok(),
                            };
                            store.set_job_state(MAILBOX_SWEEP_JOB, &state).await?;
                            next.push(now + crate::retention::MAILBOX_SWEEP_EVERY);
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "retention: cannot sweep the mailbox; trying again in an hour");
                            next.push(now + MAILBOX_SWEEP_RETRY);
                        }
                        Err(_) => {
                            tracing::warn!("retention: the mailbox sweep did not finish within 5 minutes; trying again in an hour");
                            next.push(now + MAILBOX_SWEEP_RETRY);
                        }
                    }
                }
            }
        }
        Ok(next.into_iter().min())
    }

    fn snapshot(&self) -> Result<Snapshot, StoreError> {
        Ok(digest::snapshot(&crate::control::current_status(
            &self.pipeline,
        )?))
    }

    /// The digest for `regions` (all when empty), compared with the previous one.
    fn compute(
        &self,
        now: DateTime<Utc>,
        regions: &[String],
        is_final: bool,
    ) -> Result<digest::Digest, JobError> {
        let cfg = self.pipeline.config();
        let store = &self.pipeline.store;
        let status = crate::control::current_status(&self.pipeline)?;
        let previous: Option<Snapshot> = store
            .job_state(DIGEST_JOB)?
            .data
            .and_then(|d| serde_json::from_str(&d).ok());
        let today = now.with_timezone(&window::TZ).date_naive();
        Ok(digest::compute(
            &status,
            &store.counters()?,
            previous.as_ref(),
            &cfg.window,
            today,
            regions,
            is_final,
        ))
    }

    /// Renders the digest for every manager.
    pub fn render_digests(
        &self,
        now: DateTime<Utc>,
        is_final: bool,
    ) -> Result<Vec<RenderedDigest>, JobError> {
        let mut out = Vec::new();
        for (manager, regions) in self.pipeline.config().managers() {
            let d = self.compute(now, &regions, is_final)?;
            out.push(render_one(&self.pipeline.config(), manager, &d)?);
        }
        Ok(out)
    }

    /// The digest as it would be now, for `canvass digest --print`: all regions.
    pub fn preview(&self, now: DateTime<Utc>) -> Result<String, JobError> {
        let is_final = now >= self.pipeline.config().window.closes_at();
        let cfg = self.pipeline.config();
        let d = self.compute(now, &[], is_final)?;
        Ok(digest_bodies(&cfg, &d, None)?.0)
    }

    /// Queues the digest for every manager; returns how many.
    pub fn queue_digests(&self, now: DateTime<Utc>, is_final: bool) -> Result<usize, JobError> {
        let cfg = self.pipeline.config();
        let rendered = self.render_digests(now, is_final)?;
        let n = rendered.len();
        for r in rendered {
            let msg = crate::compose::digest(&cfg, &r.to, &r.subject, r.text, r.html, r.chart, now)
                .map_err(|e| JobError::Render(e.to_string()))?;
            self.pipeline.store.enqueue(Purpose::Digest, &msg)?;
        }
        if n == 0 {
            tracing::warn!("no managers configured: the digest goes to nobody ([[regions]] managers, [digest] managers)");
        }
        self.pipeline.wake_outbox();
        Ok(n)
    }

    /// Queues a reminder for every invitation due one.
    pub fn queue_reminders(&self, now: DateTime<Utc>) -> Result<usize, JobError> {
        let cfg = self.pipeline.config();
        // Decided as of `now`; sent from the real clock on (tests simulate `now`).
        let not_before =
            window::first_send_time(now.min(Utc::now()), 0, cfg.sending.hours.as_ref());
        let mut queued = 0;
        let mut due: Vec<Invitation> = self
            .pipeline
            .store
            .invitations()
            .filter_map(Result::ok)
            .filter(|i| reminder_due(i, now, cfg.reminders, &cfg.window))
            .collect();
        // The oldest first (the store's order is not the order of creation).
        due.sort_by_key(|i| (i.created_at, i.id));
        for inv in due {
            let (Some(addr), Some(nonce)) = (&inv.address, &inv.token_nonce) else {
                continue;
            };
            let token = Token::derive(&self.pipeline.key, nonce).for_invitation(inv.id);
            // Its Message-ID carries the invitation's id and its number.
            let message_id = crate::message_id::of_invitation(&inv.message_id, inv.id)
                .and_then(|own| crate::message_id::of_reminder(&own, inv.reminders + 1))
                .unwrap_or_else(|| crate::compose::new_message_id(&cfg));
            let msg = match crate::compose::reminder(&cfg, addr, &token, message_id, not_before) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(invitation = inv.id, error = %e, "cannot render a reminder");
                    continue;
                }
            };
            if self
                .pipeline
                .store
                .queue_reminder(inv.id, &msg, cfg.reminders.max, now)?
            {
                queued += 1;
            }
        }
        Ok(queued)
    }
}

/// The digest's subject (`digest_subject.txt`).
pub fn digest_subject(cfg: &crate::config::Config, d: &digest::Digest) -> Result<String, JobError> {
    cfg.texts
        .render(
            "digest_subject.txt",
            minijinja::context! {
                ..digest::subject_context(d),
                ..crate::compose::mail_context(cfg, false)
            },
        )
        .map(|s| crate::compose::one_line(&s))
        .map_err(|e| JobError::Render(e.to_string()))
}

/// The agency's opening of the digest (`digest_intro.txt`; built in: the subject).
pub fn digest_intro(cfg: &crate::config::Config, d: &digest::Digest) -> Result<String, JobError> {
    cfg.texts
        .render(
            "digest_intro.txt",
            minijinja::context! {
                subject => digest_subject(cfg, d)?,
                is_final => d.is_final,
                days_left => d.days_left,
                ..crate::compose::mail_context(cfg, false)
            },
        )
        .map_err(|e| JobError::Render(e.to_string()))
}

/// The digest's text and HTML bodies (`digest.txt`, `digest.html`, the
/// agency's if it has them); the HTML shows the chart by `cid:chart_cid`.
pub fn digest_bodies(
    cfg: &crate::config::Config,
    d: &digest::Digest,
    chart_cid: Option<&str>,
) -> Result<(String, String), JobError> {
    let subject = digest_subject(cfg, d)?;
    let intro = digest_intro(cfg, d)?;
    let body = |name: &str| {
        digest::render(
            &cfg.texts,
            name,
            minijinja::context! {
                ..digest::context(d, &subject, &intro, chart_cid),
                ..crate::compose::mail_context(cfg, false)
            },
        )
        .map_err(|e| JobError::Render(format!("{name}: {e}")))
    };
    Ok((body("digest.txt")?, body("digest.html")?))
}

fn render_one(
    cfg: &crate::config::Config,
    to: Address,
    d: &digest::Digest,
) -> Result<RenderedDigest, JobError> {
    let subject = digest_subject(cfg, d)?;
    let bars: Vec<(String, u64, u64)> = d
        .lines
        .iter()
        .map(|l| (l.region.clone(), l.answered, l.invited))
        .collect();
    let title = cfg
        .texts
        .render(
            "digest_chart_title.txt",
            crate::compose::mail_context(cfg, false),
        )
        .map_err(|e| JobError::Render(format!("digest_chart_title.txt: {e}")))?;
    let chart = match crate::analysis::chart::response_rates_png(title.trim(), &bars) {
        Ok(png) => Some(png),
        Err(e) => {
            tracing::warn!(error = %e, "digest without chart");
            None
        }
    };
    let (text, html) = digest_bodies(cfg, d, chart.as_ref().map(|_| crate::compose::CHART_CID))?;
    Ok(RenderedDigest {
        to,
        text,
        html,
        chart,
        subject,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::parse;
    use crate::token::{TokenHash, TokenNonce};
    use chrono::NaiveDate;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn inv() -> Invitation {
        Invitation {
            id: 1,
            address_key: crate::address::AddressKey([0; 32]),
            address: Some(parse("a@x.dk").unwrap()),
            region: "Sjælland".into(),
            consultant: parse("k@siri.dk").unwrap(),
            created_at: utc("2024-08-08T08:00:00Z"),
            token_hash: TokenHash([0; 32]),
            token_nonce: Some(TokenNonce([1; 16])),
            message_id: "m".into(),
            delivery: Delivery::Sent {
                at: utc("2024-08-08T08:00:00Z"),
            },
            answered: false,
            opted_out: false,
            bounced: false,
            reminders: 0,
            last_reminder_at: None,
        }
    }

    fn window() -> Window {
        Window::new(
            NaiveDate::from_ymd_opt(2024, 8, 7).unwrap(),
            NaiveDate::from_ymd_opt(2024, 9, 20).unwrap(),
        )
    }

    #[test]
    fn reminders_go_only_to_those_who_should_get_one() {
        let cfg = RemindersConfig {
            after_days: 7,
            max: 1,
        };
        let w = window();
        let now = utc("2024-08-15T08:00:00Z");
        assert!(reminder_due(&inv(), now, cfg, &w));
        assert!(
            !reminder_due(&inv(), utc("2024-08-15T07:59:00Z"), cfg, &w),
            "not before 7 days"
        );
        assert!(!reminder_due(
            &Invitation {
                answered: true,
                ..inv()
            },
            now,
            cfg,
            &w
        ));
        assert!(!reminder_due(
            &Invitation {
                opted_out: true,
                ..inv()
            },
            now,
            cfg,
            &w
        ));
        assert!(!reminder_due(
            &Invitation {
                bounced: true,
                ..inv()
            },
            now,
            cfg,
            &w
        ));
        assert!(
            !reminder_due(
                &Invitation {
                    reminders: 1,
                    ..inv()
                },
                now,
                cfg,
                &w
            ),
            "at most max"
        );
        assert!(!reminder_due(
            &Invitation {
                delivery: Delivery::Queued,
                ..inv()
            },
            now,
            cfg,
            &w
        ));
        assert!(
            !reminder_due(
                &Invitation {
                    address: None,
                    ..inv()
                },
                now,
                cfg,
                &w
            ),
            "purged"
        );
        assert!(
            !reminder_due(&inv(), utc("2024-09-21T08:00:00Z"), cfg, &w),
            "only inside the window"
        );
        assert!(
            !reminder_due(
                &inv(),
                now,
                RemindersConfig {
                    after_days: 0,
                    max: 1
                },
                &w
            ),
            "off"
        );
        // A second reminder counts from the first.
        let cfg2 = RemindersConfig {
            after_days: 7,
            max: 2,
        };
        let once = Invitation {
            reminders: 1,
            last_reminder_at: Some(utc("2024-08-15T08:00:00Z")),
            ..inv()
        };
        assert!(!reminder_due(&once, utc("2024-08-20T08:00:00Z"), cfg2, &w));
        assert!(reminder_due(&once, utc("2024-08-22T08:00:00Z"), cfg2, &w));
    }
}
