//! `ImapSource` against a real Dovecot (tests/it/harness): TLS modes, fetching
//! with INTERNALDATE, \Seen and MOVE, the stored mark, UIDVALIDITY, IDLE,
//! shutdown, a refused login and a server restart.

use crate::harness;

use std::time::{Duration, Instant};

use canvass::config::{ImapConfig, TlsMode};
use canvass::ingest::imap::ImapSource;
use canvass::ingest::{Incoming, MailSource, SourceError};
use canvass::shutdown::Shutdown;
use canvass::store::{IngestMark, Store};
use chrono::{DateTime, FixedOffset, Utc};
use harness::{MailStack, PASSWORD};

const USER: &str = "survey@siri.test";
/// Upper bound for anything that should be quick; never a sleep.
const LONG: Duration = Duration::from_secs(30);

struct Setup {
    stack: MailStack,
    dir: tempfile::TempDir,
    store: Store,
}

fn setup() -> Setup {
    let stack = MailStack::start();
    stack.add_user(USER);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("store")).expect("open store");
    Setup { stack, dir, store }
}

fn config(s: &Setup, tls: TlsMode) -> ImapConfig {
    config_with_password(s, tls, PASSWORD)
}

fn config_with_password(s: &Setup, tls: TlsMode, password: &str) -> ImapConfig {
    let password_file = s
        .dir
        .path()
        .join(format!("imap-password-{}", password.len()));
    std::fs::write(&password_file, format!("{password}\n")).expect("write password file");
    let (host, port) = match tls {
        TlsMode::None => ("127.0.0.1", s.stack.imap_port()),
        TlsMode::Starttls => ("localhost", s.stack.imap_port()),
        TlsMode::Implicit => ("localhost", s.stack.imaps_port()),
    };
    ImapConfig {
        host: host.into(),
        port,
        tls,
        username: USER.into(),
        password_file,
        oauth: None,
        mailbox: "INBOX".into(),
        move_to: None,
        sent_folder: None,
        ca_file: (tls != TlsMode::None).then(|| s.stack.ca_pem().to_path_buf()),
        max_message_bytes: 1024 * 1024,
        quarantine: "Quarantine".into(),
    }
}

fn message(n: u32) -> Vec<u8> {
    format!(
        "From: Mette Larsen <mette.larsen@siri.test>\r\n\
         To: survey@siri.test\r\n\
         Subject: test {n}\r\n\
         Message-ID: <test-{n}@siri.test>\r\n\
         \r\n\
         Body of message {n}.\r\n"
    )
    .into_bytes()
}

fn date(s: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(s).expect("date")
}

async fn connected(cfg: &ImapConfig) -> ImapSource {
    let mut src = ImapSource::new(cfg);
    tokio::time::timeout(LONG, src.connect())
        .await
        .expect("connect in time")
        .expect("connect");
    src
}

async fn fetch(src: &mut ImapSource, store: &Store, limit: usize) -> Vec<Incoming> {
    tokio::time::timeout(LONG, src.fetch(store, limit, &[]))
        .await
        .expect("fetch in time")
        .expect("fetch")
}

/// What the pipeline does per committed message: advance the mark.
fn commit(store: &Store, src: &ImapSource, batch: &[Incoming]) {
    for m in batch {
        store
            .set_ingest_mark(&src.name(), m.mark.expect("IMAP messages carry a mark"))
            .expect("set mark");
    }
}

fn subject_numbers(batch: &[Incoming]) -> Vec<String> {
    batch
        .iter()
        .map(|m| {
            let text = String::from_utf8_lossy(&m.raw).to_string();
            text.lines()
                .find_map(|l| l.strip_prefix("Subject: test "))
                .unwrap_or("?")
                .to_string()
        })
        .collect()
}

fn has_flag(flags: &[(u32, Vec<String>)], uid: u32, flag: &str) -> bool {
    flags
        .iter()
        .any(|(u, f)| *u == uid && f.iter().any(|x| x == flag))
}

#[tokio::test]
async fn plaintext_fetch_reads_internaldate_and_leaves_seen_alone() {
    let s = setup();
    let dates = [
        "2025-03-10T09:15:00+02:00",
        "2025-03-10T23:59:30-05:00",
        "2025-03-11T00:00:01+00:00",
    ];
    for (i, d) in dates.iter().enumerate() {
        s.stack
            .append(USER, "INBOX", &message(i as u32 + 1), Some(date(d)))
            .await;
    }
    let cfg = config(&s, TlsMode::None);
    let mut src = connected(&cfg).await;
    let got = fetch(&mut src, &s.store, 100).await;
    assert_eq!(subject_numbers(&got), ["1", "2", "3"]);
    for (m, d) in got.iter().zip(dates) {
        assert_eq!(
            m.received,
            date(d).with_timezone(&Utc),
            "INTERNALDATE as UTC"
        );
        assert!(!m.headers_only);
        assert!(String::from_utf8_lossy(&m.raw).contains("Body of message"));
        let mark = m.mark.expect("mark");
        assert_eq!(m.id, mark.last_uid.to_string());
    }
    let uids: Vec<u32> = got.iter().map(|m| m.mark.expect("mark").last_uid).collect();
    assert!(
        uids.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {uids:?}"
    );
    // BODY.PEEK: reading did not set \Seen.
    let flags = s.stack.flags(USER, "INBOX").await;
    assert_eq!(flags.len(), 3);
    assert!(
        flags.iter().all(|(_, f)| !f.iter().any(|x| x == "\\Seen")),
        "{flags:?}"
    );
}

#[tokio::test]
async fn implicit_tls_with_the_configured_ca() {
    let s = setup();
    s.stack.append(USER, "INBOX", &message(1), None).await;
    let cfg = config(&s, TlsMode::Implicit);
    let mut src = connected(&cfg).await;
    assert_eq!(subject_numbers(&fetch(&mut src, &s.store, 10).await), ["1"]);

    // Without the CA the server's certificate is not trusted.
    let mut untrusted = cfg.clone();
    untrusted.ca_file = None;
    let e = ImapSource::new(&untrusted)
        .connect()
        .await
        .expect_err("unknown CA");
    assert!(matches!(e, SourceError::Connect { .. }), "{e:?}");
    assert!(e.to_string().contains("TLS"), "{e}");
}

#[tokio::test]
async fn starttls_with_the_configured_ca() {
    let s = setup();
    s.stack.append(USER, "INBOX", &message(1), None).await;
    let cfg = config(&s, TlsMode::Starttls);
    let mut src = connected(&cfg).await;
    assert_eq!(subject_numbers(&fetch(&mut src, &s.store, 10).await), ["1"]);
}

#[tokio::test]
async fn processed_mail_is_seen_and_moved_never_deleted() {
    let s = setup();
    for n in 1..=3 {
        s.stack.append(USER, "INBOX", &message(n), None).await;
    }
    let mut cfg = config(&s, TlsMode::None);
    cfg.move_to = Some("Behandlet".into());
    let mut src = connected(&cfg).await;
    let got = fetch(&mut src, &s.store, 100).await;
    assert_eq!(got.len(), 3);
    commit(&s.store, &src, &got[..2]);
    tokio::time::timeout(LONG, src.mark_processed(&got[..2]))
        .await
        .expect("in time")
        .expect("mark processed");

    assert!(s
        .stack
        .list_mailboxes(USER)
        .await
        .contains(&"Behandlet".to_string()));
    let moved = s.stack.flags(USER, "Behandlet").await;
    assert_eq!(moved.len(), 2, "{moved:?}");
    assert!(moved.iter().all(|(_, f)| f.iter().any(|x| x == "\\Seen")));
    assert!(moved
        .iter()
        .all(|(_, f)| !f.iter().any(|x| x == "\\Deleted")));
    let left = s.stack.flags(USER, "INBOX").await;
    assert_eq!(left.len(), 1, "only the unprocessed one is left: {left:?}");
    assert!(!has_flag(&left, 3, "\\Seen"));
    let bodies = s.stack.fetch_all(USER, "Behandlet").await;
    assert!(bodies
        .iter()
        .any(|b| String::from_utf8_lossy(b).contains("Body of message 1")));

    // The rest, on the same session (the folder exists now).
    let got = fetch(&mut src, &s.store, 100).await;
    assert_eq!(subject_numbers(&got), ["3"]);
    commit(&s.store, &src, &got);
    src.mark_processed(&got).await.expect("mark processed");
    assert!(s.stack.flags(USER, "INBOX").await.is_empty());
    assert_eq!(s.stack.flags(USER, "Behandlet").await.len(), 3);
}

#[tokio::test]
async fn the_mark_survives_a_new_source() {
    let s = setup();
    for n in 1..=2 {
        s.stack.append(USER, "INBOX", &message(n), None).await;
    }
    let cfg = config(&s, TlsMode::None);
    {
        let mut src = connected(&cfg).await;
        let got = fetch(&mut src, &s.store, 100).await;
        assert_eq!(got.len(), 2);
        commit(&s.store, &src, &got);
        src.mark_processed(&got).await.expect("mark processed");
    }
    let flags = s.stack.flags(USER, "INBOX").await;
    assert_eq!(flags.len(), 2, "no move_to: the mail stays");
    assert!(flags.iter().all(|(_, f)| f.iter().any(|x| x == "\\Seen")));

    let mut src = connected(&cfg).await;
    assert!(fetch(&mut src, &s.store, 100).await.is_empty());
    s.stack.append(USER, "INBOX", &message(3), None).await;
    let got = fetch(&mut src, &s.store, 100).await;
    assert_eq!(subject_numbers(&got), ["3"]);
}

#[tokio::test]
async fn unmarked_processed_mail_is_marked_after_a_reconnect() {
    // The store committed, then marking failed: the next session finishes it.
    let s = setup();
    for n in 1..=2 {
        s.stack.append(USER, "INBOX", &message(n), None).await;
    }
    let mut cfg = config(&s, TlsMode::None);
    cfg.move_to = Some("Behandlet".into());
    let mut src = connected(&cfg).await;
    let got = fetch(&mut src, &s.store, 100).await;
    commit(&s.store, &src, &got[..1]);
    drop(src);

    let mut src = connected(&cfg).await;
    let got = fetch(&mut src, &s.store, 100).await;
    assert_eq!(subject_numbers(&got), ["2"]);
    let moved = s.stack.flags(USER, "Behandlet").await;
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert!(moved[0].1.iter().any(|x| x == "\\Seen"));
}

#[tokio::test]
async fn a_uidvalidity_change_reads_the_mailbox_again() {
    let s = setup();
    s.stack.append(USER, "INBOX", &message(1), None).await;
    let cfg = config(&s, TlsMode::None);
    let mut src = connected(&cfg).await;
    let got = fetch(&mut src, &s.store, 100).await;
    let first = got[0].mark.expect("mark");
    commit(&s.store, &src, &got);
    assert!(fetch(&mut src, &s.store, 100).await.is_empty());
    drop(src);

    // The server's UIDVALIDITY changes (as after a mailbox rebuild).
    let new_validity = first.uid_validity.wrapping_add(1000);
    let out = std::process::Command::new("doveadm")
        .arg("-c")
        .arg(s.stack.root().join("dovecot/dovecot.conf"))
        .args(["mailbox", "update", "-u", USER, "--uid-validity"])
        .arg(new_validity.to_string())
        .arg("INBOX")
        .output()
        .expect("run doveadm");
    assert!(
        out.status.success(),
        "doveadm: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.stack.log_tail()
    );

    let mut src = connected(&cfg).await;
    let got = fetch(&mut src, &s.store, 100).await;
    assert_eq!(subject_numbers(&got), ["1"], "read again from the start");
    assert_eq!(got[0].mark.expect("mark").uid_validity, new_validity);
    assert_eq!(
        s.store.ingest_mark(&src.name()).expect("mark"),
        Some(IngestMark {
            uid_validity: new_validity,
            last_uid: 0
        })
    );
}

#[tokio::test]
async fn large_messages_are_read_as_headers_only() {
    let s = setup();
    let mut big = message(1);
    big.extend(std::iter::repeat_n(b'x', 20_000));
    big.extend_from_slice(b"\r\nEND-OF-BODY\r\n");
    s.stack.append(USER, "INBOX", &big, None).await;
    s.stack.append(USER, "INBOX", &message(2), None).await;
    let mut cfg = config(&s, TlsMode::None);
    cfg.max_message_bytes = 4096;
    let mut src = connected(&cfg).await;
    let got = fetch(&mut src, &s.store, 100).await;
    assert_eq!(subject_numbers(&got), ["1", "2"]);
    assert!(got[0].headers_only);
    let head = String::from_utf8_lossy(&got[0].raw);
    assert!(head.contains("Message-ID: <test-1@siri.test>"));
    assert!(head.ends_with("\r\n\r\n"), "{head:?}");
    assert!(!head.contains("END-OF-BODY"));
    assert!(!got[1].headers_only);
    let flags = s.stack.flags(USER, "INBOX").await;
    assert!(flags.iter().all(|(_, f)| !f.iter().any(|x| x == "\\Seen")));
}

#[tokio::test]
async fn a_backlog_is_read_batch_by_batch() {
    let s = setup();
    for n in 1..=25 {
        s.stack.append(USER, "INBOX", &message(n), None).await;
    }
    let cfg = config(&s, TlsMode::None);
    let mut src = connected(&cfg).await;
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let got = fetch(&mut src, &s.store, 10).await;
        if got.is_empty() {
            break;
        }
        sizes.push(got.len());
        seen.extend(subject_numbers(&got));
        commit(&s.store, &src, &got);
        src.mark_processed(&got).await.expect("mark processed");
    }
    assert_eq!(sizes, [10, 10, 5]);
    let expected: Vec<String> = (1..=25).map(|n| n.to_string()).collect();
    assert_eq!(seen, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_returns_promptly_after_a_delivery() {
    let s = setup();
    let cfg = config(&s, TlsMode::None);
    let mut src = connected(&cfg).await;
    assert!(fetch(&mut src, &s.store, 100).await.is_empty());
    let shutdown = Shutdown::new();

    // IMAP APPEND from another session.
    let (woke, appended) = tokio::join!(
        async {
            tokio::time::timeout(LONG, src.wait_for_mail(&shutdown))
                .await
                .expect("woken in time")
                .expect("wait");
            Instant::now()
        },
        async {
            s.stack.append(USER, "INBOX", &message(1), None).await;
            Instant::now()
        }
    );
    let lag = woke.saturating_duration_since(appended);
    eprintln!("IDLE woke {lag:?} after the APPEND returned");
    assert!(
        lag < Duration::from_secs(2),
        "woke {lag:?} after the append"
    );
    let got = fetch(&mut src, &s.store, 100).await;
    assert_eq!(subject_numbers(&got), ["1"]);
    commit(&s.store, &src, &got);

    // A real delivery: SMTP to Postfix, LMTP to Dovecot.
    let stack = &s.stack;
    tokio::join!(
        async {
            tokio::time::timeout(LONG, src.wait_for_mail(&shutdown))
                .await
                .expect("woken in time")
                .expect("wait");
        },
        async {
            tokio::task::block_in_place(|| {
                stack.send("mette.larsen@siri.test", &[USER], &message(2))
            })
        }
    );
    let got = fetch(&mut src, &s.store, 100).await;
    assert_eq!(subject_numbers(&got), ["2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_ends_promptly_at_shutdown_and_the_session_stays_usable() {
    let s = setup();
    let cfg = config(&s, TlsMode::None);
    let mut src = connected(&cfg).await;
    assert!(fetch(&mut src, &s.store, 100).await.is_empty());
    let shutdown = Shutdown::new();
    let trigger = shutdown.clone();
    let (elapsed, ()) = tokio::join!(
        async {
            let t = Instant::now();
            tokio::time::timeout(LONG, src.wait_for_mail(&shutdown))
                .await
                .expect("returned in time")
                .expect("ok at shutdown");
            t.elapsed()
        },
        async {
            tokio::task::yield_now().await;
            trigger.trigger();
        }
    );
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    // Already triggered: returns at once.
    tokio::time::timeout(Duration::from_secs(2), src.wait_for_mail(&shutdown))
        .await
        .expect("at once")
        .expect("ok");
    // DONE was answered: the same session reads on.
    s.stack.append(USER, "INBOX", &message(1), None).await;
    assert_eq!(
        subject_numbers(&fetch(&mut src, &s.store, 100).await),
        ["1"]
    );
}

#[tokio::test]
async fn a_wrong_password_is_an_auth_error() {
    let s = setup();
    let secret = "not-the-password-314159";
    let cfg = config_with_password(&s, TlsMode::None, secret);
    let e = ImapSource::new(&cfg)
        .connect()
        .await
        .expect_err("login refused");
    assert!(matches!(e, SourceError::Auth { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains(USER), "{text}");
    assert!(text.contains("password"), "{text}");
    assert!(!text.contains(secret), "{text}");
    assert!(!format!("{e:?}").contains(secret));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_fails_the_calls_and_a_reconnect_works() {
    let s = setup();
    let cfg = config(&s, TlsMode::None);
    let mut src = connected(&cfg).await;
    assert!(fetch(&mut src, &s.store, 100).await.is_empty());

    // While idling: the wait ends with an error, promptly.
    let shutdown = Shutdown::new();
    let stack = &s.stack;
    let (r, ()) = tokio::join!(
        tokio::time::timeout(LONG, src.wait_for_mail(&shutdown)),
        async {
            tokio::task::yield_now().await;
            tokio::task::block_in_place(|| stack.restart_imap());
        }
    );
    let e = r.expect("in time").expect_err("the connection was lost");
    assert!(matches!(e, SourceError::Io { .. }), "{e:?}");

    // Reconnect, then a restart between calls: the next call fails.
    tokio::time::timeout(LONG, src.connect())
        .await
        .expect("in time")
        .expect("reconnect");
    assert!(fetch(&mut src, &s.store, 100).await.is_empty());
    tokio::task::block_in_place(|| s.stack.restart_imap());
    let r = tokio::time::timeout(LONG, src.fetch(&s.store, 100, &[]))
        .await
        .expect("in time");
    assert!(r.is_err(), "fetch on a dead session fails");
    assert!(
        tokio::time::timeout(LONG, src.fetch(&s.store, 100, &[]))
            .await
            .expect("in time")
            .is_err(),
        "still not connected until connect()"
    );

    src.connect().await.expect("reconnect");
    s.stack.append(USER, "INBOX", &message(1), None).await;
    assert_eq!(
        subject_numbers(&fetch(&mut src, &s.store, 100).await),
        ["1"]
    );
}

// ----- the mailbox sweep (retention and `forget`, issue 12) -----------------

/// A copy of a mail canvass sent, as Exchange keeps it in Sent Items.
fn sent_copy(id: &str, to: &str, body: &str) -> Vec<u8> {
    format!(
        "From: SIRI <survey@siri.test>\r\n\
         To: {to}\r\n\
         Subject: Undersøgelse\r\n\
         Message-ID: <canvass.{id}@siri.test>\r\n\
         \r\n\
         {body}\r\n"
    )
    .into_bytes()
}

/// Someone's own mail in the same sent folder: never canvass' to delete.
fn personal(n: u32) -> Vec<u8> {
    format!(
        "From: Mette Larsen <survey@siri.test>\r\n\
         To: kollega@siri.test\r\n\
         Subject: personal {n}\r\n\
         Message-ID: <personal-{n}@siri.test>\r\n\
         \r\n\
         Hej, a@kommune.test ringede.\r\n"
    )
    .into_bytes()
}

async fn sweep(
    cfg: &ImapConfig,
    store: &Store,
    sweep: &canvass::retention::MailboxSweep,
    dry_run: bool,
) -> canvass::ingest::imap::MailboxReport {
    tokio::time::timeout(
        LONG,
        canvass::ingest::imap::sweep_mailbox(cfg, Some(store), sweep, dry_run),
    )
    .await
    .expect("sweep in time")
    .expect("sweep")
}

fn subjects(bodies: &[Vec<u8>]) -> Vec<String> {
    let mut v: Vec<String> = bodies
        .iter()
        .filter_map(|b| {
            String::from_utf8_lossy(b)
                .lines()
                .find_map(|l| l.strip_prefix("Message-ID: <").map(|s| s.to_string()))
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn the_retention_sweep_takes_old_sent_copies_and_processed_mail_and_leaves_the_rest() {
    let s = setup();
    let old = Some(date("2024-09-02T10:00:00+02:00"));
    let late = Some(date("2024-11-25T10:00:00+01:00"));
    // Sent Items (\Sent): two old copies, one after the cutoff, personal mail.
    s.stack
        .append(
            USER,
            "Sent Items",
            &sent_copy("a1", "a@kommune.test", "link"),
            old,
        )
        .await;
    s.stack
        .append(
            USER,
            "Sent Items",
            &sent_copy("b1", "b@kommune.test", "link"),
            old,
        )
        .await;
    s.stack
        .append(
            USER,
            "Sent Items",
            &sent_copy("c1", "c@kommune.test", "link"),
            late,
        )
        .await;
    s.stack.append(USER, "Sent Items", &personal(1), old).await;
    // The processed folder: two old triggers, one after the cutoff.
    for (n, d) in [(1, old), (2, old), (3, late)] {
        s.stack.append(USER, "Behandlet", &message(n), d).await;
    }
    // The mailbox itself is not canvass' processed folder here: untouched.
    s.stack.append(USER, "INBOX", &message(9), old).await;
    let mut cfg = config(&s, TlsMode::None);
    cfg.move_to = Some("Behandlet".into());
    let before: DateTime<Utc> = date("2024-10-20T22:00:00Z").with_timezone(&Utc);
    let retention = canvass::retention::MailboxSweep::Retention { before };

    // A dry run counts, folder by folder, and deletes nothing.
    let dry = sweep(&cfg, &s.store, &retention, true).await;
    assert!(dry.dry_run);
    let counts: Vec<(&str, &str, u64)> = dry
        .folders
        .iter()
        .map(|f| (f.folder.as_str(), f.kind, f.deleted))
        .collect();
    assert_eq!(
        counts,
        [
            ("Sent Items", "sent copies", 2),
            ("Behandlet", "processed mail", 2)
        ],
        "{dry:?}"
    );
    assert!(dry
        .render()
        .contains("would delete 2 sent copies in \"Sent Items\""));
    assert_eq!(s.stack.fetch_all(USER, "Sent Items").await.len(), 4);
    assert_eq!(s.stack.fetch_all(USER, "Behandlet").await.len(), 3);

    let done = sweep(&cfg, &s.store, &retention, false).await;
    assert!(done.notes.is_empty(), "{:?}", done.notes);
    assert_eq!(
        subjects(&s.stack.fetch_all(USER, "Sent Items").await),
        ["canvass.c1@siri.test>", "personal-1@siri.test>"]
    );
    assert_eq!(
        subjects(&s.stack.fetch_all(USER, "Behandlet").await),
        ["test-3@siri.test>"]
    );
    assert_eq!(s.stack.fetch_all(USER, "INBOX").await.len(), 1);
    // Expunged, not merely flagged (UID EXPUNGE: Dovecot offers UIDPLUS).
    assert!(s
        .stack
        .flags(USER, "Sent Items")
        .await
        .iter()
        .all(|(_, f)| !f.iter().any(|x| x == "\\Deleted")));
}

#[tokio::test]
async fn the_forget_sweep_takes_only_mail_naming_the_person() {
    let s = setup();
    s.stack
        .append(
            USER,
            "Sent Items",
            &sent_copy("a1", "a@kommune.test", "link"),
            None,
        )
        .await;
    s.stack
        .append(
            USER,
            "Sent Items",
            &sent_copy("b1", "b@kommune.test", "link"),
            None,
        )
        .await;
    // A confirmation to the consultant names the person in its body.
    let confirmation = sent_copy("k1", "anne@siri.test", "Inviteret: A@Kommune.test");
    s.stack
        .append(USER, "Sent Items", &confirmation, None)
        .await;
    // Personal mail naming them is not canvass' own: kept.
    s.stack.append(USER, "Sent Items", &personal(1), None).await;
    // Processed mail without a separate folder: \Seen and at or below the mark.
    let trigger = |n: u32, cc: &str| {
        format!(
            "From: anne@siri.test\r\nTo: {cc}\r\nCc: survey@siri.test\r\nSubject: t{n}\r\n\
             Message-ID: <trigger-{n}@siri.test>\r\n\r\nHej\r\n"
        )
        .into_bytes()
    };
    s.stack
        .append_with_flags(
            USER,
            "INBOX",
            &trigger(1, "a@kommune.test"),
            &["\\Seen"],
            None,
        )
        .await;
    s.stack
        .append_with_flags(
            USER,
            "INBOX",
            &trigger(2, "b@kommune.test"),
            &["\\Seen"],
            None,
        )
        .await;
    // Not processed yet (above the mark): never swept.
    s.stack
        .append(USER, "INBOX", &trigger(3, "a@kommune.test"), None)
        .await;
    let cfg = config(&s, TlsMode::None);
    let mut src = connected(&cfg).await;
    let got = fetch(&mut src, &s.store, 2).await;
    commit(&s.store, &src, &got);
    drop(src);

    let person = canvass::retention::MailboxSweep::Person {
        address: "a@kommune.test".into(),
    };
    let r = sweep(&cfg, &s.store, &person, false).await;
    let counts: Vec<(&str, u64)> = r.folders.iter().map(|f| (f.kind, f.deleted)).collect();
    assert_eq!(counts, [("sent copies", 2), ("processed mail", 1)], "{r:?}");
    assert_eq!(
        subjects(&s.stack.fetch_all(USER, "Sent Items").await),
        ["canvass.b1@siri.test>", "personal-1@siri.test>"]
    );
    assert_eq!(
        subjects(&s.stack.fetch_all(USER, "INBOX").await),
        ["trigger-2@siri.test>", "trigger-3@siri.test>"]
    );
}

#[tokio::test]
async fn a_configured_sent_folder_that_does_not_exist_is_a_clear_error() {
    let s = setup();
    let mut cfg = config(&s, TlsMode::None);
    cfg.sent_folder = Some("Sendt post".into());
    let r = canvass::ingest::imap::sweep_mailbox(
        &cfg,
        Some(&s.store),
        &canvass::retention::MailboxSweep::Person {
            address: "a@kommune.test".into(),
        },
        true,
    )
    .await;
    let e = r.expect_err("no such folder").to_string();
    assert!(
        e.contains("inbound.imap.sent_folder \"Sendt post\" does not exist"),
        "{e}"
    );
}

/// A sent folder set in the config is swept instead of the one the server
/// marks `\Sent` (a server that marks none, or copies kept elsewhere); only
/// canvass' own copies go from it.
#[tokio::test]
async fn a_configured_sent_folder_is_swept_instead_of_the_special_use_one() {
    let s = setup();
    let old = Some(date("2024-09-02T10:00:00+02:00"));
    for folder in ["Sendt post", "Sent Items"] {
        s.stack
            .append(
                USER,
                folder,
                &sent_copy("a1", "a@kommune.test", "link"),
                old,
            )
            .await;
    }
    s.stack.append(USER, "Sendt post", &personal(1), old).await;
    let mut cfg = config(&s, TlsMode::None);
    cfg.sent_folder = Some("Sendt post".into());
    let before: DateTime<Utc> = date("2024-10-20T22:00:00Z").with_timezone(&Utc);
    let retention = canvass::retention::MailboxSweep::Retention { before };
    let r = sweep(&cfg, &s.store, &retention, false).await;
    assert_eq!(r.folders[0].folder, "Sendt post", "{r:?}");
    assert_eq!(r.folders[0].deleted, 1, "{r:?}");
    assert_eq!(
        subjects(&s.stack.fetch_all(USER, "Sendt post").await),
        ["personal-1@siri.test>"]
    );
    assert_eq!(
        subjects(&s.stack.fetch_all(USER, "Sent Items").await),
        ["canvass.a1@siri.test>"],
        "the \\Sent folder is not the configured one: untouched"
    );
}

/// Mail canvass could not read waits in the quarantine folder, and may name
/// a person or quote a link: `forget` takes what names the person, the
/// retention sweep what came before the cutoff; later mail stays.
#[tokio::test]
async fn quarantined_mail_is_swept_by_forget_and_by_the_retention() {
    let s = setup();
    let old = Some(date("2024-09-02T10:00:00+02:00"));
    let late = Some(date("2024-11-25T10:00:00+01:00"));
    let unreadable = |n: u32, who: &str| {
        format!(
            "From: {who}\r\nTo: survey@siri.test\r\nSubject: q{n}\r\n\
             Message-ID: <q-{n}@siri.test>\r\n\r\n> https://undersoegelse.siri.test/s/abc{n}\r\n"
        )
        .into_bytes()
    };
    for (n, who, at) in [
        (1, "a@kommune.test", old),
        (2, "b@kommune.test", old),
        (3, "c@kommune.test", late),
    ] {
        s.stack
            .append(USER, "Quarantine", &unreadable(n, who), at)
            .await;
    }
    let cfg = config(&s, TlsMode::None);
    let quarantined = |r: &canvass::ingest::imap::MailboxReport| {
        r.folders
            .iter()
            .find(|f| f.folder == "Quarantine")
            .map(|f| (f.kind, f.deleted))
    };

    let person = canvass::retention::MailboxSweep::Person {
        address: "a@kommune.test".into(),
    };
    let r = sweep(&cfg, &s.store, &person, false).await;
    assert_eq!(quarantined(&r), Some(("quarantined mail", 1)), "{r:?}");
    assert_eq!(
        subjects(&s.stack.fetch_all(USER, "Quarantine").await),
        ["q-2@siri.test>", "q-3@siri.test>"]
    );

    let before: DateTime<Utc> = date("2024-10-20T22:00:00Z").with_timezone(&Utc);
    let retention = canvass::retention::MailboxSweep::Retention { before };
    let dry = sweep(&cfg, &s.store, &retention, true).await;
    assert_eq!(quarantined(&dry), Some(("quarantined mail", 1)), "{dry:?}");
    assert!(dry
        .render()
        .contains("would delete 1 quarantined mail in \"Quarantine\""));
    sweep(&cfg, &s.store, &retention, false).await;
    assert_eq!(
        subjects(&s.stack.fetch_all(USER, "Quarantine").await),
        ["q-3@siri.test>"]
    );
}
