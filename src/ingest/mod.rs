//! Reading the survey mailbox. Sources sit behind [`MailSource`] (IMAP with
//! IDLE in production, a Maildir for the demo); [`run`] is the one loop over
//! any of them:
//!
//! ```text
//! connect ─► fetch a batch ─► classify → plan each ─► commit (one transaction per 25 messages)
//!         ─► flush the store ─► mark the batch processed on the server ─► wait for mail (IDLE)
//!                ╰─ a full batch: the next one is fetched meanwhile ─╯
//! ```
//!
//! A batch commits (on a blocking thread) and flushes while the next batch
//! is fetched on the same connection, so the mail server's round trips
//! overlap the store's work; marking the batch processed still waits for
//! its flush, and the next batch is committed only after the whole previous
//! one was: a message is never marked before it is durable, and the stored
//! mark never passes a message left uncommitted.
//!
//! Up to `COMMIT_CHUNK` (25) messages of a batch share one store transaction
//! (all or none, in order); should the store refuse one, the chunk is
//! committed message by message to stop at the first it cannot take.
//!
//! Shutdown is only looked at between batches; waiting is interrupted at once.
//! A lost connection is retried with backoff and logged once per outage.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::backoff::{Backoff, Outage};
use crate::pipeline::{Pipeline, ToProcess};
use crate::shutdown::Shutdown;
use crate::store::{IngestMark, Store};

pub mod imap;
pub mod maildir;

/// Messages fetched per round.
pub const BATCH: usize = 100;
/// Messages committed in one store transaction.
const COMMIT_CHUNK: usize = 25;

/// One message as read from a source.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// Source-specific identity (UID, file name), for marking it processed.
    pub id: String,
    pub raw: Vec<u8>,
    /// When the mailbox received it (INTERNALDATE, file time).
    pub received: DateTime<Utc>,
    /// The source mark to store with this message (IMAP: its UID).
    pub mark: Option<IngestMark>,
    /// Only the header was read (the message is over the size limit).
    pub headers_only: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot connect to {what}: {detail}")]
    Connect { what: String, detail: String },
    #[error(
        "{what} refused the login for {user}: {detail} (check the user name and the password file)"
    )]
    Auth {
        what: String,
        user: String,
        detail: String,
    },
    #[error("{what}: {detail}")]
    Protocol { what: String, detail: String },
    /// No OAuth 2.0 token, or the server refused it (never contains it).
    #[error("{what}: OAuth 2.0 login failed: {detail}")]
    Token { what: String, detail: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// A mailbox canvass reads.
pub trait MailSource: Send {
    /// A stable name, under which the store keeps this source's mark.
    fn name(&self) -> String;

    /// Connects, or reconnects after an error.
    fn connect(&mut self) -> impl Future<Output = Result<(), SourceError>> + Send;

    /// Unprocessed messages, oldest first, at most `limit`. `in_flight` are
    /// messages fetched before on this connection and still being committed
    /// (not yet marked processed, their mark not yet stored): the batch
    /// returned comes after them, never repeats them.
    fn fetch(
        &mut self,
        store: &Store,
        limit: usize,
        in_flight: &[Incoming],
    ) -> impl Future<Output = Result<Vec<Incoming>, SourceError>> + Send;

    /// Marks messages processed (IMAP: \Seen, and moved when configured;
    /// Maildir: moved to cur/ with the S flag). Never deletes.
    fn mark_processed(
        &mut self,
        done: &[Incoming],
    ) -> impl Future<Output = Result<(), SourceError>> + Send;

    /// Moves messages canvass cannot read to the quarantine (Maildir:
    /// `quarantine/` beside `new/` and `cur/`; IMAP: the folder
    /// `inbound.imap.quarantine`, created if missing). Never deletes.
    fn quarantine(
        &mut self,
        unreadable: &[Incoming],
    ) -> impl Future<Output = Result<(), SourceError>> + Send;

    /// Returns when new mail may have arrived, after a timeout, or at shutdown.
    fn wait_for_mail(
        &mut self,
        shutdown: &Shutdown,
    ) -> impl Future<Output = Result<(), SourceError>> + Send;
}

/// Runs the ingest loop over `source` until shutdown.
pub async fn run<S: MailSource>(
    mut source: S,
    pipeline: std::sync::Arc<Pipeline>,
    shutdown: Shutdown,
) {
    let name = source.name();
    let mut outage = Outage::new("mailbox");
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    let mut connected = false;
    let mut ever_connected = false;
    // A batch fetched on this connection while the previous one committed.
    let mut ahead: Option<Vec<Incoming>> = None;
    while !shutdown.is_triggered() {
        if !connected {
            ahead = None;
            match source.connect().await {
                Ok(()) => {
                    connected = true;
                    if ever_connected {
                        pipeline.metrics.imap_reconnected();
                    }
                    ever_connected = true;
                    outage.ok();
                    tracing::info!(source = %name, "mailbox connected");
                }
                Err(e) => {
                    outage.failed(&e);
                    if shutdown.sleep(backoff.next_delay()).await {
                        break;
                    }
                    continue;
                }
            }
        }
        let batch = match ahead.take() {
            Some(b) => b,
            None => match source.fetch(&pipeline.store, BATCH, &[]).await {
                Ok(b) => b,
                Err(e) => {
                    connected = false;
                    outage.failed(&e);
                    if shutdown.sleep(backoff.next_delay()).await {
                        break;
                    }
                    continue;
                }
            },
        };
        backoff.reset();
        let full = batch.len() >= BATCH;
        if !batch.is_empty() {
            let batch = std::sync::Arc::new(batch);
            // The batch commits and flushes while the next one is fetched
            // (a full batch says more is waiting): the mail server's round
            // trips overlap the store's work. Marking waits for both.
            let commit = commit_and_flush(pipeline.clone(), name.clone(), batch.clone());
            let (outcome, next) = if full {
                let (outcome, next) =
                    tokio::join!(commit, source.fetch(&pipeline.store, BATCH, &batch));
                (outcome, Some(next))
            } else {
                (commit.await, None)
            };
            let BatchOutcome {
                done,
                unreadable,
                complete,
            } = outcome;
            match next {
                // Only after a whole batch is durable may the next one be
                // committed: its marks would pass the messages left behind.
                Some(Ok(next)) if complete => ahead = Some(next),
                Some(Ok(_)) | None => {}
                Some(Err(e)) => {
                    connected = false;
                    outage.failed(&e);
                }
            }
            if !unreadable.is_empty() {
                // Each named by its file (Maildir) or UID (IMAP) and its
                // Message-ID. Not `message =`: that is the event's own text
                // to every subscriber (fmt prints it bare, journald as MESSAGE).
                let moved = source.quarantine(&unreadable).await;
                for m in &unreadable {
                    let message_id = crate::pipeline::header_message_id(&m.raw);
                    let message_id = message_id.as_deref().unwrap_or("-");
                    match &moved {
                        Ok(()) => tracing::warn!(
                            source = %name,
                            file_or_uid = %m.id,
                            message_id = %message_id,
                            "an unreadable message was moved to the quarantine; `canvass explain` it there"
                        ),
                        Err(e) => tracing::warn!(
                            source = %name,
                            file_or_uid = %m.id,
                            message_id = %message_id,
                            error = %e,
                            "cannot move an unreadable message to the quarantine; will retry"
                        ),
                    }
                }
                if moved.is_err() {
                    connected = false;
                    continue;
                }
            }
            if !done.is_empty() {
                if let Err(e) = source.mark_processed(&done).await {
                    // Committed already: marking again later is harmless.
                    tracing::warn!(source = %name, error = %e, "cannot mark processed mail; will retry");
                    connected = false;
                    continue;
                }
            }
            if !complete {
                // The store refused (disk full?): wait before trying again.
                if shutdown.sleep(backoff.next_delay()).await {
                    break;
                }
                continue;
            }
        }
        if full || !connected {
            continue;
        }
        if let Err(e) = source.wait_for_mail(&shutdown).await {
            connected = false;
            outage.failed(&e);
        }
    }
    tracing::debug!(source = %name, "ingest loop stopped");
}

/// What became of a batch: the messages committed and flushed (to be
/// marked processed), the unreadable ones (to be quarantined), and whether
/// that is the whole batch.
struct BatchOutcome {
    done: Vec<Incoming>,
    unreadable: Vec<Incoming>,
    complete: bool,
}

/// Commits `batch` on a blocking thread (sled's transactions are
/// synchronous work), then flushes the store. Nothing is reported done
/// unless it is durable.
async fn commit_and_flush(
    pipeline: std::sync::Arc<Pipeline>,
    source: String,
    batch: std::sync::Arc<Vec<Incoming>>,
) -> BatchOutcome {
    let p = pipeline.clone();
    let all = batch.len();
    let committed = tokio::task::spawn_blocking(move || process_batch(&p, &source, &batch)).await;
    let (done, unreadable) = match committed {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "committing a batch failed; it stays unprocessed and will be retried");
            (Vec::new(), Vec::new())
        }
    };
    if done.is_empty() && unreadable.is_empty() {
        return BatchOutcome {
            done,
            unreadable,
            complete: all == 0,
        };
    }
    if let Err(e) = pipeline.store.flush().await {
        tracing::error!(error = %e, "cannot flush the store; the batch stays unprocessed");
        return BatchOutcome {
            done: Vec::new(),
            unreadable: Vec::new(),
            complete: false,
        };
    }
    pipeline.wake_outbox();
    let complete = done.len() + unreadable.len() == all;
    BatchOutcome {
        done,
        unreadable,
        complete,
    }
}

/// Processes a batch in order; stops at the first message the store cannot
/// take. Returns the messages committed (not yet flushed): those to be
/// marked processed, and the unreadable ones, to be quarantined.
fn process_batch(
    pipeline: &Pipeline,
    source: &str,
    batch: &[Incoming],
) -> (Vec<Incoming>, Vec<Incoming>) {
    let mut done = Vec::with_capacity(batch.len());
    let mut unreadable = Vec::new();
    let mut sort = |msg: &Incoming, p: &crate::pipeline::Processed| {
        if matches!(
            p.decision,
            crate::classify::Decision::Ignore {
                reason: crate::classify::Ignored::Unparseable
            }
        ) {
            unreadable.push(msg.clone());
        } else {
            done.push(msg.clone());
        }
    };
    'chunks: for chunk in batch.chunks(COMMIT_CHUNK) {
        // One transaction for the chunk (a sled transaction costs two log
        // writes whatever its size); should the store refuse it, message by
        // message, to stop at the first one it cannot take.
        let all: Vec<ToProcess<'_>> = chunk
            .iter()
            .map(|msg| ToProcess {
                raw: &msg.raw,
                received: msg.received,
                mark: msg.mark.map(|m| (source.to_string(), m)),
                headers_only: msg.headers_only,
            })
            .collect();
        if let Ok(processed) = pipeline.process_all(&all) {
            for (msg, p) in chunk.iter().zip(&processed) {
                sort(msg, p);
            }
            continue;
        }
        for msg in chunk {
            let mark = msg.mark.map(|m| (source.to_string(), m));
            match pipeline.process(&msg.raw, msg.received, mark, msg.headers_only) {
                Ok(p) => sort(msg, &p),
                Err(e) => {
                    tracing::error!(source, error = %e, "cannot store the outcome of a message; it stays unprocessed and will be retried");
                    break 'chunks;
                }
            }
        }
    }
    (done, unreadable)
}

#[cfg(test)]
mod tests;
