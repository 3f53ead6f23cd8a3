//! Target 2: latency. Triggers are sent one at a time through the real
//! Postfix (SMTP → LMTP → Dovecot); for each we take the moment Postfix
//! accepted it (the end of DATA), then
//!
//! - when a raw IDLE client (a bare socket in IDLE, started before canvass)
//!   hears `* n EXISTS` for the same message delivered to a probe mailbox in
//!   the same SMTP transaction: the mail system's own latency;
//! - when canvass logged the invitation `sent` (after Postfix accepted it and
//!   the store recorded it, so slightly later than the acceptance itself).
//!
//! Both clocks are this machine's wall clock. canvass' p50 must stay within
//! the IDLE client's p50 + 100 ms and its p99 within the IDLE client's p99 +
//! 300 ms (matching percentiles). Each trigger is sent 1.0–1.5 s after the
//! previous invitation went out, so they never overlap and each meets a quiet
//! mailbox (see the note on Dovecot's 0.5 s notification delay below).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};

use crate::harness::{self, MailStack};
use crate::util::{self, ConfigSpec, DaemonProc, Figure, Inbound, LogTail, Opts, Outbound};
use crate::util::{CONSULTANT, CONTACT_USER, SURVEY};

/// The mailbox the raw IDLE client watches: every trigger is also delivered
/// there (one SMTP transaction, one LMTP delivery to both), and nobody moves
/// or flags anything in it, so each `EXISTS` is exactly one new message.
const PROBE: &str = "idle-probe@siri.test";

pub async fn run(opts: &Opts, figures: &mut Vec<Figure>) {
    let n = opts.triggers;
    eprintln!("== 2. latency ({n} triggers through Postfix)");
    let dir = opts.dir.join("latency");
    let _ = std::fs::remove_dir_all(&dir);
    let mail = MailStack::start();
    mail.add_users(&[SURVEY, CONSULTANT, CONTACT_USER, PROBE]);
    util::write_config(
        &dir,
        &ConfigSpec {
            inbound: Inbound::Imap {
                port: mail.imap_port(),
            },
            outbound: Outbound::Smtp {
                port: mail.smtp_port(),
                pool: 4,
            },
            web_port: util::free_port(),
            sending: String::new(),
        },
    );
    let idle = IdleClient::start(mail.imap_port(), PROBE, &dir.join("idle-client.log"));
    let mut daemon = DaemonProc::spawn(&dir, "canvass");
    daemon
        .wait_log("mailbox connected", Duration::from_secs(30))
        .await;
    // Let canvass enter IDLE.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut log = LogTail::new(&daemon.log);
    log.events();

    let mut idle_ms = Vec::new();
    let mut canvass_ms = Vec::new();
    let mut ingest_ms = Vec::new();
    let mut lost = 0;
    let mut rng_state: u64 = 0x2545_f491_4f6c_dd1d;
    let deadline = Instant::now() + Duration::from_secs(60 + 6 * n as u64);
    for i in 0..n {
        if Instant::now() > deadline {
            eprintln!("  note: out of time after {i} triggers");
            break;
        }
        while idle.rx.try_recv().is_ok() {}
        let id = format!("bench-latency-{i}");
        let raw = crate::common::cc_trigger(
            &id,
            CONSULTANT,
            &[&format!("Kontakt <{}>", util::contact(i))],
        );
        let port = mail.smtp_port();
        let accepted = tokio::task::spawn_blocking(move || {
            let r = smtp_send(port, &raw);
            (r, SystemTime::now())
        })
        .await
        .expect("send task");
        let (result, accepted) = accepted;
        if let Err(e) = result {
            panic!("sending trigger {i} through Postfix: {e}");
        }
        let accepted = DateTime::<Utc>::from(accepted);
        let notified = idle
            .rx
            .recv_timeout(Duration::from_secs(15))
            .ok()
            .map(DateTime::<Utc>::from);
        // canvass: the trigger's ingest, then its invitation sent.
        let wait_until = Instant::now() + Duration::from_secs(15);
        let want = format!("{id}@siri.test");
        let mut ingested = None;
        let mut sent = None;
        while sent.is_none() && Instant::now() < wait_until {
            for e in log.events() {
                let msg = e.get("message").and_then(|m| m.as_str()).unwrap_or("");
                let at = e
                    .get("timestamp")
                    .and_then(|t| t.as_str())
                    .and_then(|t| t.parse::<DateTime<Utc>>().ok());
                if msg == "trigger"
                    && e.get("message_id").and_then(|m| m.as_str()) == Some(want.as_str())
                {
                    ingested = at;
                }
                if msg == "sent" && e.get("kind").and_then(|k| k.as_str()) == Some("invitation") {
                    sent = at;
                }
            }
            if sent.is_none() {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        match (notified, sent) {
            (Some(nt), Some(st)) => {
                idle_ms.push(ms(nt - accepted));
                canvass_ms.push(ms(st - accepted));
                if let Some(it) = ingested {
                    ingest_ms.push(ms(it - accepted));
                }
            }
            _ => {
                lost += 1;
                eprintln!(
                    "  note: trigger {i}: IDLE notified {:?}, canvass sent {:?}",
                    notified.is_some(),
                    sent.is_some()
                );
            }
        }
        if (i + 1) % 50 == 0 {
            eprintln!(
                "  {} triggers: canvass p50 {:.0} ms, IDLE p50 {:.0} ms",
                i + 1,
                util::percentile(&canvass_ms, 50.0),
                util::percentile(&idle_ms, 50.0)
            );
        }
        // Spacing: 1.0–1.5 s after the invitation went out. Dovecot tells an
        // IDLE session about a change 0.5 s after it sees the first one (to
        // coalesce), and its own index updates after a notification count as
        // changes: a message arriving within 0.5 s of the last notification
        // is reported early. Spaced this far apart, every trigger meets a
        // quiet mailbox in both sessions.
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        tokio::time::sleep(Duration::from_millis(1000 + rng_state % 500)).await;
    }
    idle.stop();
    let cpu = daemon.cpu_seconds();
    daemon.stop();

    let p = |v: &[f64], q: f64| util::percentile(v, q);
    let (i50, i99) = (p(&idle_ms, 50.0), p(&idle_ms, 99.0));
    let (c50, c99) = (p(&canvass_ms, 50.0), p(&canvass_ms, 99.0));
    util::report(
        figures,
        Figure::at_most(
            "2a",
            "trigger accepted → invitation accepted, p50",
            c50,
            "ms",
            i50 + 100.0,
            &format!("IDLE p50 {} ms + 100", util::num(i50)),
            false,
        ),
    );
    util::report(
        figures,
        Figure::at_most(
            "2b",
            "trigger accepted → invitation accepted, p99",
            c99,
            "ms",
            i99 + 300.0,
            &format!("IDLE p99 {} ms + 300", util::num(i99)),
            false,
        ),
    );
    util::report(
        figures,
        Figure::check(
            "2c",
            "every trigger's invitation seen",
            lost == 0 && canvass_ms.len() == n,
            format!("{} of {n} measured, {lost} lost", canvass_ms.len()),
        ),
    );
    util::report(
        figures,
        Figure::info(
            "2d",
            "latency detail",
            format!(
                "raw IDLE notify p50 {:.0} / p99 {:.0} / max {:.0} ms; canvass: trigger committed p50 {:.0} / p99 {:.0} ms, \
                 invitation sent p50 {:.0} / p99 {:.0} / max {:.0} ms; canvass minus IDLE per trigger p50 {:.0} / p99 {:.0} ms; \
                 daemon CPU {cpu:.2} s",
                i50,
                i99,
                p(&idle_ms, 100.0),
                p(&ingest_ms, 50.0),
                p(&ingest_ms, 99.0),
                c50,
                c99,
                p(&canvass_ms, 100.0),
                p(&differences(&canvass_ms, &idle_ms), 50.0),
                p(&differences(&canvass_ms, &idle_ms), 99.0),
            ),
        ),
    );
}

fn differences(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

fn ms(d: chrono::Duration) -> f64 {
    d.num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0
}

/// One SMTP transaction into Postfix, to the survey address (as a
/// consultant's CC arrives there) and the probe mailbox the raw IDLE client
/// watches; returns the reply to the end of DATA.
fn smtp_send(port: u16, raw: &[u8]) -> Result<String, String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream.set_nodelay(true).ok();
    stream.set_read_timeout(Some(Duration::from_secs(15))).ok();
    let mut w = stream.try_clone().map_err(|e| e.to_string())?;
    let mut r = BufReader::new(stream);
    expect(&mut r, "220")?;
    let mut say = |s: String| w.write_all(s.as_bytes()).map_err(|e| e.to_string());
    say("EHLO bench.canvass.test\r\n".into())?;
    expect(&mut r, "250")?;
    say(format!("MAIL FROM:<{CONSULTANT}>\r\n"))?;
    expect(&mut r, "250")?;
    for rcpt in [SURVEY, PROBE] {
        say(format!("RCPT TO:<{rcpt}>\r\n"))?;
        expect(&mut r, "250")?;
    }
    say("DATA\r\n".into())?;
    expect(&mut r, "354")?;
    let mut data = Vec::with_capacity(raw.len() + 8);
    for line in raw
        .strip_suffix(b"\r\n")
        .unwrap_or(raw)
        .split(|b| *b == b'\n')
    {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first() == Some(&b'.') {
            data.push(b'.');
        }
        data.extend_from_slice(line);
        data.extend_from_slice(b"\r\n");
    }
    data.extend_from_slice(b".\r\n");
    w.write_all(&data).map_err(|e| e.to_string())?;
    let done = expect(&mut r, "250")?;
    let _ = w.write_all(b"QUIT\r\n");
    Ok(done)
}

/// Reads one (multi-line) SMTP reply; an error unless it has `code`.
fn expect(r: &mut BufReader<TcpStream>, code: &str) -> Result<String, String> {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("connection closed".into());
        }
        text.push_str(&line);
        if line.as_bytes().get(3) != Some(&b'-') {
            break;
        }
    }
    if text.starts_with(code) {
        Ok(text)
    } else {
        Err(format!("expected {code}, got {text}"))
    }
}

/// A bare IMAP client idling on INBOX; sends the time of every `EXISTS`.
struct IdleClient {
    rx: mpsc::Receiver<SystemTime>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl IdleClient {
    fn start(port: u16, user: &str, log: &std::path::Path) -> IdleClient {
        let mut log = std::fs::File::create(log).expect("IDLE client log");
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect IMAP");
        stream.set_nodelay(true).ok();
        stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let mut w = stream.try_clone().expect("clone");
        let mut r = BufReader::new(stream);
        let mut line = String::new();
        r.read_line(&mut line).expect("greeting");
        let mut command = |tag: &str, cmd: &str, until: &str| {
            write!(w, "{tag} {cmd}\r\n").expect("write IMAP");
            loop {
                let mut line = String::new();
                assert!(
                    r.read_line(&mut line).expect("read IMAP") > 0,
                    "IMAP closed"
                );
                if line.starts_with(until) {
                    return;
                }
                assert!(
                    !line.starts_with(&format!("{tag} NO"))
                        && !line.starts_with(&format!("{tag} BAD")),
                    "IMAP {cmd}: {line}"
                );
            }
        };
        command("a", &format!("LOGIN {user} {}", harness::PASSWORD), "a OK");
        command("b", "SELECT INBOX", "b OK");
        command("c", "IDLE", "+");
        r.get_ref()
            .set_read_timeout(Some(Duration::from_millis(100)))
            .ok();
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = Vec::new();
            while !stop2.load(Ordering::Relaxed) {
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&buf);
                        let _ = write!(log, "{} {text}", chrono::Utc::now().format("%H:%M:%S%.6f"));
                        if text.starts_with("* ") && text.trim_end().ends_with("EXISTS") {
                            let _ = tx.send(SystemTime::now());
                        }
                        buf.clear();
                    }
                    Err(_) => continue,
                }
            }
            let _ = w.write_all(b"DONE\r\nd LOGOUT\r\n");
        });
        IdleClient {
            rx,
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
