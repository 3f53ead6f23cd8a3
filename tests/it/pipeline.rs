//! The invitation pipeline end to end, against a REAL Dovecot (IMAP IDLE) and
//! a REAL Postfix (SMTP → LMTP into Dovecot), started by `tests/it/harness`.
//! The daemon runs in process (`daemon::start`) except where it must be killed.

use crate::common;
use crate::harness;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use canvass::config::Config;
use canvass::daemon::Daemon;
use canvass::shutdown::Shutdown;
use common::{http_get, link_in, stop_in_process as stop};
use harness::MailStack;

const SURVEY: &str = "undersoegelse@siri.test";
const ANNE: &str = "anne.hansen@siri.test"; // Sjælland
const SOEREN: &str = "soeren.aagaard@siri.test"; // Syddanmark
const BO: &str = "bo.jensen@siri.test"; // Midtjylland

/// Writes a config for the stack into `dir`. `window` is (start, end);
/// `extra` is appended to [sending]; `trust` to the [trust] table.
fn config(mail: &MailStack, dir: &Path, window: (&str, &str), extra: &str, trust: &str) -> PathBuf {
    common::StackConfig {
        window: Some(window),
        sending: extra,
        trust,
        password: harness::PASSWORD,
        ..common::StackConfig::new(mail.imap_port(), mail.smtp_port())
    }
    .write(dir)
}

fn stack() -> MailStack {
    let mail = MailStack::start();
    mail.add_users(&[SURVEY, ANNE, SOEREN, BO]);
    mail
}

async fn start(path: &Path) -> (Daemon, Shutdown, String) {
    let (d, shutdown) = common::start_in_process(path).await;
    let web = d.web_addr.to_string();
    (d, shutdown, web)
}

fn status(d: &Daemon) -> canvass::analysis::status::Status {
    canvass::control::current_status(&d.pipeline).unwrap()
}

/// Waits (polling the store's counters) until `f` holds.
async fn until(
    what: &str,
    d: &Daemon,
    timeout: Duration,
    f: impl Fn(&canvass::analysis::status::Status) -> bool,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let s = status(d);
        if f(&s) {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "timed out waiting for {what}; status:\n{}",
                canvass::analysis::status::render_text(&s)
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn from_survey(msgs: &[Vec<u8>]) -> Vec<String> {
    msgs.iter()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .filter(|t| {
            t.contains(&format!("<{SURVEY}>"))
                && t.lines()
                    .any(|l| l.starts_with("From:") && l.contains(SURVEY))
        })
        .collect()
}

/// The decoded text body of a raw message.
fn body_text(raw: &str) -> String {
    mail_parser::MessageParser::default()
        .parse(raw.as_bytes())
        .and_then(|m| m.body_text(0).map(|t| t.into_owned()))
        .unwrap_or_default()
}

fn trigger(id: &str, from: &str, to: &[&str], cc_survey: bool) -> Vec<u8> {
    let cc = if cc_survey {
        format!("Cc: {SURVEY}\r\n")
    } else {
        String::new()
    };
    format!(
        "Message-ID: <{id}@siri.test>\r\nDate: Mon, 12 Aug 2024 10:00:00 +0200\r\nFrom: Konsulent <{from}>\r\nTo: {}\r\n{cc}Subject: =?utf-8?q?Opf=C3=B8lgning?=\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nHej, tak for snakken i dag.\r\n",
        to.join(", ")
    )
    .into_bytes()
}

fn today_window() -> (String, String) {
    common::open_window()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cc_trigger_invites_once_across_consultants_and_regions() {
    let mail = stack();
    let contact = "kontakt@kommune.test";
    mail.add_user(contact);
    let dir = tempfile::tempdir().unwrap();
    let (s, e) = today_window();
    let (d, shutdown, web) = start(&config(&mail, dir.path(), (&s, &e), "", "")).await;

    // Anne (Sjælland) CCs the survey address.
    mail.send(
        ANNE,
        &[contact, SURVEY],
        &trigger("t1", ANNE, &[&format!("Kontakt <{contact}>")], true),
    );
    let msgs = mail
        .wait_for_messages(contact, "INBOX", 2, Duration::from_secs(20))
        .await;
    let invitations = from_survey(&msgs);
    assert_eq!(invitations.len(), 1, "one invitation");
    let inv = &invitations[0];
    assert!(inv.contains("Auto-Submitted: auto-generated"));
    assert!(inv.contains("Message-ID: <canvass."));
    assert!(inv.contains("text/plain") && inv.contains("text/html"));
    // The link works.
    let link = link_in(inv.as_bytes()).expect("a personal link");
    let w = web.clone();
    let (code, body) = tokio::task::spawn_blocking(move || http_get(&w, &link))
        .await
        .unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("Hvilken type organisation arbejder du i?"));

    // Søren (Syddanmark) CCs the same contact, in another spelling: no second invitation.
    let upper = "Kontakt@KOMMUNE.test";
    mail.send(
        SOEREN,
        &[contact, SURVEY],
        &trigger("t2", SOEREN, &[upper], true),
    );
    until(
        "the second trigger to be processed",
        &d,
        Duration::from_secs(20),
        |s| s.total.triggers == 2,
    )
    .await;
    let msgs = mail
        .wait_for_messages(contact, "INBOX", 3, Duration::from_secs(20))
        .await;
    assert_eq!(from_survey(&msgs).len(), 1, "still exactly one invitation");
    let st = status(&d);
    assert_eq!(st.total.invited, 1);
    let sj = st.regions.iter().find(|r| r.region == "Sjælland").unwrap();
    assert_eq!((sj.invited, sj.sent), (1, 1));

    // Processed mail is \Seen and moved, never deleted.
    let moved = mail
        .wait_for_messages(SURVEY, "Behandlet", 2, Duration::from_secs(10))
        .await;
    assert_eq!(moved.len(), 2);
    assert!(mail.fetch_all(SURVEY, "INBOX").await.is_empty());
    stop(d, shutdown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bcc_trigger_and_phone_contact_with_confirmation() {
    let mail = stack();
    let (c1, c2, c3) = ("bcc@kommune.test", "tlf1@politi.test", "tlf2@kommune.test");
    mail.add_users(&[c1, c2, c3]);
    let dir = tempfile::tempdir().unwrap();
    let (s, e) = today_window();
    let (d, shutdown, _) = start(&config(&mail, dir.path(), (&s, &e), "", "")).await;

    // Bcc: the survey address is only in the envelope.
    mail.send(BO, &[c1, SURVEY], &trigger("b1", BO, &[c1], false));
    let msgs = mail
        .wait_for_messages(c1, "INBOX", 2, Duration::from_secs(20))
        .await;
    assert_eq!(from_survey(&msgs).len(), 1);

    // Phone contacts: the survey address alone, addresses in the body; c1 again.
    let body = format!(
        "Message-ID: <p1@siri.test>\r\nFrom: Bo Jensen <{BO}>\r\nTo: {SURVEY}\r\nSubject: Telefonkontakter\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{c2}\r\nSagsbehandler <{c3}>\r\n{c1}\r\nikke en adresse@\r\n"
    );
    mail.send(BO, &[SURVEY], body.as_bytes());
    for c in [c2, c3] {
        let msgs = mail
            .wait_for_messages(c, "INBOX", 1, Duration::from_secs(20))
            .await;
        assert_eq!(from_survey(&msgs).len(), 1, "{c} invited once");
    }
    let replies = mail
        .wait_for_messages(BO, "INBOX", 1, Duration::from_secs(20))
        .await;
    let confirmation = String::from_utf8_lossy(&replies[0]).into_owned();
    let decoded = confirmation.replace("=\r\n", "");
    assert!(decoded.contains("Re: Telefonkontakter"), "{decoded}");
    assert!(decoded.contains("In-Reply-To: <p1@siri.test>"));
    assert!(decoded.contains(c2) && decoded.contains(c3));
    assert!(decoded.contains(c1), "the already invited contact is named");
    assert!(
        decoded.contains("ikke en adresse@"),
        "the invalid line is named"
    );
    let st = status(&d);
    assert_eq!(st.total.invited, 3);
    stop(d, shutdown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_is_judged_by_internaldate_and_senders_are_checked() {
    let mail = stack();
    let (inside, outside, forged) = (
        "inde@kommune.test",
        "ude@kommune.test",
        "falsk@kommune.test",
    );
    mail.add_users(&[inside, outside, forged]);
    let dir = tempfile::tempdir().unwrap();
    // The SIRI window of 2024; mail is appended with INTERNALDATEs of then.
    let trust = r#"authserv_id = "mx.siri.test""#;
    let (d, shutdown, _) = start(&config(
        &mail,
        dir.path(),
        ("2024-08-07", "2024-09-20"),
        "",
        trust,
    ))
    .await;
    let date = |s: &str| Some(chrono::DateTime::parse_from_rfc3339(s).unwrap());
    let authed = |raw: Vec<u8>, from: &str| {
        let domain = from.rsplit('@').next().unwrap();
        let mut v = format!("Authentication-Results: mx.siri.test; dkim=pass header.d={domain}; dmarc=pass header.from={domain}\r\n").into_bytes();
        v.extend(raw);
        v
    };
    // Received inside the window (Date header says otherwise: it does not count).
    let mut raw = authed(trigger("w1", ANNE, &[inside], true), ANNE);
    raw = String::from_utf8(raw)
        .unwrap()
        .replace("Mon, 12 Aug 2024", "Tue, 1 Oct 2024")
        .into_bytes();
    mail.append(SURVEY, "INBOX", &raw, date("2024-08-12T10:00:00+02:00"))
        .await;
    // Received the day after the window closed.
    mail.append(
        SURVEY,
        "INBOX",
        &authed(trigger("w2", ANNE, &[outside], true), ANNE),
        date("2024-09-21T09:00:00+02:00"),
    )
    .await;
    // A consultant's address without authentication, and a stranger.
    mail.append(
        SURVEY,
        "INBOX",
        &trigger("w3", ANNE, &[forged], true),
        date("2024-08-12T11:00:00+02:00"),
    )
    .await;
    mail.append(
        SURVEY,
        "INBOX",
        &trigger("w4", "fremmed@example.test", &[forged], true),
        date("2024-08-12T12:00:00+02:00"),
    )
    .await;

    let msgs = mail
        .wait_for_messages(inside, "INBOX", 1, Duration::from_secs(20))
        .await;
    assert_eq!(from_survey(&msgs).len(), 1);
    until("all four processed", &d, Duration::from_secs(20), |s| {
        s.total.outside_window == 1 && s.total.refused == 2
    })
    .await;
    let st = status(&d);
    assert_eq!(st.total.invited, 1);
    assert_eq!(st.refused_unknown_sender, 1);
    let sj = st.regions.iter().find(|r| r.region == "Sjælland").unwrap();
    assert_eq!((sj.outside_window, sj.refused), (1, 1));
    // By reason; the stranger's mail has its own line; the column adds up.
    assert_eq!(sj.refused_unauthenticated, 1);
    assert_eq!(st.no_region.refused_not_consultant, 1);
    let column: u64 = st.regions.iter().map(|r| r.refused).sum::<u64>() + st.no_region.refused;
    assert_eq!(column, st.total.refused);
    // Anne's authenticated trigger outside the window is answered, once;
    // the unauthenticated one with her address is never answered.
    let replies = from_survey(
        &mail
            .wait_for_messages(ANNE, "INBOX", 1, Duration::from_secs(20))
            .await,
    );
    until("the outbox to drain", &d, Duration::from_secs(20), |s| {
        s.outbox == 0
    })
    .await;
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert!(
        body_text(&replies[0]).contains("Ingen er inviteret: mailen kom efter indsamlingsperioden"),
        "{}",
        replies[0]
    );
    assert!(
        replies[0].contains("In-Reply-To: <w2@siri.test>"),
        "{}",
        replies[0]
    );
    stop(d, shutdown).await;
    assert_eq!(from_survey(&mail.fetch_all(ANNE, "INBOX").await).len(), 1);
    assert!(mail.fetch_all(outside, "INBOX").await.is_empty());
    assert!(mail.fetch_all(forged, "INBOX").await.is_empty());
}

/// Issue 14, item 7. Before: with `authserv_id` set, a forged
/// `mx.siri.dk; dkim=pass` field below the server's own `dkim=none;
/// dmarc=fail` field and its `Received` line was accepted. Only the topmost
/// field of the trusted authserv-id above the border's `Received` counts
/// (RFC 8601 §5), in both orders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_border_servers_own_authentication_results_count() {
    let mail = stack();
    let (forged, genuine, unstamped) = (
        "forfalsket@kommune.test",
        "aegte@kommune.test",
        "ustemplet@kommune.test",
    );
    mail.add_users(&[forged, genuine, unstamped]);
    let dir = tempfile::tempdir().unwrap();
    let (s, e) = today_window();
    let trust = r#"authserv_id = "mx.siri.test""#;
    let (d, shutdown, _) = start(&config(&mail, dir.path(), (&s, &e), "", trust)).await;
    let result = |verdict: &str| {
        format!("Authentication-Results: mx.siri.test; {verdict} header.from=siri.test\r\n")
    };
    let fail = result("dkim=none; dmarc=fail");
    let pass = result("dkim=pass header.d=siri.test; dmarc=pass");
    let cases = [
        // The attack: the border said fail; the sender brought a pass below it.
        (fail.as_str(), "mail.evil.test", pass.as_str(), forged),
        // The border stamped nothing; a pass below its Received is the sender's.
        ("", "mail.evil.test", pass.as_str(), unstamped),
        // The other order: the border's pass on top, a fail brought along below.
        (pass.as_str(), "smtp.siri.test", fail.as_str(), genuine),
    ];
    for (i, (above, from, below, to)) in cases.into_iter().enumerate() {
        let mut raw = format!("{above}Received: from {from} ({from} [198.51.100.77])\r\n\tby mx.siri.test (Postfix) with ESMTPS id a{i}\r\n\tfor <{SURVEY}>; Mon, 12 Aug 2024 10:00:02 +0200\r\n{below}").into_bytes();
        raw.extend(trigger(&format!("ar-{i}"), ANNE, &[to], true));
        mail.append(SURVEY, "INBOX", &raw, None).await;
    }
    mail.wait_for_messages(genuine, "INBOX", 1, Duration::from_secs(20))
        .await;
    until("all three processed", &d, Duration::from_secs(20), |s| {
        s.total.invited == 1 && s.total.refused == 2
    })
    .await;
    let sj = status(&d)
        .regions
        .into_iter()
        .find(|r| r.region == "Sjælland")
        .unwrap();
    assert_eq!(sj.refused_unauthenticated, 2);
    stop(d, shutdown).await;
    assert!(mail.fetch_all(forged, "INBOX").await.is_empty());
    assert!(mail.fetch_all(unstamped, "INBOX").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_down_for_a_while_loses_nothing() {
    let mail = stack();
    let contacts = ["a@kommune.test", "b@kommune.test", "c@kommune.test"];
    mail.add_users(&contacts);
    let dir = tempfile::tempdir().unwrap();
    let (s, e) = today_window();
    mail.stop_smtp();
    let (d, shutdown, _) = start(&config(&mail, dir.path(), (&s, &e), "", "")).await;
    for (i, c) in contacts.iter().enumerate() {
        mail.append(
            SURVEY,
            "INBOX",
            &trigger(&format!("s{i}"), ANNE, &[c], true),
            None,
        )
        .await;
    }
    until(
        "invitations queued while SMTP is down",
        &d,
        Duration::from_secs(20),
        |s| s.total.invited == 3 && s.total.waiting == 3,
    )
    .await;
    mail.start_smtp();
    for c in contacts {
        let msgs = mail
            .wait_for_messages(c, "INBOX", 1, Duration::from_secs(30))
            .await;
        assert_eq!(from_survey(&msgs).len(), 1, "{c}");
    }
    until("all sent", &d, Duration::from_secs(10), |s| {
        s.total.sent == 3 && s.total.waiting == 0
    })
    .await;
    stop(d, shutdown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_restart_is_survived() {
    let mail = stack();
    let (c1, c2) = ("foer@kommune.test", "efter@kommune.test");
    mail.add_users(&[c1, c2]);
    let dir = tempfile::tempdir().unwrap();
    let (s, e) = today_window();
    let (d, shutdown, _) = start(&config(&mail, dir.path(), (&s, &e), "", "")).await;
    mail.send(ANNE, &[c1, SURVEY], &trigger("r1", ANNE, &[c1], true));
    mail.wait_for_messages(c1, "INBOX", 2, Duration::from_secs(20))
        .await;
    mail.restart_imap();
    mail.send(ANNE, &[c2, SURVEY], &trigger("r2", ANNE, &[c2], true));
    let msgs = mail
        .wait_for_messages(c2, "INBOX", 2, Duration::from_secs(30))
        .await;
    assert_eq!(from_survey(&msgs).len(), 1);
    stop(d, shutdown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_backlog_invites_everyone_once() {
    let mail = stack();
    let n = 40;
    let contacts: Vec<String> = (0..n).map(|i| format!("k{i:02}@kommune.test")).collect();
    let refs: Vec<&str> = contacts.iter().map(String::as_str).collect();
    mail.add_users(&refs);
    let dir = tempfile::tempdir().unwrap();
    let (s, e) = today_window();
    // One SMTP connection: at most one message is in flight when killed.
    let path = config(&mail, dir.path(), (&s, &e), "", "");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("timeout_seconds = 5", "timeout_seconds = 5\npool_size = 1");
    std::fs::write(&path, text).unwrap();
    for (i, c) in contacts.iter().enumerate() {
        mail.append(
            SURVEY,
            "INBOX",
            &trigger(&format!("k{i}"), ANNE, &[c], true),
            None,
        )
        .await;
    }
    let run = |log: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_canvass"))
            .args(["run", "--config", path.to_str().unwrap()])
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join(log)).unwrap())
            .spawn()
            .unwrap()
    };
    let sent_so_far = || -> u64 {
        contacts
            .iter()
            .map(|c| {
                let p = mail_count_path(&mail, c);
                p.map(|n| n as u64).unwrap_or(0)
            })
            .sum()
    };
    let mut child = run("first.log");
    // Kill it once some, not all, invitations were delivered.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while sent_so_far() < 5 {
        assert!(std::time::Instant::now() < deadline, "nothing delivered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let mut child = run("second.log");
    for c in &contacts {
        mail.wait_for_messages(c, "INBOX", 1, Duration::from_secs(60))
            .await;
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(dir.path().join("second.log")).unwrap_or_default()
    );
    // Everybody invited; nobody twice, except at most the one in flight.
    let mut twice = 0;
    for c in &contacts {
        let msgs = mail.fetch_all(c, "INBOX").await;
        let k = from_survey(&msgs).len();
        assert!(k >= 1, "{c} was not invited");
        if k > 1 {
            twice += k - 1;
        }
    }
    assert!(twice <= 1, "{twice} duplicate invitations");
}

/// Messages in a contact's Maildir `new/`+`cur/` (cheap, no IMAP login).
fn mail_count_path(mail: &MailStack, user: &str) -> Option<usize> {
    let (local, domain) = user.split_once('@')?;
    let base = mail
        .root()
        .join("mail")
        .join(domain)
        .join(local)
        .join("Maildir");
    let count = |d: &str| {
        std::fs::read_dir(base.join(d))
            .map(|r| r.count())
            .unwrap_or(0)
    };
    Some(count("new") + count("cur"))
}

#[allow(dead_code)]
fn _assert_send(_: Arc<()>) {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_refusal_is_recorded_with_the_servers_reply() {
    let mail = stack();
    let dir = tempfile::tempdir().unwrap();
    let (s, e) = today_window();
    let (d, shutdown, _) = start(&config(&mail, dir.path(), (&s, &e), "", "")).await;
    // Postfix refuses recipients outside its test domains with 550.
    mail.append(
        SURVEY,
        "INBOX",
        &trigger("p1", ANNE, &["nobody@elsewhere.example"], true),
        None,
    )
    .await;
    until(
        "the refusal to be recorded",
        &d,
        Duration::from_secs(20),
        |s| s.total.failed == 1,
    )
    .await;
    let inv = d.pipeline.store.invitations().next().unwrap().unwrap();
    match inv.delivery {
        canvass::store::Delivery::Failed { reason, .. } => {
            assert!(reason.contains("550"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(d.pipeline.store.outbox_len(), 0, "nothing left to retry");
    stop(d, shutdown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_sending_hours_the_invitation_waits_across_a_restart() {
    let mail = stack();
    let contact = "venter@kommune.test";
    mail.add_user(contact);
    let dir = tempfile::tempdir().unwrap();
    let (s, e) = today_window();
    // A one-minute sending window six hours from now, every day.
    let open = chrono::Utc::now().with_timezone(&chrono_tz::Europe::Copenhagen)
        + chrono::Duration::hours(6);
    let hours = format!(
        "[sending.hours]\nstart = \"{}\"\nend = \"{}\"\ndays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\n",
        open.format("%H:00"),
        open.format("%H:01")
    );
    let path = config(&mail, dir.path(), (&s, &e), &hours, "");
    let (d, shutdown, _) = start(&path).await;
    mail.send(
        ANNE,
        &[contact, SURVEY],
        &trigger("h1", ANNE, &[contact], true),
    );
    until("the invitation to wait", &d, Duration::from_secs(20), |s| {
        s.total.invited == 1 && s.total.waiting == 1
    })
    .await;
    let (due, next) = d.pipeline.store.outbox_due(chrono::Utc::now(), 10).unwrap();
    assert!(due.is_empty());
    assert!(
        next.unwrap() > chrono::Utc::now() + chrono::Duration::hours(4),
        "{next:?}"
    );
    stop(d, shutdown).await;
    // After a restart it is still there, still waiting.
    let (d, shutdown, _) = start(&path).await;
    let st = status(&d);
    assert_eq!((st.total.invited, st.total.waiting, st.outbox), (1, 1, 1));
    stop(d, shutdown).await;
    let msgs = mail.fetch_all(contact, "INBOX").await;
    assert!(
        from_survey(&msgs).is_empty(),
        "nothing was sent outside the hours"
    );
}

/// Exchange keeps a copy of every mail sent through SMTP AUTH in Sent Items,
/// each with a live link, and processed triggers wait in the processed folder
/// with the contacts' addresses. `canvass forget` and `canvass purge`, run as
/// an operator runs them, sweep both folders and leave other mail alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_and_purge_sweep_sent_copies_and_processed_triggers_from_the_mailbox() {
    let mail = stack();
    let (a, b) = ("kontakt.a@kommune.test", "kontakt.b@kommune.test");
    mail.add_users(&[a, b]);
    let dir = tempfile::tempdir().unwrap();
    let (s, e) = today_window();
    let path = config(&mail, dir.path(), (&s, &e), "", "");
    let (d, shutdown, _) = start(&path).await;
    mail.send(ANNE, &[a, SURVEY], &trigger("sweep-a", ANNE, &[a], true));
    mail.send(ANNE, &[b, SURVEY], &trigger("sweep-b", ANNE, &[b], true));
    let long = Duration::from_secs(20);
    // Each contact gets the consultant's mail and the invitation.
    let mut invitations = from_survey(&mail.wait_for_messages(a, "INBOX", 2, long).await);
    invitations.extend(from_survey(
        &mail.wait_for_messages(b, "INBOX", 2, long).await,
    ));
    assert_eq!(invitations.len(), 2);
    mail.wait_for_messages(SURVEY, "Behandlet", 2, long).await;
    stop(d, shutdown).await;

    // What Exchange does with mail sent through SMTP AUTH; and a person's own mail.
    for inv in &invitations {
        mail.append(SURVEY, "Sent Items", inv.as_bytes(), None)
            .await;
    }
    let own = b"From: undersoegelse@siri.test\r\nTo: kollega@siri.test\r\nSubject: frokost\r\nMessage-ID: <own-1@siri.test>\r\n\r\nKl. 12?\r\n";
    mail.append(SURVEY, "Sent Items", own, None).await;
    let texts = |v: Vec<Vec<u8>>| -> Vec<String> {
        v.iter()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect()
    };
    let cfg = path.to_str().unwrap();

    // forget: their sent copy and the trigger naming them go; nothing else.
    let out = common::canvass(&["forget", a, "--config", cfg]);
    let text = common::stdout(&out);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("mailbox: deleted 1 sent copies in \"Sent Items\""),
        "{text}"
    );
    assert!(
        text.contains("mailbox: deleted 1 processed mail in \"Behandlet\""),
        "{text}"
    );
    let sent = texts(mail.fetch_all(SURVEY, "Sent Items").await);
    assert_eq!(sent.len(), 2, "b's copy and the person's own mail");
    assert!(sent.iter().all(|m| !m.contains(a)));
    assert!(sent.iter().any(|m| m.contains("<own-1@siri.test>")));
    let processed = texts(mail.fetch_all(SURVEY, "Behandlet").await);
    assert_eq!(processed.len(), 1);
    assert!(processed[0].contains(b));

    // purge --dry-run counts, folder by folder; purge --now deletes.
    let out = common::canvass(&["purge", "--now", "--dry-run", "--config", cfg]);
    let text = common::stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("mailbox: would delete 1 sent copies in \"Sent Items\""),
        "{text}"
    );
    assert!(
        text.contains("mailbox: would delete 1 processed mail in \"Behandlet\""),
        "{text}"
    );
    assert_eq!(mail.fetch_all(SURVEY, "Sent Items").await.len(), 2);
    let out = common::canvass(&["purge", "--now", "--json", "--config", cfg]);
    assert!(out.status.success(), "{}", common::stdout(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["mailbox"]["folders"][0]["deleted"], 1, "{json}");
    let sent = texts(mail.fetch_all(SURVEY, "Sent Items").await);
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].contains("<own-1@siri.test>"),
        "only the person's own mail is left"
    );
    assert!(mail.fetch_all(SURVEY, "Behandlet").await.is_empty());
}

/// Once the retention is due, the scheduler sweeps the mailbox by itself,
/// daily, and remembers its last run in the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_sweeps_the_mailbox_daily_once_the_retention_is_due() {
    use canvass::scheduler::{Scheduler, MAILBOX_SWEEP_JOB};
    let mail = stack();
    let dir = tempfile::tempdir().unwrap();
    // The SIRI window: its 30-day retention has long passed.
    let path = config(&mail, dir.path(), ("2024-08-07", "2024-09-20"), "", "");
    let old = Some(chrono::DateTime::parse_from_rfc3339("2024-09-02T10:00:00+02:00").unwrap());
    let copy = |n: u32| {
        format!(
            "From: {SURVEY}\r\nTo: kontakt@kommune.test\r\nSubject: Undersøgelse\r\n\
             Message-ID: <canvass.sched{n}@siri.test>\r\n\r\nhttp://127.0.0.1:9/s/x\r\n"
        )
        .into_bytes()
    };
    let own = b"From: undersoegelse@siri.test\r\nTo: kollega@siri.test\r\nSubject: frokost\r\nMessage-ID: <own-2@siri.test>\r\n\r\nKl. 12?\r\n";
    mail.append(SURVEY, "Sent Items", &copy(1), old).await;
    mail.append(SURVEY, "Sent Items", own, old).await;
    mail.append(
        SURVEY,
        "Behandlet",
        &trigger("sched-t", ANNE, &["kontakt@kommune.test"], true),
        old,
    )
    .await;
    let cfg = Config::load(&path).unwrap();
    let pipeline = Arc::new(canvass::pipeline::Pipeline::open_offline(cfg).unwrap());
    let scheduler = Scheduler {
        pipeline: pipeline.clone(),
    };
    let now = chrono::Utc::now();
    let next = scheduler.tick(now).await.expect("tick");
    assert_eq!(
        mail.fetch_all(SURVEY, "Sent Items").await.len(),
        1,
        "the own mail stays"
    );
    assert!(mail.fetch_all(SURVEY, "Behandlet").await.is_empty());
    let state = pipeline.store.job_state(MAILBOX_SWEEP_JOB).unwrap();
    assert_eq!(state.last, Some(now));
    assert!(next.is_some_and(|t| t <= now + chrono::Duration::days(1)));

    // Not again within the day; again the day after.
    mail.append(SURVEY, "Sent Items", &copy(2), old).await;
    scheduler
        .tick(now + chrono::Duration::hours(1))
        .await
        .expect("tick");
    assert_eq!(mail.fetch_all(SURVEY, "Sent Items").await.len(), 2);
    scheduler
        .tick(now + chrono::Duration::days(1))
        .await
        .expect("tick");
    assert_eq!(mail.fetch_all(SURVEY, "Sent Items").await.len(), 1);
}

/// A trust setting that does not match the mailbox (the server stamps
/// another authserv-id) refuses every trigger: `status` and the daemon's
/// log say so and name the setting, and nobody is invited (issue 12).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trust_setting_that_refuses_most_consultants_mail_is_named_in_status_and_the_log() {
    let mail = stack();
    let contact = "kontakt.t@kommune.test";
    mail.add_user(contact);
    let dir = tempfile::tempdir().unwrap();
    let (s, e) = today_window();
    let trust = r#"authserv_id = "mx.siri.test""#;
    let path = config(&mail, dir.path(), (&s, &e), "", trust);
    let (d, shutdown, _) = start(&path).await;
    for n in 0..3 {
        let mut raw = b"Authentication-Results: mx.outlook.test; dkim=pass header.d=siri.test; dmarc=pass header.from=siri.test\r\n".to_vec();
        raw.extend(trigger(&format!("tw{n}"), ANNE, &[contact], true));
        mail.append(SURVEY, "INBOX", &raw, None).await;
    }
    until("three refusals", &d, Duration::from_secs(20), |s| {
        s.total.refused_unauthenticated == 3
    })
    .await;
    let st = status(&d);
    assert_eq!(st.total.invited, 0);
    let w = st.trust_warning.as_deref().expect("a warning");
    assert!(w.starts_with("3 of the 3 mails from consultants"), "{w}");
    assert!(w.contains(r#"[trust] authserv_id = "mx.siri.test""#), "{w}");
    let text = canvass::analysis::status::render_text(&st);
    assert!(text.contains("\nwarning: 3 of the 3 mails"), "{text}");
    stop(d, shutdown).await;
    // The log says it too, naming the setting: the scheduler's first round
    // in a daemon started on this store (then once a day).
    let daemon = common::process::Daemon::start(&path, "warn,canvass=info");
    let line = tokio::task::spawn_blocking(move || {
        let line = daemon.wait_log("probably does not match this mailbox", 0);
        daemon.stop();
        line
    })
    .await
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(json["level"], "WARN", "{line}");
    assert!(
        json["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("3 of the 3 mails from consultants")),
        "{line}"
    );
    assert_eq!(
        json["setting"], r#"[trust] authserv_id = "mx.siri.test""#,
        "{line}"
    );
}

/// A consultant whose trigger was refused in part (over the per-message cap;
/// another's over the daily cap) gets one reply saying who was and was not
/// invited, and why; a trigger that went through in full gets none; the
/// refusals are counted by reason (issue 12).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_refused_in_part_is_answered_and_a_whole_one_is_not() {
    let mail = stack();
    let contacts = ["k1@kommune.test", "k2@kommune.test", "k3@kommune.test"];
    mail.add_users(&contacts);
    let daily = ["d1@kommune.test", "d2@kommune.test", "d3@kommune.test"];
    mail.add_users(&daily);
    let dir = tempfile::tempdir().unwrap();
    let (s, e) = today_window();
    let path = config(
        &mail,
        dir.path(),
        (&s, &e),
        "max_invitees_per_message = 2\nmax_invitees_per_consultant_per_day = 2",
        "",
    );
    let (d, shutdown, _) = start(&path).await;
    // Through in full: no reply.
    mail.send(
        SOEREN,
        &[contacts[0], SURVEY],
        &trigger("whole", SOEREN, &contacts[..1], true),
    );
    mail.wait_for_messages(contacts[0], "INBOX", 2, Duration::from_secs(20))
        .await;
    // Three contacts, two allowed.
    mail.send(
        ANNE,
        &[contacts[1], contacts[2], SURVEY],
        &trigger(
            "capped",
            ANNE,
            &["k2@kommune.test, k3@kommune.test, k4@kommune.test"],
            true,
        ),
    );
    let replies = from_survey(
        &mail
            .wait_for_messages(ANNE, "INBOX", 1, Duration::from_secs(20))
            .await,
    );
    assert_eq!(replies.len(), 1);
    let r = &body_text(&replies[0]);
    assert!(r.contains("Inviteret til spørgeskemaet (2)"), "{r}");
    assert!(
        r.contains("k4@kommune.test: for mange adresser i én mail"),
        "{r}"
    );
    until("the outbox to drain", &d, Duration::from_secs(20), |s| {
        s.outbox == 0
    })
    .await;
    let st = status(&d);
    assert_eq!(st.total.invited, 3);
    assert_eq!(st.total.refused_over_message_cap, 1);
    // Bo invites two in full (no reply), then a third: over his daily cap.
    // (Not Anne: a second reply to her within 30 s would be held back as a
    // possible mail loop, src/loops.rs.)
    mail.send(
        BO,
        &[daily[0], daily[1], SURVEY],
        &trigger("daily-1", BO, &daily[..2], true),
    );
    mail.wait_for_messages(daily[1], "INBOX", 2, Duration::from_secs(20))
        .await;
    mail.send(
        BO,
        &[daily[2], SURVEY],
        &trigger("daily-2", BO, &daily[2..], true),
    );
    let replies = from_survey(
        &mail
            .wait_for_messages(BO, "INBOX", 1, Duration::from_secs(20))
            .await,
    );
    assert_eq!(replies.len(), 1);
    assert!(
        replies[0].contains("In-Reply-To: <daily-2@siri.test>"),
        "{}",
        replies[0]
    );
    let r = &body_text(&replies[0]);
    assert!(r.contains("d3@kommune.test: over dagens grænse"), "{r}");
    until(
        "the daily cap's refusal",
        &d,
        Duration::from_secs(20),
        |s| s.total.refused_over_daily_cap == 1,
    )
    .await;
    assert_eq!(status(&d).total.invited, 5);
    stop(d, shutdown).await;
    assert!(
        from_survey(&mail.fetch_all(SOEREN, "INBOX").await).is_empty(),
        "no reply for a whole trigger"
    );
    assert_eq!(
        from_survey(&mail.fetch_all(BO, "INBOX").await).len(),
        1,
        "Bo's whole trigger got none"
    );
}

/// The Message-ID of a raw message, without angle brackets.
fn message_id_of(raw: &str) -> String {
    raw.lines()
        .find_map(|l| l.strip_prefix("Message-ID: <"))
        .and_then(|l| l.split_once('>'))
        .map(|(id, _)| id.to_string())
        .expect("a Message-ID")
}

/// Issue 14, item 4. Before: the link came through in a forwarded reply
/// without its scheme, in upper case, percent-encoded or inside a Microsoft
/// 365 Safe Links wrapper; and anyone knowing a canvass Message-ID got any
/// text forwarded from the survey address as if the invitee had written it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_replies_never_carry_the_link_and_say_when_unverified() {
    let mail = stack();
    let (contact, stranger) = ("kontakt@kommune.test", "fremmed@evil.test");
    mail.add_users(&[contact, stranger]);
    let dir = tempfile::tempdir().unwrap();
    let (s, e) = today_window();
    let (d, shutdown, _) = start(&config(&mail, dir.path(), (&s, &e), "", "")).await;
    mail.send(
        ANNE,
        &[contact, SURVEY],
        &trigger("r1", ANNE, &[contact], true),
    );
    let msgs = mail
        .wait_for_messages(contact, "INBOX", 2, Duration::from_secs(20))
        .await;
    let invitation = from_survey(&msgs).remove(0);
    let link = link_in(invitation.as_bytes()).unwrap();
    let token = link.trim_start_matches("/s/").to_string();
    let invitation_id = message_id_of(&invitation);
    let base = "http://127.0.0.1:1";
    let pct: String = token.bytes().map(|b| format!("%{b:02X}")).collect();
    let upper = format!("{base}{link}").to_uppercase();
    let body = format!(
        "Hej, hvad betyder spørgsmål 3?\r\n\r\n\
         Safe Links: https://eur02.safelinks.protection.outlook.com/?url=http%3A%2F%2F127.0.0.1%3A1%2Fs%2F{token}&data=05%7C02%7C&reserved=0\r\n\
         Uden skema: 127.0.0.1:1/s/{token}\r\n\
         Store bogstaver: {upper}\r\n\
         Procent: {base}/s/{pct}\r\n\
         Proofpoint: https://urldefense.com/v3/__{base}/s/{token}__;!!Nmw4Hv0!x$\r\n\
         > Klik her: {base}{link}\r\n"
    );
    let reply = |from: &str, id: &str| {
        format!(
            "Message-ID: <{id}@kommune.test>\r\nFrom: <{from}>\r\nTo: {SURVEY}\r\nIn-Reply-To: <{invitation_id}>\r\nReferences: <{invitation_id}>\r\nSubject: Re: =?utf-8?q?Sp=C3=B8rgeskema?=\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}"
        )
    };
    mail.send(contact, &[SURVEY], reply(contact, "svar-1").as_bytes());
    let forwarded = mail
        .wait_for_messages(ANNE, "INBOX", 1, Duration::from_secs(20))
        .await;
    let text = decoded_text(&forwarded[0]);
    assert!(text.contains("hvad betyder spørgsmål 3?"), "{text}");
    assert_no_token(&text, &token);
    assert!(
        !text.contains("OBS"),
        "the invitee's own reply is verified: {text}"
    );

    // Somebody else who learnt the invitation's Message-ID.
    mail.send(stranger, &[SURVEY], reply(stranger, "svar-2").as_bytes());
    let forwarded = mail
        .wait_for_messages(ANNE, "INBOX", 2, Duration::from_secs(20))
        .await;
    let text = forwarded
        .iter()
        .map(|m| decoded_text(m))
        .find(|t| t.contains(stranger))
        .expect("the stranger's reply forwarded");
    assert!(
        text.contains("OBS: Afsenderen kunne ikke bekræftes"),
        "{text}"
    );
    assert_no_token(&text, &token);
    stop(d, shutdown).await;
}

/// A forwarded mail's subject and text, transfer encoding undone.
fn decoded_text(raw: &[u8]) -> String {
    let msg = mail_parser::MessageParser::default().parse(raw).unwrap();
    let mut t = msg.subject().unwrap_or("").to_string();
    t.push('\n');
    t.push_str(&msg.body_text(0).unwrap_or_default());
    t
}

fn assert_no_token(text: &str, token: &str) {
    let lower = text.to_lowercase();
    assert!(
        !lower.contains(&token.to_lowercase()),
        "the token leaked: {text}"
    );
    assert!(
        !lower.contains(&token[..11].to_lowercase()),
        "half the token leaked: {text}"
    );
    let pct: String = token.bytes().map(|b| format!("%{b:02x}")).collect();
    assert!(!lower.contains(&pct), "the encoded token leaked: {text}");
    assert!(text.contains("[link fjernet]"), "{text}");
}

/// Issue 14, item 6. Before: an autoresponder without `Auto-Submitted` or
/// an out-of-office subject answered each confirmation, and canvass
/// confirmed again: "Re: Re: Re: Re: Re: Re: Re: Telefonkontakt".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_autoresponder_gets_one_confirmation_and_no_loop() {
    let mail = stack();
    let contact = "tlf@kommune.test";
    mail.add_user(contact);
    let dir = tempfile::tempdir().unwrap();
    let (s, e) = today_window();
    let (d, shutdown, _) = start(&config(&mail, dir.path(), (&s, &e), "", "")).await;
    let phone = |id: &str, subject: &str| {
        format!(
            "Message-ID: <{id}@siri.test>\r\nFrom: Bo Jensen <{BO}>\r\nTo: {SURVEY}\r\nSubject: {subject}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{contact}\r\n"
        )
    };
    mail.send(BO, &[SURVEY], phone("loop-1", "Telefonkontakt").as_bytes());
    let inbox = mail
        .wait_for_messages(BO, "INBOX", 1, Duration::from_secs(20))
        .await;
    let confirmation = String::from_utf8_lossy(&inbox[0]).into_owned();
    assert!(confirmation.contains("Subject: Re: Telefonkontakt"));
    let confirmation_id = message_id_of(&confirmation);

    // Bo's autoresponder (no Auto-Submitted, no out-of-office subject or
    // wording: those are ignored as auto-replies before anything else)
    // answers it, once keeping the reference and once keeping only the
    // subject, as cheap autoresponders do.
    let auto = |id: &str, refs: &str| {
        format!(
            "Message-ID: <{id}@siri.test>\r\nFrom: Bo Jensen <{BO}>\r\nTo: {SURVEY}\r\n{refs}Subject: Re: Re: Telefonkontakt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nModtaget med tak.\r\nVenlig hilsen Bo\r\n"
        )
    };
    let refs = format!("In-Reply-To: <{confirmation_id}>\r\nReferences: <loop-1@siri.test> <{confirmation_id}>\r\n");
    mail.send(BO, &[SURVEY], auto("auto-1", &refs).as_bytes());
    mail.send(BO, &[SURVEY], auto("auto-2", "").as_bytes());
    // One that keeps neither: it is told by how fast it came.
    let plain = format!(
        "Message-ID: <auto-3@siri.test>\r\nFrom: Bo Jensen <{BO}>\r\nTo: {SURVEY}\r\nSubject: Tak for din mail\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nJeg svarer hurtigst muligt.\r\n"
    );
    mail.send(BO, &[SURVEY], plain.as_bytes());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !d
        .pipeline
        .metrics
        .render()
        .contains("canvass_loops_total 3\n")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the answers were not taken for loops:\n{}",
            d.pipeline.metrics.render()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // Another consultant's phone contact goes through the same outbox and
    // Postfix after them: once it is confirmed, Bo still has one mail.
    let anne = format!(
        "Message-ID: <loop-anne@siri.test>\r\nFrom: Anne Hansen <{ANNE}>\r\nTo: {SURVEY}\r\nSubject: Telefonkontakt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{contact}\r\n"
    );
    mail.send(ANNE, &[SURVEY], anne.as_bytes());
    mail.wait_for_messages(ANNE, "INBOX", 1, Duration::from_secs(20))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let later = chrono::Utc::now() + chrono::Duration::days(1);
        let (due, _) = d.pipeline.store.outbox_due(later, 10).unwrap();
        if due.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the outbox never drained"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    mail.flush_queue();
    let inbox = mail.fetch_all(BO, "INBOX").await;
    assert_eq!(inbox.len(), 1, "one confirmation per original message");
    assert_eq!(status(&d).total.invited, 1, "the contact was invited once");
    stop(d, shutdown).await;
}

/// A survey mailbox in Microsoft 365 is trusted with one setting: mail that
/// stayed inside the tenant, and mail whose Exchange Online results (no
/// authserv-id) pass DMARC, invite; a forged consultant From is refused, and
/// `canvass explain` says which header it read. The provider's headers are
/// written as Exchange writes them (tenant id invented): Exchange Online
/// cannot be reached from here, the harness's Dovecot and Postfix can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_microsoft_365_mailbox_is_trusted_by_its_own_headers() {
    const TENANT: &str = "5b2c1a9e-3f47-4d0b-9c2e-7a1d4e6f8b30";
    let mail = stack();
    let (inside, outside, victim) = (
        "inde.m365@kommune.test",
        "ude.m365@kommune.test",
        "offer.m365@kommune.test",
    );
    mail.add_users(&[inside, outside, victim]);
    let dir = tempfile::tempdir().unwrap();
    let (s, e) = today_window();
    let path = common::StackConfig {
        window: Some((&s, &e)),
        password: harness::PASSWORD,
        smtp: "pool_size = 2",
        tables: &format!("[mailbox]\nprovider = \"microsoft365\"\ntenant_id = \"{TENANT}\"\n"),
        ..common::StackConfig::new(mail.imap_port(), mail.smtp_port())
    }
    .write(dir.path());
    let with = |headers: String, id: &str, to: &str| {
        let mut v = headers.into_bytes();
        v.extend(trigger(id, ANNE, &[to], true));
        v
    };
    let internal = format!(
        "X-MS-Exchange-Organization-AuthAs: Internal\r\nX-MS-Exchange-CrossTenant-Id: {TENANT}\r\n"
    );
    let exchange_pass = "Authentication-Results: spf=pass (sender IP is 192.0.2.10)\r\n smtp.mailfrom=siri.test; dkim=pass (signature was verified)\r\n header.d=siri.test;dmarc=pass action=none header.from=siri.test;compauth=pass\r\n reason=100\r\n".to_string();
    let forged = "Authentication-Results: spf=fail (sender IP is 203.0.113.66)\r\n smtp.mailfrom=siri.test; dkim=none (message not signed) header.d=none;dmarc=fail\r\n action=quarantine header.from=siri.test;compauth=fail reason=000\r\nAuthentication-Results: dmarc=pass action=none header.from=siri.test\r\nX-MS-Exchange-CrossTenant-Id: 5b2c1a9e-3f47-4d0b-9c2e-7a1d4e6f8b30\r\n".to_string();
    let forged_mail = with(forged, "m365-forged", victim);
    std::fs::write(dir.path().join("forged.eml"), &forged_mail).unwrap();
    let (d, shutdown, _) = start(&path).await;
    mail.append(SURVEY, "INBOX", &with(internal, "m365-in", inside), None)
        .await;
    mail.append(
        SURVEY,
        "INBOX",
        &with(exchange_pass, "m365-out", outside),
        None,
    )
    .await;
    mail.append(SURVEY, "INBOX", &forged_mail, None).await;
    for c in [inside, outside] {
        let got = mail
            .wait_for_messages(c, "INBOX", 1, Duration::from_secs(30))
            .await;
        assert_eq!(from_survey(&got).len(), 1, "{c} is invited");
    }
    until(
        "the forged trigger refused",
        &d,
        Duration::from_secs(20),
        |s| s.total.refused_unauthenticated == 1,
    )
    .await;
    assert_eq!(status(&d).total.invited, 2);
    stop(d, shutdown).await;
    assert!(
        mail.fetch_all(victim, "INBOX").await.is_empty(),
        "the victim is not invited"
    );

    let out = common::canvass(&[
        "explain",
        dir.path().join("forged.eml").to_str().unwrap(),
        "--config",
        path.to_str().unwrap(),
    ]);
    let text = common::stdout(&out);
    assert!(text.contains("REFUSED: the sender could not be authenticated: Exchange Online's Authentication-Results shows neither dmarc=pass nor compauth=pass for siri.test"), "{text}");
    assert!(
        text.contains(&format!(
            "[mailbox] provider = \"microsoft365\", tenant_id = \"{TENANT}\""
        )),
        "{text}"
    );
}

/// A survey mailbox in Google Workspace is trusted with one setting: Gmail's
/// ARC results above its border `Received`, or else its own topmost
/// `Authentication-Results: mx.google.com`, passing for the consultant's
/// domain, invite; a forged consultant From (Gmail says fail; a pass the
/// sender wrote below, and an ARC set below the border) is refused, nobody
/// is invited or answered, and `canvass explain` says which header it read.
/// The headers are written in the order and shape Gmail writes them; Gmail
/// cannot be reached from here, the harness's Dovecot and Postfix can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_google_mailbox_is_trusted_by_gmails_own_results() {
    let mail = stack();
    let (arc, plain, victim) = (
        "arc.google@kommune.test",
        "plain.google@kommune.test",
        "offer.google@kommune.test",
    );
    mail.add_users(&[arc, plain, victim]);
    let dir = tempfile::tempdir().unwrap();
    let (s, e) = today_window();
    let path = common::StackConfig {
        window: Some((&s, &e)),
        password: harness::PASSWORD,
        tables: "[mailbox]\nprovider = \"google\"\n",
        ..common::StackConfig::new(mail.imap_port(), mail.smtp_port())
    }
    .write(dir.path());
    let with = |headers: String, id: &str, to: &str| {
        let mut v = headers.into_bytes();
        v.extend(trigger(id, ANNE, &[to], true));
        v
    };
    // Gmail's border hop, and its results, as it writes them.
    let border = |ip: &str, host: &str| {
        format!(
            "Return-Path: <{ANNE}>\r\nReceived: from {host} ({host}. [{ip}])\r\n        by mx.google.com with ESMTPS id a640c23a62f3a-a7a9f0fab12si1.5.2024.08.12.03.00.03\r\n        for <{SURVEY}>;\r\n        Mon, 12 Aug 2024 03:00:04 -0700 (PDT)\r\n"
        )
    };
    let delivered = format!(
        "Delivered-To: {SURVEY}\r\nReceived: by 2002:a05:7010:b08c:b0:3e1:2a3b:4c5d with SMTP id gq12csp1234567mdb;\r\n        Mon, 12 Aug 2024 03:00:04 -0700 (PDT)\r\n"
    );
    let results = |verdict: &str| {
        format!(
            "mx.google.com;\r\n       dkim={verdict} header.i=@siri.test header.s=google header.b=AbCdEf12;\r\n       spf={verdict} (google.com: domain of {ANNE} designates 209.85.220.41 as permitted sender) smtp.mailfrom={ANNE};\r\n       dmarc={verdict} (p=QUARANTINE sp=QUARANTINE dis=NONE) header.from=siri.test\r\n"
        )
    };
    let arc_set = |verdict: &str| {
        format!(
            "ARC-Seal: i=1; a=rsa-sha256; t=1723456804; cv=none; d=google.com; s=arc-20160816; b=AAAA\r\nARC-Authentication-Results: i=1; {}",
            results(verdict)
        )
    };
    let ar = |verdict: &str| format!("Authentication-Results: {}", results(verdict));
    // Genuine, through Google's own relays: ARC above the border.
    let genuine_arc = format!(
        "{delivered}{}{}{}",
        arc_set("pass"),
        border("209.85.220.41", "mail-sor-f41.google.com"),
        ar("pass")
    );
    // Genuine, from outside Google: only Gmail's Authentication-Results.
    let genuine_plain = format!(
        "{delivered}{}{}",
        border("192.0.2.10", "mx.siri.test"),
        ar("pass")
    );
    // Forged: Gmail says fail; below it the sender's own pass and ARC set.
    let forged = format!(
        "{delivered}{}{}{}{}",
        border("203.0.113.66", "evil.example"),
        ar("fail"),
        ar("pass"),
        arc_set("pass")
    );
    let forged_mail = with(forged, "google-forged", victim);
    std::fs::write(dir.path().join("forged.eml"), &forged_mail).unwrap();
    let (d, shutdown, _) = start(&path).await;
    mail.append(SURVEY, "INBOX", &with(genuine_arc, "google-arc", arc), None)
        .await;
    mail.append(
        SURVEY,
        "INBOX",
        &with(genuine_plain, "google-plain", plain),
        None,
    )
    .await;
    mail.append(SURVEY, "INBOX", &forged_mail, None).await;
    for c in [arc, plain] {
        let got = mail
            .wait_for_messages(c, "INBOX", 1, Duration::from_secs(30))
            .await;
        assert_eq!(from_survey(&got).len(), 1, "{c} is invited");
    }
    until(
        "the forged trigger refused",
        &d,
        Duration::from_secs(20),
        |s| s.total.refused_unauthenticated == 1,
    )
    .await;
    until("the outbox to drain", &d, Duration::from_secs(20), |s| {
        s.outbox == 0
    })
    .await;
    assert_eq!(status(&d).total.invited, 2);
    stop(d, shutdown).await;
    assert!(
        mail.fetch_all(victim, "INBOX").await.is_empty(),
        "the victim is not invited"
    );
    assert!(
        from_survey(&mail.fetch_all(ANNE, "INBOX").await).is_empty(),
        "a refused unauthenticated trigger is never answered"
    );

    let out = common::canvass(&[
        "explain",
        dir.path().join("forged.eml").to_str().unwrap(),
        "--config",
        path.to_str().unwrap(),
    ]);
    let text = common::stdout(&out);
    assert!(
        text.contains("REFUSED: the sender could not be authenticated: mx.google.com's Authentication-Results shows neither dkim=pass nor dmarc=pass for siri.test"),
        "{text}"
    );
    assert!(text.contains("[mailbox] provider = \"google\""), "{text}");
}
