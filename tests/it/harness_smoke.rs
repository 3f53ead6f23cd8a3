//! Smoke tests of the mail-stack harness itself (real Dovecot + Postfix).
//! Run: `cargo test --test it harness_smoke::` (as root, after scripts/install-test-deps).

use crate::harness;

use std::time::{Duration, Instant};

use async_imap::extensions::idle::IdleResponse;
use async_imap::imap_proto::{MailboxDatum, Response};
use chrono::{DateTime, FixedOffset};
use futures::TryStreamExt;
use harness::MailStack;

const ANNE: &str = "anne@siri.test";
const BOB: &str = "bob@kommune.test";
const WAIT: Duration = Duration::from_secs(10);

fn message(from: &str, to: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\n\
         Message-ID: <{}@harness.test>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0100\r\n\r\n{body}\r\n",
        subject.replace(' ', ".")
    )
    .into_bytes()
}

fn text(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

fn subject_of(raw: &[u8]) -> String {
    text(raw)
        .lines()
        .find_map(|l| l.strip_prefix("Subject: ").map(str::to_string))
        .unwrap_or_default()
}

#[tokio::test]
async fn smtp_mail_is_readable_over_imap_and_imaps() {
    let t = Instant::now();
    let mail = MailStack::start();
    let startup = t.elapsed();
    assert!(startup < Duration::from_secs(5), "start took {startup:?}");
    mail.add_users(&[ANNE, BOB]);

    let body = "Hello Anne.\r\n.a line with a leading dot\r\nBye.";
    mail.send(BOB, &[ANNE], &message(BOB, ANNE, "smoke one", body));
    // Plus-addressing and case-insensitivity reach the same mailbox.
    mail.send(
        BOB,
        &["Anne+survey@Siri.test"],
        &message(BOB, ANNE, "smoke two", "x"),
    );

    let mut msgs = mail.wait_for_messages(ANNE, "INBOX", 2, WAIT).await;
    assert_eq!(msgs.len(), 2);
    // Two SMTP transactions are two LMTP deliveries: order is not guaranteed.
    msgs.sort_by_key(|m| subject_of(m));
    let first = text(&msgs[0]);
    assert!(first.contains("Subject: smoke one"), "{first}");
    assert!(
        first.contains(body),
        "dot-stuffing must round-trip: {first}"
    );
    assert!(
        first.starts_with("Return-Path: <bob@kommune.test>"),
        "{first}"
    );
    assert_eq!(subject_of(&msgs[1]), "smoke two");

    // Implicit TLS, certificate checked against the harness CA.
    let mut s = mail.imaps_login(ANNE).await;
    s.select("INBOX").await.expect("SELECT over TLS");
    let fetched: Vec<_> = s
        .fetch("1:*", "BODY.PEEK[]")
        .await
        .expect("FETCH over TLS")
        .try_collect()
        .await
        .expect("FETCH over TLS");
    assert!(fetched.iter().any(|f| f.body() == Some(msgs[0].as_slice())));
    s.logout().await.expect("LOGOUT");

    // fetch_all used BODY.PEEK: nothing became \Seen.
    let flags = mail.flags(ANNE, "INBOX").await;
    assert_eq!(flags.len(), 2);
    assert!(flags.iter().all(|(_, f)| f.is_empty()), "{flags:?}");
    assert!(mail.fetch_all(BOB, "INBOX").await.is_empty());
}

#[tokio::test]
async fn smtp_starttls_works_with_lettre_and_the_ca() {
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

    let mail = MailStack::start();
    mail.add_user(ANNE);
    assert!(
        mail.smtp_extensions()
            .expect("EHLO")
            .contains(&"STARTTLS".to_string()),
        "Postfix must offer STARTTLS"
    );
    let ca = Certificate::from_pem(&mail.ca_pem_bytes()).expect("CA PEM");
    let tls = TlsParameters::builder(harness::TLS_SERVER_NAME.to_string())
        .add_root_certificate(ca)
        .build_rustls()
        .expect("TLS parameters");
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(harness::HOST)
        .port(mail.smtp_port())
        .tls(Tls::Required(tls))
        .timeout(Some(Duration::from_secs(10)))
        .build();
    let envelope = lettre::address::Envelope::new(
        Some(BOB.parse().expect("address")),
        vec![ANNE.parse().expect("address")],
    )
    .expect("envelope");
    transport
        .send_raw(&envelope, &message(BOB, ANNE, "via starttls", "secure"))
        .await
        .unwrap_or_else(|e| panic!("lettre STARTTLS send: {e}\n{}", mail.log_tail()));
    let msgs = mail.wait_for_messages(ANNE, "INBOX", 1, WAIT).await;
    assert_eq!(subject_of(&msgs[0]), "via starttls");
    let received = text(&msgs[0]);
    assert!(
        received.contains("(using TLSv1."),
        "Received: header must show the STARTTLS session: {received}"
    );
}

#[tokio::test]
async fn idle_client_is_notified_of_a_delivery() {
    let mail = MailStack::start();
    mail.add_user(ANNE);
    let mut s = mail.imap_login(ANNE).await;
    let mb = s.select("INBOX").await.expect("SELECT");
    assert_eq!(mb.exists, 0);
    let mut idle = s.idle();
    idle.init().await.expect("IDLE");

    let sent = Instant::now();
    mail.send(BOB, &[ANNE], &message(BOB, ANNE, "idle ping", "ping"));
    let (wait, _stop) = idle.wait_with_timeout(Duration::from_secs(10));
    let response = wait.await.expect("IDLE wait");
    let latency = sent.elapsed();
    eprintln!("IDLE notification after {latency:?}");
    match response {
        IdleResponse::NewData(data) => match data.parsed() {
            Response::MailboxData(MailboxDatum::Exists(1)) => {}
            other => panic!("expected `* 1 EXISTS`, got {other:?}"),
        },
        other => panic!("no IDLE notification within 10 s: {other:?}"),
    }
    // Dovecot holds IDLE notifications back by ~0.5 s (compiled in).
    assert!(latency < Duration::from_secs(3), "took {latency:?}");
    let mut s = idle.done().await.expect("DONE");
    s.logout().await.expect("LOGOUT");
}

#[tokio::test]
async fn unknown_recipient_bounces_to_the_senders_inbox() {
    let mail = MailStack::start();
    mail.add_user(ANNE);

    // Accepted by Postfix (any address in a test domain), rejected by
    // Dovecot's LMTP, so Postfix must generate a DSN to the envelope sender.
    mail.try_send(
        ANNE,
        &["nobody@kommune.test"],
        &message(ANNE, "nobody@kommune.test", "to nobody", "hello?"),
    )
    .expect("unknown users in test domains are accepted at SMTP time");
    let msgs = mail.wait_for_messages(ANNE, "INBOX", 1, WAIT).await;
    let dsn = text(&msgs[0]);
    assert!(dsn.contains("multipart/report"), "{dsn}");
    assert!(dsn.contains("report-type=delivery-status"), "{dsn}");
    assert!(
        dsn.contains("Final-Recipient: rfc822; nobody@kommune.test"),
        "{dsn}"
    );
    assert!(dsn.contains("Status: 5.1.1"), "{dsn}");
    assert!(
        dsn.contains("Subject: to nobody"),
        "original headers: {dsn}"
    );

    // Outside the test domains nothing leaves the machine: Postfix refuses
    // the recipient right away.
    let err = mail
        .try_send(
            ANNE,
            &["someone@elsewhere.example"],
            &message(ANNE, "someone@elsewhere.example", "to the world", "hi"),
        )
        .expect_err("outside recipients are refused");
    assert!(
        err.contains("550") && err.contains("outbound mail is disabled"),
        "{err}"
    );
}

#[tokio::test]
async fn stop_smtp_refuses_connections_until_start_smtp() {
    let mail = MailStack::start();
    mail.add_user(ANNE);
    let port = mail.smtp_port();

    mail.stop_smtp();
    assert!(
        std::net::TcpStream::connect((harness::HOST, port)).is_err(),
        "port {port} must refuse connections while SMTP is stopped"
    );
    let err = mail
        .try_send(BOB, &[ANNE], &message(BOB, ANNE, "lost", "x"))
        .expect_err("sending must fail while SMTP is stopped");
    assert!(err.contains("refused"), "{err}");
    mail.stop_smtp(); // idempotent

    mail.start_smtp();
    assert_eq!(mail.smtp_port(), port);
    mail.send(BOB, &[ANNE], &message(BOB, ANNE, "after restart", "x"));
    let msgs = mail.wait_for_messages(ANNE, "INBOX", 1, WAIT).await;
    assert_eq!(subject_of(&msgs[0]), "after restart");
}

#[tokio::test]
async fn restart_imap_drops_sessions_and_keeps_mail() {
    let mail = MailStack::start();
    mail.add_user(ANNE);
    let (imap, imaps) = (mail.imap_port(), mail.imaps_port());

    let date: DateTime<FixedOffset> =
        DateTime::parse_from_rfc3339("2024-03-01T08:30:00+01:00").expect("date");
    mail.append_with_flags(
        ANNE,
        "Archive",
        &message(BOB, ANNE, "appended", "old mail"),
        &["\\Seen", "$Canvassed"],
        Some(date),
    )
    .await;
    assert!(mail
        .list_mailboxes(ANNE)
        .await
        .contains(&"Archive".to_string()));
    let flags = mail.flags(ANNE, "Archive").await;
    assert_eq!(
        flags,
        vec![(1, vec!["\\Seen".to_string(), "$Canvassed".to_string()])]
    );

    let mut old = mail.imap_login(ANNE).await;
    old.select("INBOX").await.expect("SELECT");

    mail.restart_imap();
    assert_eq!((mail.imap_port(), mail.imaps_port()), (imap, imaps));
    assert!(old.noop().await.is_err(), "old session must be cut off");

    // INTERNALDATE set by append survives, readable after the restart.
    let mut s = mail.imap_login(ANNE).await;
    s.examine("Archive").await.expect("EXAMINE");
    let fetched: Vec<_> = s
        .fetch("1", "INTERNALDATE")
        .await
        .expect("FETCH")
        .try_collect()
        .await
        .expect("FETCH");
    assert_eq!(fetched[0].internal_date(), Some(date));
    s.logout().await.expect("LOGOUT");

    // While Dovecot is down, Postfix queues; it retries within seconds.
    mail.stop_imap();
    mail.send(BOB, &[ANNE], &message(BOB, ANNE, "while down", "x"));
    std::thread::sleep(Duration::from_millis(200));
    mail.start_imap();
    let msgs = mail.wait_for_messages(ANNE, "INBOX", 1, WAIT).await;
    assert_eq!(subject_of(&msgs[0]), "while down");
}

#[tokio::test]
async fn two_stacks_run_in_parallel_and_are_isolated() {
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(MailStack::start);
        let b = scope.spawn(MailStack::start);
        (a.join().expect("stack a"), b.join().expect("stack b"))
    });
    let ports = [
        a.imap_port(),
        a.imaps_port(),
        a.smtp_port(),
        b.imap_port(),
        b.imaps_port(),
        b.smtp_port(),
    ];
    for (i, p) in ports.iter().enumerate() {
        assert!(
            !ports[i + 1..].contains(p),
            "port {p} used twice: {ports:?}"
        );
    }
    assert_ne!(a.root(), b.root());

    for (stack, name) in [(&a, "to a"), (&b, "to b")] {
        stack.add_user(ANNE);
        stack.send(BOB, &[ANNE], &message(BOB, ANNE, name, "x"));
    }
    let (ma, mb) = tokio::join!(
        a.wait_for_messages(ANNE, "INBOX", 1, WAIT),
        b.wait_for_messages(ANNE, "INBOX", 1, WAIT)
    );
    assert_eq!(ma.len(), 1);
    assert_eq!(mb.len(), 1);
    assert_eq!(subject_of(&ma[0]), "to a");
    assert_eq!(subject_of(&mb[0]), "to b");
}

#[test]
fn drop_kills_every_daemon_and_removes_the_directory() {
    let t = Instant::now();
    let mail = MailStack::start();
    eprintln!("MailStack::start took {:?}", t.elapsed());
    let root = mail.root().to_path_buf();
    let groups = mail.daemon_process_groups();
    assert_eq!(groups.len(), 2);
    for g in &groups {
        assert!(!harness::live_processes_in_group(*g).is_empty());
    }
    let ports = [mail.imap_port(), mail.imaps_port(), mail.smtp_port()];
    let t = Instant::now();
    drop(mail);
    eprintln!("drop took {:?}", t.elapsed());
    for g in &groups {
        assert_eq!(harness::live_processes_in_group(*g), Vec::<u32>::new());
    }
    assert!(!root.exists(), "{} must be removed", root.display());
    for p in ports {
        assert!(std::net::TcpStream::connect((harness::HOST, p)).is_err());
    }
}
