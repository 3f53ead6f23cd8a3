//! Faults, against the real Dovecot + Postfix of `tests/it/harness` and the real
//! `canvass` binary:
//!
//! - power cut: SIGKILL while answers and invitations are being written;
//!   after the restart every acknowledged answer (a 200 received) and every
//!   invitation whose trigger was marked processed is there;
//! - disk full under the store (a small tmpfs): no new work is taken, the form
//!   answers 503 "Midlertidig fejl", mail stays unprocessed, nothing
//!   acknowledged is lost, and canvass takes work again once there is space;
//! - a wrong IMAP password: one clear log line for the whole outage while the
//!   retries back off, and recovery once the password file is right;
//! - a broken config on SIGHUP while the IMAP path works: rejected, the old
//!   config keeps working (`tests/it/service.rs` covers the systemd side);
//! - a good config on SIGHUP while SMTP is down: the retries already queued
//!   follow the new retry backoff and sending hours.
//!
//! No fixed sleeps: every wait polls for an event (a log line, a mail, an HTTP
//! answer) with a time-out.

use crate::common;
use crate::harness;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::process::Daemon;
use common::{complete_answer, form_body, link_in, wait_for};
use harness::MailStack;

const SURVEY: &str = "undersoegelse@siri.test";
const ANNE: &str = "anne.hansen@siri.test"; // Sjælland
const STEP: Duration = Duration::from_secs(30);

/// A config for the stack in `dir`; `store` is the store's path.
fn config(mail: &MailStack, dir: &Path, store: &Path, password: &str) -> PathBuf {
    common::StackConfig {
        store: Some(store),
        password,
        ..common::StackConfig::new(mail.imap_port(), mail.smtp_port())
    }
    .write(dir)
}

/// A mail stack with the survey mailbox and Anne, and a config for it in a
/// temp dir (the store beside it) that logs in with `password`.
fn stack(password: &str) -> (MailStack, tempfile::TempDir, PathBuf) {
    let mail = MailStack::start();
    mail.add_users(&[SURVEY, ANNE]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&mail, dir.path(), &dir.path().join("store"), password);
    (mail, dir, cfg)
}

fn trigger(id: &str, to: &str) -> Vec<u8> {
    format!(
        "Message-ID: <{id}@siri.test>\r\nFrom: Anne Hansen <{ANNE}>\r\nTo: {to}\r\nCc: {SURVEY}\r\nSubject: Opfølgning\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHej, tak for snakken.\r\n"
    )
    .into_bytes()
}

/// One HTTP request; `None` when the server is not there (killed).
fn request(addr: &str, method: &str, path: &str, body: &[u8]) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .ok()?;
    s.write_all(body).ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

fn answer(addr: &str, link: &str) -> Option<(u16, String)> {
    request(addr, "POST", link, &form_body(&complete_answer()))
}

fn ctl(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_canvass"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("CANVASS_CONFIG")
        .output()
        .unwrap()
}

fn status_json(config: &Path) -> serde_json::Value {
    let out = ctl(config, &["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Message-IDs (without brackets) of the messages given.
fn message_ids(msgs: &[Vec<u8>]) -> Vec<String> {
    msgs.iter()
        .filter_map(|m| {
            let t = String::from_utf8_lossy(m);
            let l = t
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))?;
            Some(l[11..].trim().trim_matches(['<', '>']).to_string())
        })
        .collect()
}

/// The personal link of the invitation in `user`'s mailbox.
async fn link_of(mail: &MailStack, user: &str) -> String {
    let msgs = mail.wait_for_messages(user, "INBOX", 1, STEP).await;
    link_in(&msgs[0]).expect("a link in the invitation")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_cut_while_writing_loses_nothing_acknowledged() {
    let mail = Arc::new(MailStack::start());
    let answerers: Vec<String> = (0..16)
        .map(|i| format!("svar{i:02}@kommune.test"))
        .collect();
    let triggered: Vec<String> = (0..40).map(|i| format!("ny{i:02}@kommune.test")).collect();
    mail.add_users(&[SURVEY, ANNE]);
    for u in answerers.iter().chain(&triggered) {
        mail.add_user(u);
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        &mail,
        dir.path(),
        &dir.path().join("store"),
        harness::PASSWORD,
    );

    // Invitations for the answerers, made and flushed before the power cut.
    let daemon = Daemon::start(&cfg, "warn,canvass=info");
    let web = daemon.web();
    let mut args = vec!["invite"];
    args.extend(answerers.iter().map(String::as_str));
    args.extend(["--region", "Sjælland"]);
    let out = ctl(&cfg, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut links = Vec::new();
    for a in &answerers {
        links.push(link_of(&mail, a).await);
    }

    // A backlog of triggers arrives over IMAP while answers come in over
    // HTTP, one per trigger processed; the power goes while ingest is still
    // working through the backlog and answers are still being posted.
    let processed_dir = mail
        .root()
        .join("mail/siri.test/undersoegelse/Maildir/.Behandlet");
    let moved = move || {
        ["cur", "new"]
            .iter()
            .map(|d| std::fs::read_dir(processed_dir.join(d)).map_or(0, |r| r.count()))
            .sum::<usize>()
    };
    let cut = Arc::new(AtomicBool::new(false));
    let appender = {
        let (cut, triggered) = (cut.clone(), triggered.clone());
        let mail = Arc::clone(&mail);
        tokio::spawn(async move {
            let mut n = 0;
            for (i, c) in triggered.iter().enumerate() {
                if cut.load(Ordering::Acquire) {
                    break;
                }
                mail.append(SURVEY, "INBOX", &trigger(&format!("cut{i}"), c), None)
                    .await;
                n += 1;
            }
            n
        })
    };
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let poster = {
        let (acked, cut, links, web) = (acked.clone(), cut.clone(), links.clone(), web.clone());
        let moved = moved.clone();
        std::thread::spawn(move || {
            for (i, link) in links.iter().enumerate() {
                // Paced by ingest: answer i once i triggers were processed.
                while moved() < i && !cut.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                if cut.load(Ordering::Acquire) {
                    break;
                }
                if let Some((200, body)) = answer(&web, link) {
                    assert!(body.contains("Tak for dit svar"), "{body}");
                    acked.lock().unwrap().push(link.clone());
                }
            }
        })
    };
    wait_for("triggers processed and answers acknowledged", STEP, || {
        (moved() >= 6 && acked.lock().unwrap().len() >= 3).then_some(())
    });
    daemon.power_cut();
    cut.store(true, Ordering::Release);
    poster.join().unwrap();
    let appended = appender.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    // What was marked processed before the cut had its invitation committed.
    let processed = message_ids(&mail.fetch_all(SURVEY, "Behandlet").await);
    assert!(!processed.is_empty());

    // After the restart: every acknowledged answer and every invitation is there.
    let daemon = Daemon::start(&cfg, "warn,canvass=info");
    let web = daemon.web();
    for link in &acked {
        let (code, body) = request(&web, "GET", link, b"").expect("web up");
        assert_eq!(code, 200, "{body}");
        assert!(
            body.contains("allerede svaret"),
            "acknowledged answer lost: {body}"
        );
    }
    let st = status_json(&cfg);
    assert!(
        st["total"]["answered"].as_u64() >= Some(acked.len() as u64),
        "{st}"
    );
    for id in &processed {
        let i: usize = id
            .trim_start_matches("cut")
            .trim_end_matches("@siri.test")
            .parse()
            .unwrap();
        let out = ctl(&cfg, &["invite", &triggered[i], "--region", "Sjælland"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("already invited  {}", triggered[i])),
            "trigger {id} was marked processed but its invitation is gone: {text}"
        );
    }
    // The rest of the backlog is processed: everyone invited, nobody lost.
    for c in &triggered[..appended] {
        mail.wait_for_messages(c, "INBOX", 1, STEP).await;
    }

    // A broken config on SIGHUP: rejected, the old one keeps working (IMAP path).
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, "[survey\naddress = ").unwrap();
    daemon.signal("HUP");
    let l = daemon.wait_json("the reload rejected", |l| {
        l["message"] == "new configuration rejected; the old one stays in force"
    });
    assert!(
        l["errors"].as_str().is_some_and(|e| e.contains("line")),
        "{l}"
    );
    std::fs::write(&cfg, &good).unwrap();
    let late = &triggered[triggered.len() - 1];
    mail.append(SURVEY, "INBOX", &trigger("after-reload", late), None)
        .await;
    mail.wait_for_messages(late, "INBOX", 1, STEP).await;
    daemon.stop();
}

/// A reload reaches the retries already queued, not only new mail (issue
/// 10): with SMTP down an invitation is retried under `min_retry_seconds =
/// 1`; after a reload with a longer backoff its next retry waits the new
/// backoff, and after a reload with sending hours closed now it waits for
/// them to open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_reaches_queued_retries_with_new_backoff_and_sending_hours() {
    let (mail, _dir, cfg) = stack(harness::PASSWORD);
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains("\nmin_retry_seconds = 1\n"), "{text}");
    mail.stop_smtp();
    let daemon = Daemon::start(&cfg, "warn,canvass=info,canvass::outbox=debug");
    daemon.wait_json("mailbox connected", |l| l["message"] == "mailbox connected");
    mail.append(
        SURVEY,
        "INBOX",
        &trigger("retried", "kontakt@kommune.test"),
        None,
    )
    .await;

    let deferred_after = |mark: usize| {
        wait_for("a deferred invitation", STEP, || {
            daemon
                .json_lines()
                .into_iter()
                .skip(mark)
                .find(|l| l["message"] == "deferred")
        })
    };
    let attempts = |l: &serde_json::Value| l["attempts"].as_u64().expect("attempts") as u32;
    let backoff = |l: &serde_json::Value| l["backoff_seconds"].as_i64().expect("backoff");
    // `timestamp` is RFC 3339; `retry_at` is chrono's Display ("… UTC").
    let utc = |l: &serde_json::Value, key: &str| {
        let text = l[key].as_str().expect("a time");
        chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&chrono::Utc))
            .or_else(|_| {
                chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f UTC")
                    .map(|t| t.and_utc())
            })
            .unwrap_or_else(|e| panic!("{key} of {l}: {e}"))
    };
    let reload = |text: &str| {
        std::fs::write(&cfg, text).unwrap();
        let mark = daemon.json_lines().len();
        daemon.signal("HUP");
        wait_for("the reload", STEP, || {
            daemon
                .json_lines()
                .into_iter()
                .skip(mark)
                .position(|l| l["message"] == "configuration reloaded")
                .map(|i| mark + i + 1)
        })
    };
    let max_minutes = canvass::config::Config::load(&cfg)
        .unwrap()
        .sending
        .max_retry_minutes;
    let delay = |attempts: u32, base: u32| {
        canvass::window::retry_delay(attempts, base, max_minutes).num_seconds()
    };

    // SMTP is down: the invitation is deferred under the backoff at start.
    let first = deferred_after(0);
    assert_eq!(backoff(&first), delay(attempts(&first), 1), "{first}");

    // A longer backoff: the next retry of the same invitation waits it. (A
    // retry decided while the reload ran may still show the old one.)
    let slower = text.replace("\nmin_retry_seconds = 1\n", "\nmin_retry_seconds = 3\n");
    let mark = reload(&slower);
    let mut next = deferred_after(mark);
    if backoff(&next) == delay(attempts(&next), 1) {
        next = deferred_after(daemon.json_lines().iter().position(|l| *l == next).unwrap() + 1);
    }
    assert!(attempts(&next) > attempts(&first), "{next}");
    assert_eq!(backoff(&next), delay(attempts(&next), 3), "{next}");
    assert_ne!(delay(attempts(&next), 3), delay(attempts(&next), 1));

    // Sending hours closed now: the next retry waits for them to open.
    let local = chrono::Utc::now().with_timezone(&canvass::window::TZ);
    let (start, end) = if chrono::Timelike::hour(&local) < 12 {
        ("20:00", "21:00")
    } else {
        ("04:00", "05:00")
    };
    let closed = slower.replace(
        "\nmin_retry_seconds = 3\n",
        &format!("\nmin_retry_seconds = 3\nhours = {{ start = \"{start}\", end = \"{end}\" }}\n"),
    );
    let mark = reload(&closed);
    let mut last = deferred_after(mark);
    if utc(&last, "retry_at") < utc(&last, "timestamp") + chrono::Duration::minutes(30) {
        last = deferred_after(daemon.json_lines().iter().position(|l| *l == last).unwrap() + 1);
    }
    let hours = canvass::config::Config::load(&cfg)
        .unwrap()
        .sending
        .hours
        .expect("sending hours");
    let by_backoff = utc(&last, "timestamp") + chrono::Duration::seconds(backoff(&last));
    let opens = hours.next_open(by_backoff);
    assert!(
        opens > by_backoff + chrono::Duration::minutes(30),
        "closed now"
    );
    let retry_at = utc(&last, "retry_at");
    assert!(
        (retry_at - opens).num_seconds().abs() <= 2,
        "retry at {retry_at}, the hours open at {opens}: {last}"
    );
    daemon.stop();
}

/// A small tmpfs, unmounted on drop.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount tmpfs (needs root)");
        Tmpfs {
            path: path.to_path_buf(),
        }
    }

    /// Writes a file until the file system is full; returns its path.
    fn fill(&self) -> PathBuf {
        let p = self.path.join("filler");
        let mut f = std::fs::File::create(&p).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        p
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_stops_taking_work_and_recovers() {
    let mail = MailStack::start();
    let contacts: Vec<String> = (0..10).map(|i| format!("fuld{i}@kommune.test")).collect();
    let late = "senere@kommune.test";
    mail.add_users(&[SURVEY, ANNE, late]);
    for c in &contacts {
        mail.add_user(c);
    }
    let dir = tempfile::tempdir().unwrap();
    // Declared before the daemon: unmounted after it is gone.
    let fs = Tmpfs::mount(&dir.path().join("storefs"), "16m");
    let cfg = config(&mail, dir.path(), &fs.path.join("store"), harness::PASSWORD);
    let daemon = Daemon::start(&cfg, "warn,canvass=info");
    let web = daemon.web();
    let mut args = vec!["invite"];
    args.extend(contacts.iter().map(String::as_str));
    args.extend(["--region", "Sjælland"]);
    let out = ctl(&cfg, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut links = Vec::new();
    for c in &contacts {
        links.push(link_of(&mail, c).await);
    }
    let mut links = links.into_iter();
    let first = links.next().unwrap();
    assert_eq!(answer(&web, &first).map(|a| a.0), Some(200));
    let mut acked = vec![first];

    // The disk fills up. Answers are thanked only while they can be stored;
    // then 503 "Midlertidig fejl", never a false thank-you.
    let filler = fs.fill();
    let mut refused = None;
    for link in links.by_ref() {
        let (code, body) = answer(&web, &link).expect("web up");
        match code {
            200 => acked.push(link),
            503 => {
                assert!(body.contains("Midlertidig fejl"), "{body}");
                refused = Some(link);
                break;
            }
            other => panic!("{other}: {body}"),
        }
    }
    let refused = refused.expect("no answer was refused although the disk is full");
    let l = daemon.wait_json("the store failure", |l| {
        l["level"] == "ERROR"
            && l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("the store cannot write"))
    });
    assert!(
        l["error"]
            .as_str()
            .is_some_and(|e| e.contains("No space left on device")),
        "{l}"
    );
    // Not taking work: the form is 503 everywhere, mail waits unprocessed.
    wait_for("the form to answer 503", STEP, || {
        matches!(request(&web, "GET", &acked[0], b""), Some((503, ref b)) if b.contains("Midlertidig fejl"))
            .then_some(())
    });
    mail.append(SURVEY, "INBOX", &trigger("while-full", late), None)
        .await;
    daemon.wait_json("the store outage logged", |l| {
        l["message"] == "store unavailable; retrying with backoff"
    });
    assert!(mail.fetch_all(late, "INBOX").await.is_empty());
    let flags = mail.flags(SURVEY, "INBOX").await;
    assert!(
        flags.iter().all(|(_, f)| !f.iter().any(|f| f == "\\Seen")),
        "mail taken while the disk is full: {flags:?}"
    );

    // Space is back: work resumes; the waiting mail is processed.
    std::fs::remove_file(&filler).unwrap();
    daemon.wait_json("recovery", |l| {
        l["message"] == "the store is writable again: taking work again"
    });
    let msgs = mail.wait_for_messages(late, "INBOX", 1, STEP).await;
    assert!(link_in(&msgs[0]).is_some());
    // Nothing acknowledged was lost; the refused answer can be given now.
    for link in &acked {
        let (code, body) = request(&web, "GET", link, b"").expect("web up");
        assert!(
            code == 200 && body.contains("allerede svaret"),
            "{code}: {body}"
        );
    }
    assert_eq!(answer(&web, &refused).map(|a| a.0), Some(200));
    let st = status_json(&cfg);
    assert_eq!(
        st["total"]["answered"].as_u64(),
        Some(acked.len() as u64 + 1),
        "{st}"
    );
    // One error line for the failure, one warning for the outage: no flood.
    let noisy: Vec<_> = daemon
        .json_lines()
        .into_iter()
        .filter(|l| l["message"] == "store unavailable; retrying with backoff")
        .collect();
    assert_eq!(noisy.len(), 1, "{noisy:?}");
    daemon.stop();
    drop(fs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_imap_password_is_one_clear_line_with_backoff() {
    let (_mail, dir, cfg) = stack("forkert-kodeord");
    let daemon = Daemon::start(&cfg, "warn,canvass=info,canvass::backoff=debug");
    // Three refused logins (1 s, then 2 s apart): the retries back off.
    let third = daemon.wait_json("the third refused login", |l| {
        l["message"] == "still unavailable" && l["dependency"] == "mailbox" && l["failures"] == 3
    });
    let lines = daemon.json_lines();
    let at = |l: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(l["timestamp"].as_str().unwrap_or_default()).ok()
    };
    let second = lines
        .iter()
        .find(|l| l["message"] == "still unavailable" && l["failures"] == 2)
        .expect("the second attempt");
    let gap = at(&third).zip(at(second)).map(|(a, b)| a - b);
    assert!(
        gap.is_some_and(|g| g >= chrono::Duration::milliseconds(1500)),
        "no backoff between attempts: {gap:?}"
    );
    // Exactly one warning or error for the whole outage, and it says why.
    let loud: Vec<_> = lines
        .iter()
        .filter(|l| l["level"] == "WARN" || l["level"] == "ERROR")
        .collect();
    assert_eq!(loud.len(), 1, "{loud:#?}");
    assert_eq!(
        loud[0]["message"],
        "mailbox unavailable; retrying with backoff"
    );
    let error = loud[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("refused the login for undersoegelse@siri.test"),
        "{error}"
    );
    assert!(error.contains("password file"), "{error}");
    assert!(
        !error.contains("forkert-kodeord"),
        "the password is never logged: {error}"
    );

    // The password file is fixed: the next retry gets in; one line says so.
    std::fs::write(dir.path().join("imap-password"), harness::PASSWORD).unwrap();
    daemon.wait_json("the mailbox back", |l| l["message"] == "mailbox is back");
    daemon.wait_json("connected", |l| l["message"] == "mailbox connected");
    daemon.stop();
}
