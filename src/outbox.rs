//! The one loop that drains the durable outbox (Delta Chat's SMTP loop): take
//! what is due, send it, and only then mark it sent. A transient failure
//! reschedules the message with exponential backoff (kept inside the sending
//! hours for invitations); a permanent one records the server's reply.
//!
//! Marks are made durable in groups: the messages accepted while the previous
//! flush ran are marked sent in one transaction and made durable by one flush
//! (fsync), while the next messages are already on the wire. At most
//! `pool_size` accepted messages wait for their flush; sending pauses when
//! that many do. A crash between "accepted by the server" and "mark flushed"
//! sends those messages again on restart, with the same Message-ID: at most
//! the messages in flight are sent twice (with `pool_size = 1`, the single
//! message in flight), none is lost. The "sent" log line and metric follow
//! the flush.
//!
//! Sending limits: the loop starts a message only when the
//! [`Pacer`](crate::pacing::Pacer) allows it (the provider preset's messages
//! a minute and a day, recipients a day, each overridable in `[sending]`);
//! what it holds back stays due in the store, untouched, and goes when the
//! window slides. A throttling reply (421, 432 4.3.2, 4.7.x rate limits)
//! pauses all sending, longer while it repeats, and the message is retried:
//! never failed, never a bounce. Messages not yet started when the pause
//! began are left due, not counted as attempts.
//!
//! Invitations are queued without their body (`compose::deferred_invitation`):
//! the loop renders each from its invitation (address, token nonce, the
//! Message-ID it was queued with) just before sending it.
//!
//! Reload: the retry backoff, the sending hours and the sending limits are
//! read from the config in force ([`Settings::in_force`]) on every round and
//! for every retry, so after `systemctl reload` new invitations and retries
//! alike follow the new `[sending]`. Only the concurrency is fixed at start:
//! it is the size of the transport's connection pool (`[outbound]` needs a
//! restart; `daemon::restart_only`).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;

use crate::backoff::Outage;
use crate::config::Config;
use crate::pacing::{Limits, Pacer};
use crate::pipeline::{Pipeline, Ready};
use crate::shutdown::Shutdown;
use crate::store::{OutboxItem, Purpose};
use crate::transport::{SendError, Transport};
use crate::window::{self, SendingHours};

/// How many messages are taken from the store at once.
const BATCH: usize = 256;
/// Accepted messages whose "sent" mark may wait for the next flush, per
/// pooled connection (see [`Outbox::work`]). One keeps the promise that a
/// crash re-sends at most the messages in flight; more would trade that for
/// throughput (see BENCHMARKS.md).
const UNFLUSHED_PER_CONNECTION: usize = 1;
/// The longest the loop sleeps without looking at the store.
const IDLE_RECHECK: Duration = Duration::from_secs(60);

/// Settings of the outbox loop, read from the config in force when they are
/// needed ([`Settings::in_force`]): a reload applies to the next round.
#[derive(Debug, Clone)]
pub struct Settings {
    pub min_retry_seconds: u32,
    pub max_retry_minutes: u32,
    pub hours: Option<SendingHours>,
    /// The provider's sending limits (`[sending]`, preset).
    pub limits: Limits,
}

impl Settings {
    /// `[sending]` as it stands in `cfg`.
    pub fn in_force(cfg: &Config) -> Settings {
        Settings {
            min_retry_seconds: cfg.sending.min_retry_seconds,
            max_retry_minutes: cfg.sending.max_retry_minutes,
            hours: cfg.sending.hours.clone(),
            limits: cfg.sending.limits,
        }
    }
}

/// How many messages go on the wire at once for `cfg`'s transport: the SMTP
/// pool's size (one for `.eml` files).
pub fn concurrency(cfg: &Config) -> usize {
    match &cfg.outbound {
        crate::config::Outbound::Smtp(s) => s.pool_size as usize,
        crate::config::Outbound::File(_) => 1,
    }
}

pub struct Outbox {
    /// The store, the metrics, the wake-up the ingest loop rings, and the
    /// current config (the `[sending]` settings, read each round) and key
    /// the invitations are rendered with.
    pub pipeline: Arc<Pipeline>,
    pub transport: Arc<dyn Transport>,
    /// Messages on the wire at once: the transport's pool, built at start.
    pub concurrency: usize,
}

impl Outbox {
    /// The loop for `transport`, built from the pipeline's config.
    pub fn new(pipeline: Arc<Pipeline>, transport: Arc<dyn Transport>) -> Outbox {
        let concurrency = concurrency(&pipeline.config());
        Outbox {
            pipeline,
            transport,
            concurrency,
        }
    }

    /// Runs until shutdown. The batch in hand is always finished.
    pub async fn run(self, shutdown: Shutdown) {
        let mut outage = Outage::new("smtp");
        let limits = Settings::in_force(&self.pipeline.config()).limits;
        let pacer = std::sync::Mutex::new(Pacer::new(limits));
        let wake = self.pipeline.outbox_wake();
        while !shutdown.is_triggered() {
            let next = match self.work(&mut outage, &pacer).await {
                Ok(next) => next,
                Err(e) => {
                    tracing::error!(error = %e, "outbox: cannot read the store; retrying");
                    Some(Duration::from_secs(5))
                }
            };
            match next {
                Some(d) if d.is_zero() => continue,
                next => {
                    let wait = next.unwrap_or(IDLE_RECHECK).min(IDLE_RECHECK);
                    tokio::select! {
                        _ = wake.notified() => {}
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.wait() => break,
                    }
                }
            }
        }
        tracing::debug!("outbox loop stopped");
    }

    /// Sends everything due now. Returns how long until something is due
    /// (zero: more is waiting right now).
    pub async fn work(
        &self,
        outage: &mut Outage,
        pacer: &std::sync::Mutex<Pacer>,
    ) -> Result<Option<Duration>, crate::store::StoreError> {
        let lock_pacer = || pacer.lock().unwrap_or_else(|p| p.into_inner());
        // The limits in force (a reload changes them; what was sent counts).
        lock_pacer().set_limits(Settings::in_force(&self.pipeline.config()).limits);
        let now = Utc::now();
        let (due, next) = self.pipeline.store.outbox_due(now, BATCH)?;
        self.pipeline
            .metrics
            .set_outbox_depth(self.pipeline.store.outbox_len() as u64);
        if due.is_empty() {
            return Ok(next.map(|t| (t - now).to_std().unwrap_or(Duration::ZERO)));
        }
        // A reminder whose invitee answered, opted out or bounced meanwhile is dropped.
        let mut sendable = Vec::with_capacity(due.len());
        let mut paced_until = None;
        for item in due {
            if let Purpose::Reminder { invitation_id } = item.purpose {
                let still_due = self
                    .pipeline
                    .store
                    .invitation(invitation_id)?
                    .map(|i| !(i.answered || i.opted_out || i.bounced))
                    .unwrap_or(false);
                if !still_due {
                    self.pipeline.store.drop_outbox_item(item.id)?;
                    tracing::info!(message_id = %item.message_id, "reminder dropped: no longer due");
                    continue;
                }
            }
            // The provider's limits: what may not start now stays due.
            let recipients = item.to.len().max(1) as u32;
            if let Err(until) = lock_pacer().check(Utc::now(), recipients) {
                paced_until = Some(until);
                break;
            }
            if let Some(item) = self.render_deferred(item, outage)? {
                lock_pacer().record(Utc::now(), recipients);
                sendable.push(item);
            }
        }
        if sendable.is_empty() {
            if let Some(until) = paced_until {
                tracing::debug!(until = %until, "outbox: holding mail back to keep to the sending limits");
                return Ok(Some(
                    (until - Utc::now()).to_std().unwrap_or(Duration::ZERO),
                ));
            }
        }
        // Only what is durable goes out: after a failed flush (disk full) a
        // queued invitation may exist in memory only, and be lost on restart.
        if !sendable.is_empty() {
            self.pipeline.store.flush().await?;
        }
        let transport = &self.transport;
        let concurrency = self.concurrency.max(1);
        let send = |item: OutboxItem| async move {
            // Paused by a throttling reply meanwhile: leave it due.
            if lock_pacer().paused(Utc::now()) {
                return (item, None);
            }
            let r = transport.send(&item.from, &item.to, &item.raw).await;
            (item, Some(r))
        };
        let mut waiting = sendable.into_iter();
        let mut in_flight = futures::stream::FuturesUnordered::new();
        // Group commit of the "sent" marks: the messages accepted while the
        // previous flush ran are marked in one transaction and made durable
        // by one flush, which runs while the next messages are on the wire.
        // A new message starts only while fewer than `window` accepted ones
        // wait for their flush, so a crash re-sends at most those and the
        // `concurrency` being sent: the messages in flight. Messages already
        // on the wire are never held up by a flush: their SMTP round trips
        // go on, and what they accept joins the next group.
        let window = concurrency * UNFLUSHED_PER_CONNECTION;
        let mut unflushed: Vec<Sent> = Vec::new();
        let mut flushing: Vec<Sent> = Vec::new();
        let mut flush: Option<FlushFuture> = None;
        let mut all_started = false;
        loop {
            if flush.is_none() && !unflushed.is_empty() {
                // One transaction marks the group, one flush makes it durable.
                let items: Vec<OutboxItem> =
                    unflushed.iter_mut().filter_map(|s| s.item.take()).collect();
                self.pipeline.store.mark_sent_all(&items, Utc::now())?;
                drop(items);
                let store = self.pipeline.store.clone();
                flush = Some(Box::pin(async move { store.flush().await }));
                flushing = std::mem::take(&mut unflushed);
            }
            while !all_started
                && in_flight.len() < concurrency
                && unflushed.len() + flushing.len() < window
            {
                match waiting.next() {
                    Some(item) => in_flight.push(send(item)),
                    None => all_started = true,
                }
            }
            // Nothing on the wire and no flush running: the loop above
            // started everything (the window is empty once a flush is done).
            if in_flight.is_empty() && flush.is_none() {
                break;
            }
            tokio::select! {
                Some((item, result)) = in_flight.next(), if !in_flight.is_empty() => {
                    let Some(result) = result else { continue };
                    match &result {
                        Ok(()) => lock_pacer().accepted(),
                        Err(e) if e.is_throttled() => {
                            let until = lock_pacer().throttled(Utc::now());
                            tracing::warn!(reply = %e.message, until = %until, "the SMTP server asks canvass to slow down; sending paused, the message will be retried");
                        }
                        Err(_) => {}
                    }
                    if let Some(sent) = self.record(item, result, outage)? {
                        unflushed.push(sent);
                    }
                },
                done = async { flush.as_mut().expect("enabled only while flushing").await }, if flush.is_some() => {
                    flush = None;
                    done?;
                    for s in flushing.drain(..) {
                        self.pipeline.metrics.sent(s.kind, "sent");
                        tracing::info!(message_id = %s.message_id, kind = s.kind, attempts = s.attempts, "sent");
                    }
                }
            }
        }
        // (The depth gauge is set when the loop looks again, at once: counting
        // the outbox reads all of it.)
        // Look again at once: what was deferred tells the store when it is due.
        Ok(Some(Duration::ZERO))
    }

    /// An invitation queued without its body gets it
    /// ([`Pipeline::ready_to_send`]). `None`: nothing to send (the item is
    /// finished: its address was erased meanwhile, or it cannot be rendered,
    /// recorded as failed).
    fn render_deferred(
        &self,
        item: OutboxItem,
        outage: &mut Outage,
    ) -> Result<Option<OutboxItem>, crate::store::StoreError> {
        match self.pipeline.ready_to_send(item)? {
            Ready::Send(item) => Ok(Some(item)),
            Ready::Gone(item) => {
                self.pipeline.store.drop_outbox_item(item.id)?;
                tracing::info!(message_id = %item.message_id, "invitation dropped unsent: its address was erased");
                Ok(None)
            }
            Ready::Unrenderable(item, e) => {
                let e = SendError::permanent(format!("cannot render the invitation: {e}"));
                self.record(item, Err(e), outage)?;
                Ok(None)
            }
        }
    }

    /// Records one send's outcome; an accepted message is returned, to be
    /// marked sent with its group before the group's flush.
    fn record(
        &self,
        item: OutboxItem,
        result: Result<(), SendError>,
        outage: &mut Outage,
    ) -> Result<Option<Sent>, crate::store::StoreError> {
        match result {
            Ok(()) => {
                outage.ok();
                Ok(Some(Sent {
                    kind: item.purpose.name(),
                    attempts: item.attempts + 1,
                    message_id: item.message_id.clone(),
                    item: Some(item),
                }))
            }
            Err(e) if e.is_permanent() => {
                self.pipeline
                    .store
                    .mark_failed(&item, Utc::now(), &e.message)?;
                self.pipeline.metrics.sent(item.purpose.name(), "failed");
                tracing::warn!(message_id = %item.message_id, kind = item.purpose.name(), reply = %e.message, "refused for good by the server");
                Ok(None)
            }
            Err(e) => {
                outage.failed(&e);
                self.reschedule(&item, &e)?;
                self.pipeline.metrics.sent(item.purpose.name(), "deferred");
                Ok(None)
            }
        }
    }

    /// The next attempt, under the `[sending]` in force now (a reload
    /// applies to the next retry, not only to new mail).
    fn reschedule(&self, item: &OutboxItem, e: &SendError) -> Result<(), crate::store::StoreError> {
        let settings = Settings::in_force(&self.pipeline.config());
        let delay = window::retry_delay(
            item.attempts + 1,
            settings.min_retry_seconds,
            settings.max_retry_minutes,
        );
        let mut next = Utc::now() + delay;
        if matches!(
            item.purpose,
            Purpose::Invitation { .. } | Purpose::Reminder { .. }
        ) {
            if let Some(h) = &settings.hours {
                next = h.next_open(next);
            }
        }
        tracing::debug!(message_id = %item.message_id, attempts = item.attempts + 1, error = %e.message, backoff_seconds = delay.num_seconds(), retry_at = %next, "deferred");
        self.pipeline.store.reschedule(item, next, &e.message)
    }
}

/// An accepted message waiting to be marked sent and flushed.
struct Sent {
    kind: &'static str,
    attempts: u32,
    message_id: String,
    /// Until marked (with the group, before its flush).
    item: Option<OutboxItem>,
}

type FlushFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(), crate::store::StoreError>> + Send>,
>;

#[cfg(test)]
mod tests;
