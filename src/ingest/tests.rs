//! [`run`] over an in-memory [`MailSource`] that records what the loop asks
//! of it: the batches it fetches, and at each mark how much of the store was
//! not yet durable. The real sources are tested against real servers
//! (tests/it/imap_source.rs, tests/it/demo.rs).

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::*;
use crate::store::{IngestMark, Purpose};
use crate::test_support::{cc_trigger, demo_pipeline};

const SOURCE: &str = "memory";

#[derive(Debug, Clone, PartialEq)]
enum Event {
    /// `fetch(limit)` returned this many.
    Fetch {
        limit: usize,
        got: usize,
    },
    /// `mark_processed` of these ids; the store's bytes not yet durable then.
    Mark {
        ids: Vec<String>,
        unflushed: usize,
    },
    Quarantine {
        ids: Vec<String>,
    },
    /// The loop waits for new mail.
    Wait,
}

/// A mailbox in memory: `fetch` returns the unmarked messages, oldest first,
/// as IMAP does; every call is recorded and sent to the test.
struct MemSource {
    pending: Arc<Mutex<Vec<Incoming>>>,
    events: mpsc::UnboundedSender<Event>,
    store: Store,
}

impl MemSource {
    fn remove(&self, done: &[Incoming]) -> Vec<String> {
        let ids: Vec<String> = done.iter().map(|m| m.id.clone()).collect();
        self.pending
            .lock()
            .unwrap()
            .retain(|m| !ids.contains(&m.id));
        ids
    }
}

impl MailSource for MemSource {
    fn name(&self) -> String {
        SOURCE.into()
    }

    async fn connect(&mut self) -> Result<(), SourceError> {
        Ok(())
    }

    async fn fetch(
        &mut self,
        _: &Store,
        limit: usize,
        in_flight: &[Incoming],
    ) -> Result<Vec<Incoming>, SourceError> {
        let batch: Vec<Incoming> = self
            .pending
            .lock()
            .unwrap()
            .iter()
            .filter(|m| !in_flight.iter().any(|f| f.id == m.id))
            .take(limit)
            .cloned()
            .collect();
        let got = batch.len();
        let _ = self.events.send(Event::Fetch { limit, got });
        Ok(batch)
    }

    async fn mark_processed(&mut self, done: &[Incoming]) -> Result<(), SourceError> {
        let unflushed = self.store.unflushed_bytes();
        let ids = self.remove(done);
        let _ = self.events.send(Event::Mark { ids, unflushed });
        Ok(())
    }

    async fn quarantine(&mut self, unreadable: &[Incoming]) -> Result<(), SourceError> {
        let ids = self.remove(unreadable);
        let _ = self.events.send(Event::Quarantine { ids });
        Ok(())
    }

    async fn wait_for_mail(&mut self, shutdown: &Shutdown) -> Result<(), SourceError> {
        let _ = self.events.send(Event::Wait);
        shutdown.wait().await;
        Ok(())
    }
}

/// Message `uid` of the mailbox, with its IMAP-style mark.
fn incoming(uid: u32, raw: Vec<u8>) -> Incoming {
    Incoming {
        id: uid.to_string(),
        raw,
        received: Utc::now(),
        mark: Some(IngestMark {
            uid_validity: 1,
            last_uid: uid,
        }),
        headers_only: false,
    }
}

fn trigger(uid: u32) -> Incoming {
    incoming(
        uid,
        cc_trigger(
            &format!("cc-{uid}@siri.dk"),
            &format!("kontakt{uid}@firma.dk"),
        ),
    )
}

fn ids(uids: std::ops::RangeInclusive<u32>) -> Vec<String> {
    uids.map(|u| u.to_string()).collect()
}

/// The loop running over a [`MemSource`].
struct Running {
    /// The source's calls, as they come.
    events: mpsc::UnboundedReceiver<Event>,
    /// The messages not yet marked processed (or quarantined).
    pending: Arc<Mutex<Vec<Incoming>>>,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<()>,
}

/// Starts [`run`] over `messages`.
fn start(pipeline: &Arc<Pipeline>, messages: Vec<Incoming>) -> Running {
    let (tx, rx) = mpsc::unbounded_channel();
    let pending = Arc::new(Mutex::new(messages));
    let source = MemSource {
        pending: pending.clone(),
        events: tx,
        store: pipeline.store.clone(),
    };
    let shutdown = Shutdown::new();
    let task = tokio::spawn(run(source, pipeline.clone(), shutdown.clone()));
    Running {
        events: rx,
        pending,
        shutdown,
        task,
    }
}

/// Events until (and with) the first for which `last` holds.
async fn events_until(
    rx: &mut mpsc::UnboundedReceiver<Event>,
    mut last: impl FnMut(&Event) -> bool,
) -> Vec<Event> {
    let mut seen = Vec::new();
    loop {
        let e = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("the loop went quiet; so far: {seen:?}"))
            .expect("the loop ended");
        let done = last(&e);
        seen.push(e);
        if done {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_fetched_ahead_in_batches_each_marked_only_after_the_store_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Arc::new(demo_pipeline(dir.path(), ""));
    // The probe sees what is not yet durable (else the marks below prove
    // nothing). sled also flushes by itself every 500 ms, which may land
    // between a commit and the probe: a few tries, each a fresh commit.
    let seen = (0..5).any(|i| {
        pipeline
            .process(&trigger(1000 + i).raw, Utc::now(), None, false)
            .unwrap();
        pipeline.store.unflushed_bytes() > 0
    });
    assert!(seen, "a commit is not durable by itself");
    assert_eq!(pipeline.store.unflushed_bytes(), 0);

    let backlog = 2 * BATCH as u32 + 30;
    let mut r = start(&pipeline, (1..=backlog).map(trigger).collect());
    let events = events_until(&mut r.events, |e| *e == Event::Wait).await;
    r.shutdown.trigger();
    r.task.await.unwrap();

    let b = BATCH as u32;
    assert_eq!(
        events,
        [
            Event::Fetch {
                limit: BATCH,
                got: BATCH
            },
            // A full batch: the next is fetched while the first commits.
            Event::Fetch {
                limit: BATCH,
                got: BATCH
            },
            Event::Mark {
                ids: ids(1..=b),
                unflushed: 0
            },
            Event::Fetch {
                limit: BATCH,
                got: 30
            },
            Event::Mark {
                ids: ids(b + 1..=2 * b),
                unflushed: 0
            },
            // Not a full batch: the mailbox is read; wait for more.
            Event::Mark {
                ids: ids(2 * b + 1..=backlog),
                unflushed: 0
            },
            Event::Wait,
        ]
    );
    assert!(r.pending.lock().unwrap().is_empty());
    assert_eq!(
        pipeline.store.ingest_mark(SOURCE).unwrap(),
        Some(IngestMark {
            uid_validity: 1,
            last_uid: backlog
        })
    );
}

/// Triggers 1..=`total`, but message `refused` is a bounce the store cannot
/// take: it names an invitation whose record is corrupt, so every
/// transaction that holds it fails.
fn triggers_with_an_unstorable_bounce(
    pipeline: &Pipeline,
    total: u32,
    refused: u32,
) -> Vec<Incoming> {
    pipeline
        .process(&trigger(0).raw, Utc::now(), None, false)
        .unwrap();
    let (queued, _) = pipeline.store.outbox_due(Utc::now(), 10).unwrap();
    let invitation = queued
        .iter()
        .find(|i| matches!(i.purpose, Purpose::Invitation { .. }))
        .expect("the invitation is queued");
    let Purpose::Invitation { invitation_id } = invitation.purpose else {
        unreachable!()
    };
    pipeline.store.corrupt_invitation(invitation_id).unwrap();
    let bounce = format!(
        "Return-Path: <>\r\nFrom: MAILER-DAEMON <>\r\nTo: undersoegelse@siri.dk\r\nSubject: Kunne ikke leveres\r\nMessage-ID: <ndr-1@firma.dk>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nDin besked kunne ikke leveres til modtageren.\r\n\r\n----- Oprindelig meddelelse -----\r\nMessage-ID: <{}>\r\nSubject: Hvad synes du?\r\n",
        invitation.message_id
    );
    (1..=total)
        .map(|uid| {
            if uid == refused {
                incoming(uid, bounce.clone().into_bytes())
            } else {
                trigger(uid)
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_chunk_cannot_be_committed_every_message_before_the_refused_one_is_and_no_later_one()
{
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Arc::new(demo_pipeline(dir.path(), ""));

    // The bounce is the 30th message: the first chunk (1-25) commits as one
    // transaction; the second one fails and is retried message by message,
    // committing 26-29 and stopping at the bounce.
    let refused = COMMIT_CHUNK as u32 + 5;
    let messages = triggers_with_an_unstorable_bounce(&pipeline, 40, refused);
    let mut r = start(&pipeline, messages);
    let events = events_until(&mut r.events, |e| matches!(e, Event::Mark { .. })).await;
    r.shutdown.trigger();
    r.task.await.unwrap();

    assert_eq!(
        events,
        [
            Event::Fetch {
                limit: BATCH,
                got: 40
            },
            Event::Mark {
                ids: ids(1..=refused - 1),
                unflushed: 0
            },
        ]
    );
    // The refused message and every later one stay in the mailbox, not
    // committed: the stored mark is the last committed message's.
    let left: Vec<String> = r
        .pending
        .lock()
        .unwrap()
        .iter()
        .map(|m| m.id.clone())
        .collect();
    assert_eq!(left, ids(refused..=40));
    assert_eq!(
        pipeline.store.ingest_mark(SOURCE).unwrap(),
        Some(IngestMark {
            uid_validity: 1,
            last_uid: refused - 1
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_fetched_ahead_is_not_committed_when_the_one_before_stopped_short() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Arc::new(demo_pipeline(dir.path(), ""));

    // A full first batch, refused at its 30th message, and 50 more that are
    // fetched while it commits.
    let refused = 30;
    let total = BATCH as u32 + 50;
    let messages = triggers_with_an_unstorable_bounce(&pipeline, total, refused);
    let mut r = start(&pipeline, messages);
    let mut marks = 0;
    let events = events_until(&mut r.events, |e| {
        marks += usize::from(matches!(e, Event::Mark { .. }));
        marks == 1 && matches!(e, Event::Fetch { .. })
    })
    .await;
    r.shutdown.trigger();
    r.task.await.unwrap();

    assert_eq!(
        events,
        [
            Event::Fetch {
                limit: BATCH,
                got: BATCH
            },
            Event::Fetch {
                limit: BATCH,
                got: 50
            },
            Event::Mark {
                ids: ids(1..=refused - 1),
                unflushed: 0
            },
            // The look-ahead was dropped: the loop reads again from the
            // refused message, after its backoff.
            Event::Fetch {
                limit: BATCH,
                got: BATCH
            },
        ]
    );
    assert_eq!(
        pipeline.store.ingest_mark(SOURCE).unwrap(),
        Some(IngestMark {
            uid_validity: 1,
            last_uid: refused - 1
        }),
        "nothing after the refused message was committed"
    );
}
