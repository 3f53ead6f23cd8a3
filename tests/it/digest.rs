//! Digests, reminders and bounces against the REAL Postfix and Dovecot: a
//! scripted scenario over several regions (a duplicate CC, a contact whose
//! mailbox does not exist so the real Postfix bounces, two answers) must give
//! a digest with the right numbers in the managers' mailboxes over IMAP, with
//! a valid PNG chart referenced by the HTML part; reminders then go to exactly
//! the contacts who neither answered nor bounced.

use crate::common;
use crate::harness;

use std::path::Path;
use std::time::Duration;

use canvass::daemon;
use canvass::scheduler::Scheduler;
use common::*;
use harness::MailStack;
use mail_parser::{MessageParser, MimeHeaders};

const SURVEY: &str = "undersoegelse@siri.test";
const ANNE: &str = "anne.hansen@siri.test"; // Sjælland
const SOEREN: &str = "soeren.aagaard@siri.test"; // Syddanmark
const BO: &str = "bo.jensen@siri.test"; // Midtjylland
const LEDER_SJ: &str = "leder.sjaelland@siri.test";
const DIREKTION: &str = "direktion@siri.test";

fn write_config(mail: &MailStack, dir: &Path) -> std::path::PathBuf {
    StackConfig {
        password: harness::PASSWORD,
        tables: &format!(
            "[digest]\nmanagers = [\"{DIREKTION}\"]\n\n[reminders]\nafter_days = 7\nmax = 1\n"
        ),
        ..StackConfig::new(mail.imap_port(), mail.smtp_port())
    }
    .write(dir)
}

fn trigger(id: &str, from: &str, to: &[&str], cc: &[&str]) -> Vec<u8> {
    format!(
        "Message-ID: <{id}@siri.test>\r\nFrom: <{from}>\r\nTo: {}\r\nCc: {}\r\nSubject: Opfølgning\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nHej.\r\n",
        to.join(", "),
        cc.join(", ")
    )
    .into_bytes()
}

fn invitations_in(msgs: &[Vec<u8>]) -> Vec<Vec<u8>> {
    msgs.iter()
        .filter(|m| {
            let t = String::from_utf8_lossy(m);
            t.contains("Message-ID: <canvass.") && t.contains(SURVEY)
        })
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_numbers_chart_reminders_and_a_real_bounce() {
    let mail = MailStack::start();
    let contacts = [
        "c1@kommune.test",
        "c2@kommune.test",
        "c3@kommune.test",
        "c4@politi.test",
        "c5@politi.test",
    ];
    mail.add_users(&[SURVEY, ANNE, SOEREN, BO, LEDER_SJ, DIREKTION]);
    mail.add_users(&contacts);
    let dir = tempfile::tempdir().unwrap();
    let (d, shutdown) = common::start_in_process(&write_config(&mail, dir.path())).await;
    let web = d.web_addr.to_string();

    // Sjælland: c1, c2, c3. Syddanmark: c4, c5 and c1 again. Midtjylland: a
    // contact whose mailbox does not exist (the real Postfix bounces it).
    mail.send(
        ANNE,
        &[
            "c1@kommune.test",
            "c2@kommune.test",
            "c3@kommune.test",
            SURVEY,
        ],
        &trigger(
            "d1",
            ANNE,
            &["c1@kommune.test", "c2@kommune.test"],
            &["c3@kommune.test", SURVEY],
        ),
    );
    // c1 belongs to Anne's region: her trigger is processed before Søren's
    // is sent (Postfix may otherwise deliver his first under load).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while canvass::control::current_status(&d.pipeline)
        .unwrap()
        .total
        .invited
        < 3
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Anne's trigger was not processed"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    mail.send(
        SOEREN,
        &[
            "c4@politi.test",
            "c5@politi.test",
            "c1@kommune.test",
            SURVEY,
        ],
        &trigger(
            "d2",
            SOEREN,
            &["c4@politi.test", "C5@Politi.test"],
            &["c1@kommune.test", SURVEY],
        ),
    );
    mail.send(
        BO,
        &[SURVEY],
        &trigger("d3", BO, &["ukendt@kommune.test"], &[SURVEY]),
    );

    let mut links = std::collections::HashMap::new();
    for c in contacts {
        let n = if c == "c1@kommune.test" { 3 } else { 2 }; // c1 got two consultants' mails
        let msgs = mail
            .wait_for_messages(c, "INBOX", n, Duration::from_secs(30))
            .await;
        let inv = invitations_in(&msgs);
        assert_eq!(inv.len(), 1, "{c}: exactly one invitation");
        links.insert(c, link_in(&inv[0]).unwrap());
    }
    // The bounce from the real Postfix marks Midtjylland's invitation bounced.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let st = canvass::control::current_status(&d.pipeline).unwrap();
        if st.total.bounced == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bounce was not recognised:\n{}",
            canvass::analysis::status::render_text(&st)
        );
        mail.flush_queue();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // c1 (Sjælland) and c4 (Syddanmark) answer.
    for c in ["c1@kommune.test", "c4@politi.test"] {
        let (w, l) = (web.clone(), links[c].clone());
        let (status, _, body) = tokio::task::spawn_blocking(move || {
            http(
                &w,
                "POST",
                &l,
                "application/x-www-form-urlencoded",
                &form_body(&complete_answer()),
            )
        })
        .await
        .unwrap();
        assert_eq!(status, 200, "{body}");
    }

    // The digest, now.
    let sched = Scheduler {
        pipeline: d.pipeline.clone(),
    };
    assert_eq!(
        sched.queue_digests(chrono::Utc::now(), false).unwrap(),
        6,
        "five regional managers + direktion"
    );
    d.pipeline.wake_outbox();
    let got = mail
        .wait_for_messages(DIREKTION, "INBOX", 1, Duration::from_secs(30))
        .await;
    let msg = MessageParser::default().parse(&got[0]).unwrap();
    let text = msg.body_text(0).unwrap().into_owned();
    let row = |region: &str| -> Vec<String> {
        text.lines()
            .find(|l| l.starts_with(region))
            .unwrap_or_else(|| panic!("no row for {region} in:\n{text}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    // Region Inviteret Leveret Returneret Frameldt Svar Svar/invit. Svar/leveret ...
    assert_eq!(
        row("Sjælland")[1..7],
        ["3", "3", "0", "0", "1", "33"],
        "{text}"
    );
    assert_eq!(
        row("Syddanmark")[1..7],
        ["2", "2", "0", "0", "1", "50"],
        "{text}"
    );
    assert_eq!(row("Midtjylland")[1..4], ["1", "0", "1"], "{text}");
    assert_eq!(
        row("I alt")[2..8],
        ["6", "5", "1", "0", "2", "33"],
        "{text}"
    );
    // HTML references the chart by cid, and the chart is a real PNG.
    let html = msg.body_html(0).unwrap().into_owned();
    assert!(html.contains("cid:svarprocent"), "{html}");
    let png = msg
        .parts
        .iter()
        .find(|p| p.content_id() == Some("svarprocent"))
        .expect("the inline chart part")
        .contents()
        .to_vec();
    let decoder = png::Decoder::new(std::io::Cursor::new(&png));
    let info = decoder.read_info().expect("a valid PNG").info().clone();
    assert!(info.width >= 400 && info.height >= 200);

    // The Sjælland manager sees Sjælland and the totals only.
    let got = mail
        .wait_for_messages(LEDER_SJ, "INBOX", 1, Duration::from_secs(30))
        .await;
    let text = MessageParser::default()
        .parse(&got[0])
        .unwrap()
        .body_text(0)
        .unwrap()
        .into_owned();
    assert!(text.lines().any(|l| l.starts_with("Sjælland")));
    assert!(!text.lines().any(|l| l.starts_with("Syddanmark")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("I alt")));
    // Its total is of what it sees: every column adds up.
    let cols = |region: &str| -> Vec<String> {
        text.lines()
            .find(|l| l.starts_with(region))
            .unwrap()
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(cols("Sjælland")[1..7], cols("I alt")[2..8], "{text}");

    // Reminders, as of a week later: exactly c2, c3 and c5.
    assert_eq!(
        sched
            .queue_reminders(chrono::Utc::now() + chrono::Duration::days(8))
            .unwrap(),
        3
    );
    d.pipeline.wake_outbox();
    for c in ["c2@kommune.test", "c3@kommune.test", "c5@politi.test"] {
        let msgs = mail
            .wait_for_messages(c, "INBOX", 3, Duration::from_secs(30))
            .await;
        let ours = invitations_in(&msgs);
        assert_eq!(ours.len(), 2, "{c}: invitation + reminder");
        assert_eq!(link_in(&ours[1]).unwrap(), links[c], "{c}: the same link");
    }
    for c in ["c1@kommune.test", "c4@politi.test"] {
        let msgs = mail.fetch_all(c, "INBOX").await;
        assert_eq!(invitations_in(&msgs).len(), 1, "{c} answered: no reminder");
    }
    shutdown.trigger();
    d.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opt_out_question_and_out_of_office_replies() {
    let mail = MailStack::start();
    let (optout, asker, away) = (
        "afmeld@kommune.test",
        "spoerger@kommune.test",
        "ferie@kommune.test",
    );
    mail.add_users(&[
        SURVEY, ANNE, SOEREN, BO, LEDER_SJ, DIREKTION, optout, asker, away,
    ]);
    let dir = tempfile::tempdir().unwrap();
    let (d, shutdown) = common::start_in_process(&write_config(&mail, dir.path())).await;
    let web = d.web_addr.to_string();

    mail.send(
        ANNE,
        &[optout, asker, away, SURVEY],
        &trigger("o1", ANNE, &[optout, asker, away], &[SURVEY]),
    );
    let mut invitation = std::collections::HashMap::new();
    for c in [optout, asker, away] {
        let msgs = mail
            .wait_for_messages(c, "INBOX", 2, Duration::from_secs(30))
            .await;
        let inv = invitations_in(&msgs).remove(0);
        let id = MessageParser::default()
            .parse(&inv)
            .unwrap()
            .message_id()
            .unwrap()
            .to_string();
        invitation.insert(c, (id, link_in(&inv).unwrap()));
    }
    let reply = |from: &str, subject: &str, extra: &str, body: &str| {
        let (id, _) = &invitation[from];
        format!(
            "Message-ID: <r-{from}>\r\nFrom: <{from}>\r\nTo: {SURVEY}\r\nSubject: {subject}\r\nIn-Reply-To: <{id}>\r\nReferences: <{id}>\r\n{extra}Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n"
        )
        .into_bytes()
    };
    // The List-Unsubscribe mailto: subject "afmeld", empty body.
    mail.send(optout, &[SURVEY], &reply(optout, "afmeld", "", ""));
    // A question, quoting the invitation (which itself says "afmeld").
    let quoted = "Hvem kan jeg kontakte om sagen fra i går?\r\n\r\n> Ønsker du ikke at deltage, kan du svare på denne mail med ordet \"afmeld\".";
    mail.send(
        asker,
        &[SURVEY],
        &reply(
            asker,
            "Re: Hvad synes du om SIRIs sikkerhedskonsulentordning?",
            "",
            quoted,
        ),
    );
    // An out-of-office reply.
    mail.send(
        away,
        &[SURVEY],
        &reply(
            away,
            "Automatisk svar: Hvad synes du om SIRIs sikkerhedskonsulentordning?",
            "Auto-Submitted: auto-replied\r\n",
            "Jeg er på ferie til 1. september.",
        ),
    );

    // The question reaches the consultant, the link in the quote redacted.
    let fwd = mail
        .wait_for_messages(ANNE, "INBOX", 1, Duration::from_secs(30))
        .await;
    let fwd = MessageParser::default().parse(&fwd[0]).unwrap();
    assert!(fwd.subject().unwrap().contains(asker));
    assert_eq!(
        fwd.reply_to()
            .and_then(|r| r.first())
            .and_then(|a| a.address()),
        Some(asker)
    );
    let text = fwd.body_text(0).unwrap().into_owned();
    assert!(text.contains("Hvem kan jeg kontakte"), "{text}");
    let token = invitation[asker].1.trim_start_matches("/s/").to_string();
    assert!(!text.contains(&token));

    // The opt-out is counted once, its link shows a polite page, and it gets no reminder.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let st = canvass::control::current_status(&d.pipeline).unwrap();
        if st.total.opted_out == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "opt-out not applied:\n{}",
            canvass::analysis::status::render_text(&st)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The link says so, and offers to answer anyway (an opt-out is not final).
    let (w, l) = (web.clone(), invitation[optout].1.clone());
    let (status, body) = tokio::task::spawn_blocking(move || http_get(&w, &l))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("frameldt"), "{body}");
    assert!(body.contains("?svar=alligevel"), "{body}");
    let (w, l) = (
        web.clone(),
        format!("{}?svar=alligevel", invitation[optout].1),
    );
    let (status, body) = tokio::task::spawn_blocking(move || http_get(&w, &l))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("<form"), "{body}");
    let sched = Scheduler {
        pipeline: d.pipeline.clone(),
    };
    assert_eq!(
        sched
            .queue_reminders(chrono::Utc::now() + chrono::Duration::days(8))
            .unwrap(),
        2,
        "asker and away, not the opt-out"
    );
    // Nobody answered the out-of-office reply or the opt-out.
    assert!(mail.fetch_all(away, "INBOX").await.len() <= 2);
    let st = canvass::control::current_status(&d.pipeline).unwrap();
    assert_eq!(st.total.opted_out, 1);
    shutdown.trigger();
    d.wait().await.unwrap();
}

/// Waits until the daemon's status satisfies `done`, flushing Postfix's
/// queue meanwhile (a bounce waits there until it is tried).
async fn until_status(
    d: &daemon::Daemon,
    mail: &MailStack,
    what: &str,
    done: impl Fn(&canvass::analysis::status::Status) -> bool,
) -> canvass::analysis::status::Status {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let st = canvass::control::current_status(&d.pipeline).unwrap();
        if done(&st) {
            return st;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}:\n{}",
            canvass::analysis::status::render_text(&st)
        );
        mail.flush_queue();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Issue 13 and 14.3 against the real Postfix and Dovecot: a real Postfix
/// bounce, an expired delivery (`Action: failed`, 4.4.7), an ARF complaint,
/// an unreadable message (quarantined over IMAP), and two forgeries that
/// must change nothing: "afmeld" From an invitee with no Message-ID
/// reference, and a DSN from MAILER-DAEMON@evil.example naming an invitee.
/// Reminders then go only to the one invitee none of that touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn return_mail_bounces_expiry_complaints_forgeries_and_quarantine() {
    let mail = MailStack::start();
    let (expired, complainer, victim, ghost) = (
        "udloebet@kommune.test",
        "klager@kommune.test",
        "offer@kommune.test",
        "findesikke@kommune.test",
    );
    mail.add_users(&[
        SURVEY, ANNE, SOEREN, BO, LEDER_SJ, DIREKTION, expired, complainer, victim,
    ]);
    let dir = tempfile::tempdir().unwrap();
    let (d, shutdown) = common::start_in_process(&write_config(&mail, dir.path())).await;

    mail.send(
        ANNE,
        &[expired, complainer, victim, ghost, SURVEY],
        &trigger("r1", ANNE, &[expired, complainer, victim, ghost], &[SURVEY]),
    );
    let mut message_id = std::collections::HashMap::new();
    for c in [expired, complainer, victim] {
        let msgs = mail
            .wait_for_messages(c, "INBOX", 2, Duration::from_secs(30))
            .await;
        let inv = invitations_in(&msgs).remove(0);
        let id = MessageParser::default()
            .parse(&inv)
            .unwrap()
            .message_id()
            .unwrap()
            .to_string();
        message_id.insert(c, id);
    }
    // 1. The real Postfix bounce for the mailbox that does not exist.
    until_status(&d, &mail, "the real bounce was not recognised", |st| {
        st.total.bounced == 1
    })
    .await;

    // 2. The remote server gave up: Action: failed with 4.4.7, the original's
    //    headers returned. Counted as expired, with the bounces.
    let dsn = format!(
        "From: MAILER-DAEMON@mx.kommune.test (Mail Delivery System)\r\nTo: {SURVEY}\r\nSubject: Undelivered Mail Returned to Sender\r\nMessage-ID: <expired-1@mx.kommune.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nThe message expired: giving up.\r\n\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.kommune.test\r\n\r\nFinal-Recipient: rfc822; {expired}\r\nAction: failed\r\nStatus: 4.4.7\r\nDiagnostic-Code: X-Postfix; message expired\r\n\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <{}>\r\nTo: {expired}\r\n\r\n--B--\r\n",
        message_id[expired]
    );
    mail.send("", &[SURVEY], dsn.as_bytes());
    // 3. An ARF spam complaint returning the complainer's invitation.
    let arf = format!(
        "From: feedback@fbl.kommune.test\r\nTo: {SURVEY}\r\nSubject: Abuse report\r\nMessage-ID: <arf-1@fbl.kommune.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=\"F\"\r\n\r\n--F\r\nContent-Type: text/plain\r\n\r\nA user marked this as spam.\r\n\r\n--F\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nVersion: 1\r\n\r\n--F\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <{}>\r\nTo: {complainer}\r\n\r\n--F--\r\n",
        message_id[complainer]
    );
    mail.send("feedback@fbl.kommune.test", &[SURVEY], arf.as_bytes());
    // 4. Forged: "afmeld" From the victim, referring to nothing of ours.
    let forged_opt_out = format!(
        "From: <{victim}>\r\nTo: {SURVEY}\r\nSubject: afmeld\r\nMessage-ID: <forged-optout@evil.example>\r\n\r\nafmeld\r\n"
    );
    mail.send(
        "attacker@example.test",
        &[SURVEY],
        forged_opt_out.as_bytes(),
    );
    // 5. Forged: a DSN from evil.example naming the victim, no Message-ID.
    let forged_dsn = format!(
        "From: MAILER-DAEMON@evil.example\r\nTo: {SURVEY}\r\nSubject: Undelivered Mail Returned to Sender\r\nMessage-ID: <forged-dsn@evil.example>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.evil.example\r\n\r\nFinal-Recipient: rfc822; {victim}\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n--B--\r\n"
    );
    mail.send("", &[SURVEY], forged_dsn.as_bytes());
    // 6. Bytes that are no message at all, appended over IMAP.
    mail.append(
        SURVEY,
        "INBOX",
        b"\x00\x01garbage without any header\r\n",
        None,
    )
    .await;

    let st = until_status(&d, &mail, "return mail not counted", |st| {
        st.returns.expired == 1
            && st.returns.complained == 1
            && st.returns.quarantined == 1
            && st.returns.unproven == 1
            && st.returns.replies_forwarded == 1
    })
    .await;
    assert_eq!(st.returns.bounced, 1, "the forged DSN marked nobody");
    assert_eq!(
        st.returns.opted_out, 0,
        "the forged opt-out opted nobody out"
    );
    assert_eq!(st.total.delivered, st.total.sent - 2);
    let text = canvass::analysis::status::render_text(&st);
    assert!(text.contains("quarantined"), "{text}");
    // The unreadable message is in the quarantine folder, not left unread.
    let q = mail
        .wait_for_messages(SURVEY, "Quarantine", 1, Duration::from_secs(30))
        .await;
    assert!(String::from_utf8_lossy(&q[0]).contains("garbage"));
    // The forged opt-out went to the consultant as a reply a person reads.
    let fwd = mail
        .wait_for_messages(ANNE, "INBOX", 1, Duration::from_secs(30))
        .await;
    assert!(fwd
        .iter()
        .any(|m| String::from_utf8_lossy(m).contains(victim)));
    // Reminders: only the victim (the ghost bounced, one expired, one complained).
    let sched = Scheduler {
        pipeline: d.pipeline.clone(),
    };
    assert_eq!(
        sched
            .queue_reminders(chrono::Utc::now() + chrono::Duration::days(8))
            .unwrap(),
        1
    );
    // The digest shows the return mail by kind.
    let digest = canvass::analysis::digest::render_text(&canvass::analysis::digest::compute(
        &st,
        &[],
        None,
        &canvass::window::Window {
            start: chrono::Utc::now().date_naive() - chrono::Duration::days(1),
            end: chrono::Utc::now().date_naive() + chrono::Duration::days(1),
        },
        chrono::Utc::now().date_naive(),
        &[],
        false,
    ));
    assert!(digest.contains("Spamklager (frameldt): 1"), "{digest}");
    assert!(digest.contains("I karantæne (ulæselige): 1"), "{digest}");
    shutdown.trigger();
    d.wait().await.unwrap();
}

/// A delivery report as canvass' own outbound server (`smtp.siri.test`)
/// writes it, naming `to`, delivered through the border `mx.siri.test`:
/// `above` is what stands above the border's `Received`, `below` what the
/// message brought with it.
fn outbound_report(id: &str, from: &str, via: &str, above: &str, below: &str, to: &str) -> Vec<u8> {
    format!(
        "{above}Received: from {via} ({via} [198.51.100.20])\r\n\tby mx.siri.test (Postfix) with ESMTPS id {id}\r\n\tfor <{SURVEY}>; Mon, 12 Aug 2024 10:05:01 +0200\r\n{below}From: Mail Delivery System <{from}>\r\nTo: {SURVEY}\r\nSubject: Undelivered Mail Returned to Sender\r\nMessage-ID: <{id}@{via}>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nThis is the mail system at host smtp.siri.test.\r\n\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; smtp.siri.test\r\n\r\nFinal-Recipient: rfc822; {to}\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 <{to}>: Recipient address rejected: User unknown\r\n\r\n--B--\r\n"
    )
    .into_bytes()
}

/// Starts the daemon with these `[trust]` lines and extra `tables` (Anne,
/// Søren, Bo and the managers as users) and invites `invitees` by hand in
/// Sjælland, waiting until each has the invitation.
async fn start_trusted_and_invite(
    mail: &MailStack,
    dir: &Path,
    trust: &str,
    tables: &str,
    invitees: &[&str],
) -> (daemon::Daemon, canvass::shutdown::Shutdown) {
    let mut users = vec![SURVEY, ANNE, SOEREN, BO, LEDER_SJ, DIREKTION];
    users.extend_from_slice(invitees);
    mail.add_users(&users);
    let path = StackConfig {
        password: harness::PASSWORD,
        trust,
        tables,
        ..StackConfig::new(mail.imap_port(), mail.smtp_port())
    }
    .write(dir);
    let (d, shutdown) = common::start_in_process(&path).await;
    let list: Vec<String> = invitees.iter().map(|a| a.to_string()).collect();
    d.pipeline.invite_manual(&list, "Sjælland").unwrap();
    for c in invitees {
        mail.wait_for_messages(c, "INBOX", 1, Duration::from_secs(30))
            .await;
    }
    (d, shutdown)
}

/// The addresses of the invitations `which` holds for.
fn addresses_where(
    d: &daemon::Daemon,
    which: impl Fn(&canvass::store::Invitation) -> bool,
) -> Vec<String> {
    d.pipeline
        .store
        .invitations()
        .map(|i| i.unwrap())
        .filter(|i| which(i))
        .filter_map(|i| i.address.map(|a| a.to_string()))
        .collect()
}

/// Issue 14.3: "a report of the configured outbound server" must come from
/// it. Its `Reporting-MTA` line is the report's own text, and the server's
/// name is in every invitation's `Received`: a forged DSN from outside that
/// names it, or carries a "pass" for it below the border's own result,
/// marks nobody (counted unproven); the server's own report, vouched for by
/// the border's Authentication-Results, marks the address it names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_naming_our_outbound_server_counts_only_when_it_came_from_it() {
    let mail = MailStack::start();
    let (victim, gone) = ("offer@kommune.test", "forsvundet@kommune.test");
    let dir = tempfile::tempdir().unwrap();
    let (d, shutdown) = start_trusted_and_invite(
        &mail,
        dir.path(),
        "authserv_id = \"mx.siri.test\"\noutbound_reporting_mta = [\"smtp.siri.test\"]",
        "",
        &[victim, gone],
    )
    .await;

    let fail = "Authentication-Results: mx.siri.test; spf=fail smtp.helo=mail.evil.test;\r\n\tdmarc=fail header.from=smtp.siri.test\r\n";
    let pass = "Authentication-Results: mx.siri.test; spf=pass smtp.helo=smtp.siri.test;\r\n\tdmarc=pass header.from=smtp.siri.test\r\n";
    let reports = [
        // Forged from outside: the border found nothing for smtp.siri.test.
        outbound_report(
            "f1",
            "MAILER-DAEMON@smtp.siri.test",
            "mail.evil.test",
            fail,
            "",
            victim,
        ),
        // Forged, with a "pass" of its own below the border's result.
        outbound_report(
            "f2",
            "MAILER-DAEMON@smtp.siri.test",
            "mail.evil.test",
            fail,
            pass,
            victim,
        ),
        // Forged from a domain that does pass, but is not our server's.
        outbound_report(
            "f3",
            "MAILER-DAEMON@evil.test",
            "mail.evil.test",
            "Authentication-Results: mx.siri.test; dmarc=pass header.from=evil.test\r\n",
            "",
            victim,
        ),
        // Our outbound server's own report.
        outbound_report(
            "g1",
            "MAILER-DAEMON@smtp.siri.test",
            "smtp.siri.test",
            pass,
            "",
            gone,
        ),
    ];
    for raw in &reports {
        mail.append(SURVEY, "INBOX", raw, None).await;
    }
    let st = until_status(&d, &mail, "the reports were not all read", |st| {
        st.returns.unproven == 3 && st.returns.bounced == 1
    })
    .await;
    assert_eq!(
        st.returns.bounced,
        1,
        "{}",
        canvass::analysis::status::render_text(&st)
    );
    assert_eq!(
        addresses_where(&d, |i| i.bounced),
        [gone],
        "only the genuine report marks anybody"
    );
    shutdown.trigger();
    d.wait().await.unwrap();
}

/// An ARF report from `from`, come in through `via` with the border's
/// `above` fields and the report's own `below` ones, naming `to` in
/// `Original-Rcpt-To` and the returned headers, without any Message-ID of
/// ours (the provider removed it).
fn address_only_complaint(
    id: &str,
    from: &str,
    via: &str,
    above: &str,
    below: &str,
    to: &str,
) -> Vec<u8> {
    format!(
        "{above}Received: from {via} ({via} [198.51.100.30])\r\n\tby mx.siri.test (Postfix) with ESMTPS id {id}\r\n\tfor <{SURVEY}>; Mon, 12 Aug 2024 10:05:01 +0200\r\n{below}From: Feedback Loop <{from}>\r\nTo: {SURVEY}\r\nSubject: Abuse report\r\nMessage-ID: <{id}@{via}>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=\"F\"\r\n\r\n--F\r\nContent-Type: text/plain\r\n\r\nA user marked this as spam.\r\n\r\n--F\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nVersion: 1\r\nOriginal-Rcpt-To: <{to}>\r\n\r\n--F\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: {SURVEY}\r\nTo: {to}\r\n\r\n--F--\r\n"
    )
    .into_bytes()
}

/// Issue 13.4 with 14.3: a complaint naming only the invitee (no canvass
/// Message-ID) opts them out, counted "complained", only when it comes from
/// one of `trust.complaint_senders` and the border's Authentication-Results
/// vouch for its From. The same report forged (the border found no pass; a
/// "pass" of its own below the border's result), or authenticated but from
/// a sender nobody configured, changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complaint_naming_only_the_invitee_counts_only_from_an_authenticated_configured_sender() {
    let mail = MailStack::start();
    let (klager, offer, andet_offer) = (
        "klager@kommune.test",
        "offer@kommune.test",
        "andet.offer@kommune.test",
    );
    let dir = tempfile::tempdir().unwrap();
    let (d, shutdown) = start_trusted_and_invite(
        &mail,
        dir.path(),
        "authserv_id = \"mx.siri.test\"\ncomplaint_senders = [\"fbl@provider.test\"]",
        "[reminders]\nafter_days = 7\nmax = 1\n",
        &[klager, offer, andet_offer],
    )
    .await;

    let fail = "Authentication-Results: mx.siri.test; spf=fail smtp.helo=mail.evil.test;\r\n\tdmarc=fail header.from=provider.test\r\n";
    let pass = "Authentication-Results: mx.siri.test; spf=pass smtp.helo=mail.provider.test;\r\n\tdmarc=pass header.from=provider.test\r\n";
    let reports = [
        // Forged from outside: the border found nothing for provider.test.
        address_only_complaint("c1", "fbl@provider.test", "mail.evil.test", fail, "", offer),
        // Forged, with a "pass" of its own below the border's result.
        address_only_complaint(
            "c2",
            "fbl@provider.test",
            "mail.evil.test",
            fail,
            pass,
            offer,
        ),
        // Authenticated, but from a sender nobody configured.
        address_only_complaint(
            "c3",
            "abuse@evil.test",
            "mail.evil.test",
            "Authentication-Results: mx.siri.test; dmarc=pass header.from=evil.test\r\n",
            "",
            andet_offer,
        ),
        // The configured feedback loop's own report.
        address_only_complaint(
            "g1",
            "fbl@provider.test",
            "mail.provider.test",
            pass,
            "",
            klager,
        ),
    ];
    for raw in &reports {
        mail.append(SURVEY, "INBOX", raw, None).await;
    }
    let reports_read = || {
        d.pipeline
            .store
            .counters()
            .unwrap()
            .iter()
            .filter(|(_, name, _)| name == "complaint_reports")
            .map(|(_, _, n)| *n)
            .sum::<u64>()
    };
    let st = until_status(&d, &mail, "the complaints were not all read", |st| {
        st.returns.complained >= 1 && reports_read() == 4
    })
    .await;
    assert_eq!(
        st.returns.complained,
        1,
        "{}",
        canvass::analysis::status::render_text(&st)
    );
    assert_eq!(st.returns.opted_out, 0, "a complaint is not an opt-out");
    assert_eq!(
        addresses_where(&d, |i| i.opted_out),
        [klager],
        "only the genuine complaint opts out"
    );
    // Reminders: the two whom only forgeries named, not the complainer.
    let sched = Scheduler {
        pipeline: d.pipeline.clone(),
    };
    assert_eq!(
        sched
            .queue_reminders(chrono::Utc::now() + chrono::Duration::days(8))
            .unwrap(),
        2
    );
    shutdown.trigger();
    d.wait().await.unwrap();
}
