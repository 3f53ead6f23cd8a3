//! [`Outbox::work`] over an in-memory [`Transport`] that records, at each
//! send, what the store held and how much of it was not yet durable. SMTP
//! itself is tested against a real Postfix (tests/it/pipeline.rs,
//! tests/it/oauth.rs).

use std::collections::HashMap;
use std::sync::Mutex;

use super::*;
use crate::store::{Outgoing, Store};
use crate::test_support::demo_pipeline;
use crate::transport::SendFuture;

/// The retry settings of these tests, in the config the outbox reads them
/// from each round ([`Settings::in_force`]).
const SENDING: &str = "min_retry_seconds = 60\nmax_retry_minutes = 60";

/// One `send` as the transport saw it.
#[derive(Debug, Clone, PartialEq)]
struct Send {
    message_id: String,
    /// The store's bytes not yet durable when the send started.
    unflushed: usize,
    /// Items in the outbox when the send started.
    queued: usize,
}

/// Accepts every message but those given a reply in `replies`.
struct MemTransport {
    store: Store,
    sends: Mutex<Vec<Send>>,
    replies: HashMap<String, SendError>,
}

impl MemTransport {
    fn new(store: &Store) -> MemTransport {
        MemTransport {
            store: store.clone(),
            sends: Mutex::default(),
            replies: HashMap::new(),
        }
    }

    fn sends(&self) -> Vec<Send> {
        self.sends.lock().unwrap().clone()
    }
}

impl Transport for MemTransport {
    fn send<'a>(&'a self, _from: &'a str, _to: &'a [String], raw: &'a [u8]) -> SendFuture<'a> {
        Box::pin(async move {
            let message_id = crate::pipeline::header_message_id(raw).expect("a Message-ID");
            self.sends.lock().unwrap().push(Send {
                message_id: message_id.clone(),
                unflushed: self.store.unflushed_bytes(),
                queued: self.store.outbox_len(),
            });
            // Give the other sends and the group's flush a turn.
            tokio::task::yield_now().await;
            match self.replies.get(&message_id) {
                Some(e) => Err(e.clone()),
                None => Ok(()),
            }
        })
    }

    fn check(&self) -> SendFuture<'_> {
        Box::pin(async { Ok(()) })
    }

    fn describe(&self) -> String {
        "memory".into()
    }
}

/// Queues `n` digests, due now, with Message-IDs `m0@siri.dk`…
fn queue(store: &Store, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let message_id = format!("m{i}@siri.dk");
            let raw = format!(
                "Message-ID: <{message_id}>\r\nFrom: undersoegelse@siri.dk\r\nTo: leder@siri.dk\r\nSubject: Status\r\n\r\nStatus.\r\n"
            );
            store
                .enqueue(
                    Purpose::Digest,
                    &Outgoing {
                        from: "undersoegelse@siri.dk".into(),
                        to: vec!["leder@siri.dk".into()],
                        message_id: message_id.clone(),
                        raw: raw.into_bytes(),
                        not_before: Utc::now() - chrono::Duration::minutes(1),
                    },
                )
                .unwrap();
            message_id
        })
        .collect()
}

fn outbox(pipeline: Arc<Pipeline>, transport: Arc<MemTransport>, concurrency: usize) -> Outbox {
    Outbox {
        pipeline,
        transport,
        concurrency,
    }
}

async fn work(outbox: &Outbox) -> Option<Duration> {
    let limits = Settings::in_force(&outbox.pipeline.config()).limits;
    let pacer = std::sync::Mutex::new(Pacer::new(limits));
    outbox
        .work(&mut Outage::new("smtp"), &pacer)
        .await
        .expect("the store reads")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_connection_each_message_is_marked_and_flushed_before_the_next_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Arc::new(demo_pipeline(dir.path(), SENDING));
    let ids = queue(&pipeline.store, 5);
    let transport = Arc::new(MemTransport::new(&pipeline.store));
    let outbox = outbox(pipeline.clone(), transport.clone(), 1);

    assert_eq!(work(&outbox).await, Some(Duration::ZERO));

    // The queue was flushed before the first send, and each accepted message
    // was marked sent (out of the outbox) and flushed before the next went:
    // a crash re-sends at most the one message in flight.
    let expected: Vec<Send> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| Send {
            message_id: id.clone(),
            unflushed: 0,
            queued: ids.len() - i,
        })
        .collect();
    assert_eq!(transport.sends(), expected);
    assert_eq!(pipeline.store.outbox_len(), 0);
    assert_eq!(
        pipeline.store.unflushed_bytes(),
        0,
        "the last mark is durable"
    );
    // Nothing is left: the next round finds nothing due.
    assert_eq!(work(&outbox).await, None);
    assert_eq!(transport.sends().len(), ids.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_three_connections_marks_go_in_groups_and_each_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Arc::new(demo_pipeline(dir.path(), SENDING));
    let ids = queue(&pipeline.store, 20);
    let transport = Arc::new(MemTransport::new(&pipeline.store));
    let outbox = outbox(pipeline.clone(), transport.clone(), 3);

    assert_eq!(work(&outbox).await, Some(Duration::ZERO));

    let sends = transport.sends();
    let mut sent: Vec<String> = sends.iter().map(|s| s.message_id.clone()).collect();
    sent.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(sent, want, "every message once");
    // When a send starts, the messages accepted before it that are not yet
    // marked sent are at most the group window (pool_size × 1).
    for (k, s) in sends.iter().enumerate() {
        let marked = ids.len() - s.queued;
        assert!(
            k - marked <= 3 + 3,
            "send {k}: {marked} marked; more than the window and the connections in flight: {sends:?}"
        );
    }
    assert_eq!(pipeline.store.outbox_len(), 0);
    assert_eq!(
        pipeline.store.unflushed_bytes(),
        0,
        "the last group is durable"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_refusal_is_retried_later_and_a_permanent_one_is_failed() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Arc::new(demo_pipeline(dir.path(), SENDING));
    let ids = queue(&pipeline.store, 3);
    let mut transport = MemTransport::new(&pipeline.store);
    transport
        .replies
        .insert(ids[1].clone(), SendError::transient("451 4.3.0 try again"));
    transport.replies.insert(
        ids[2].clone(),
        SendError::permanent("550 5.1.1 no such user"),
    );
    let transport = Arc::new(transport);
    let outbox = outbox(pipeline.clone(), transport.clone(), 1);

    assert_eq!(work(&outbox).await, Some(Duration::ZERO));
    assert_eq!(transport.sends().len(), 3);

    // Only the deferred one stays queued, due after the retry delay.
    let next = work(&outbox).await.expect("something is due later");
    assert!(next > Duration::from_secs(30), "{next:?}");
    assert_eq!(
        transport.sends().len(),
        3,
        "not sent again before it is due"
    );
    let (later, _) = pipeline
        .store
        .outbox_due(Utc::now() + chrono::Duration::hours(2), 10)
        .unwrap();
    let later: Vec<(&str, u32)> = later
        .iter()
        .map(|i| (i.message_id.as_str(), i.attempts))
        .collect();
    assert_eq!(later, [(ids[1].as_str(), 1)]);
}

/// The provider's limits: with 2 messages a minute, two go and the third
/// stays due, untouched (no attempt counted, not failed), until the minute
/// has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_keeps_to_the_messages_per_minute_limit() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Arc::new(demo_pipeline(
        dir.path(),
        &format!("{SENDING}\nmessages_per_minute = 2"),
    ));
    let ids = queue(&pipeline.store, 3);
    let transport = Arc::new(MemTransport::new(&pipeline.store));
    let outbox = outbox(pipeline.clone(), transport.clone(), 1);
    let limits = Settings::in_force(&pipeline.config()).limits;
    assert_eq!(limits.messages_per_minute, Some(2));
    let pacer = std::sync::Mutex::new(Pacer::new(limits));
    let mut outage = Outage::new("smtp");
    outbox.work(&mut outage, &pacer).await.unwrap();
    assert_eq!(transport.sends().len(), 2);
    // The third waits for the window to slide: about a minute.
    let next = outbox
        .work(&mut outage, &pacer)
        .await
        .unwrap()
        .expect("something is due later");
    assert!(
        next > Duration::from_secs(50) && next <= Duration::from_secs(60),
        "{next:?}"
    );
    assert_eq!(transport.sends().len(), 2, "held back, not sent");
    let (due, _) = pipeline.store.outbox_due(Utc::now(), 10).unwrap();
    let due: Vec<(&str, u32)> = due
        .iter()
        .map(|i| (i.message_id.as_str(), i.attempts))
        .collect();
    assert_eq!(due, [(ids[2].as_str(), 0)], "still due, no attempt counted");
}

/// A throttling reply is neither a failure nor a bounce: the message is
/// deferred, sending pauses (the rest stay due, unsent), nothing is failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttling_reply_pauses_sending_and_fails_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Arc::new(demo_pipeline(dir.path(), SENDING));
    let ids = queue(&pipeline.store, 3);
    let mut transport = MemTransport::new(&pipeline.store);
    let reply = "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded";
    assert!(crate::pacing::is_throttling(reply));
    transport
        .replies
        .insert(ids[0].clone(), SendError::throttled(reply));
    let transport = Arc::new(transport);
    let outbox = outbox(pipeline.clone(), transport.clone(), 1);
    let limits = Settings::in_force(&pipeline.config()).limits;
    let pacer = std::sync::Mutex::new(Pacer::new(limits));
    let mut outage = Outage::new("smtp");
    outbox.work(&mut outage, &pacer).await.unwrap();
    assert_eq!(
        transport.sends().len(),
        1,
        "paused after the throttling reply"
    );
    assert!(pacer.lock().unwrap().paused(Utc::now()));
    // Everything is still queued: the throttled one deferred, the others due.
    let (later, _) = pipeline
        .store
        .outbox_due(Utc::now() + chrono::Duration::hours(2), 10)
        .unwrap();
    let mut later: Vec<(&str, u32)> = later
        .iter()
        .map(|i| (i.message_id.as_str(), i.attempts))
        .collect();
    later.sort();
    assert_eq!(
        later,
        [
            (ids[0].as_str(), 1),
            (ids[1].as_str(), 0),
            (ids[2].as_str(), 0)
        ]
    );
    // While paused, nothing is sent.
    outbox.work(&mut outage, &pacer).await.unwrap();
    assert_eq!(transport.sends().len(), 1);
}

/// Issue 13, point 4 and 3: a spam complaint (ARF) and a final delivery
/// failure ("expired": `Action: failed`, 4.4.7) that arrive after a
/// reminder was queued drop that reminder when it falls due; the invitee
/// who neither complained nor bounced gets theirs. Through the whole path:
/// classify, plan, the ingest transaction, the outbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complaint_or_an_expiry_drops_the_reminder_already_queued() {
    use crate::classify::Decision;
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Arc::new(demo_pipeline(dir.path(), SENDING));
    let mut cfg = (*pipeline.config()).clone();
    cfg.reminders.after_days = 7;
    cfg.reminders.max = 1;
    pipeline.set_config(Arc::new(cfg));
    let (klager, udloebet, ok) = ("klager@kommune.dk", "udloebet@kommune.dk", "ok@kommune.dk");
    for (n, contact) in [klager, udloebet, ok].into_iter().enumerate() {
        let raw = crate::test_support::cc_trigger(&format!("t{n}@siri.dk"), contact);
        let p = pipeline.process(&raw, Utc::now(), None, false).unwrap();
        assert_eq!(p.decision.label(), "trigger_cc");
    }
    let transport = Arc::new(MemTransport::new(&pipeline.store));
    let outbox = outbox(pipeline.clone(), transport.clone(), 1);
    work(&outbox).await;
    assert_eq!(transport.sends().len(), 3, "the three invitations");
    let message_id = |a: &str| -> String {
        pipeline
            .store
            .invitations()
            .map(|i| i.unwrap())
            .find(|i| i.address.as_ref().is_some_and(|x| x.as_str() == a))
            .map(|i| i.message_id)
            .expect("invited")
    };

    // A week later every invitee is due a reminder: queued (in the evening,
    // say, to go out in the morning).
    let sched = crate::scheduler::Scheduler {
        pipeline: pipeline.clone(),
    };
    assert_eq!(
        sched
            .queue_reminders(Utc::now() + chrono::Duration::days(8))
            .unwrap(),
        3
    );
    let (due, _) = pipeline
        .store
        .outbox_due(Utc::now() + chrono::Duration::minutes(1), 100)
        .unwrap();
    let reminder_to = |a: &str| -> String {
        due.iter()
            .find(|i| matches!(i.purpose, Purpose::Reminder { .. }) && i.to == [a])
            .map(|i| i.message_id.clone())
            .expect("a queued reminder")
    };
    let ok_reminder = reminder_to(ok);

    // Meanwhile: an ARF complaint returning klager's invitation, and a DSN
    // saying the server gave up on udloebet's.
    let arf = format!(
        "From: feedback@fbl.kommune.dk\r\nTo: undersoegelse@siri.dk\r\nSubject: Abuse report\r\nMessage-ID: <arf-1@fbl.kommune.dk>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=\"F\"\r\n\r\n--F\r\nContent-Type: text/plain\r\n\r\nA user marked this as spam.\r\n\r\n--F\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nVersion: 1\r\n\r\n--F\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <{}>\r\nTo: {klager}\r\n\r\n--F--\r\n",
        message_id(klager)
    );
    let dsn = format!(
        "From: MAILER-DAEMON@mx.kommune.dk (Mail Delivery System)\r\nTo: undersoegelse@siri.dk\r\nSubject: Undelivered Mail Returned to Sender\r\nMessage-ID: <expired-1@mx.kommune.dk>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nThe message expired: giving up.\r\n\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.kommune.dk\r\n\r\nFinal-Recipient: rfc822; {udloebet}\r\nAction: failed\r\nStatus: 4.4.7\r\nDiagnostic-Code: X-Postfix; message expired\r\n\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <{}>\r\nTo: {udloebet}\r\n\r\n--B--\r\n",
        message_id(udloebet)
    );
    let p = pipeline
        .process(arf.as_bytes(), Utc::now(), None, false)
        .unwrap();
    assert!(
        matches!(p.decision, Decision::Complaint(_)),
        "{:?}",
        p.decision
    );
    let p = pipeline
        .process(dsn.as_bytes(), Utc::now(), None, false)
        .unwrap();
    assert!(
        matches!(&p.decision, Decision::Bounce(b) if b.recipients.iter().all(|r| r.expired && !r.permanent)),
        "{:?}",
        p.decision
    );

    // The reminders fall due: only ok's goes out; the other two are dropped.
    let before = transport.sends().len();
    work(&outbox).await;
    let sent: Vec<String> = transport.sends()[before..]
        .iter()
        .map(|s| s.message_id.clone())
        .collect();
    assert_eq!(sent, [ok_reminder]);
    assert_eq!(
        pipeline.store.outbox_len(),
        0,
        "nothing left queued to them"
    );
    let st = crate::control::current_status(&pipeline).unwrap();
    assert_eq!(
        (
            st.returns.complained,
            st.returns.expired,
            st.returns.bounced
        ),
        (1, 1, 0)
    );
}
