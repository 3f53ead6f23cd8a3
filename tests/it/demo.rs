//! The README's first command: the daemon on the embedded default (Maildir in,
//! .eml files out, sled under ./var) with the shipped samples, run as the real
//! binary from a copy of config/demo.toml.

use crate::common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn demo_config_invites_from_the_shipped_samples() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let cfg_dir = dir.path().join("config");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    let demo = std::fs::read_to_string(root.join("config/demo.toml"))
        .unwrap()
        .replace("bind = \"127.0.0.1:8080\"", "bind = \"127.0.0.1:0\"");
    std::fs::write(cfg_dir.join("demo.toml"), demo).unwrap();
    for survey in ["survey.da.toml", "survey.en.toml"] {
        std::fs::copy(root.join("config").join(survey), cfg_dir.join(survey)).unwrap();
    }
    let log_path = dir.path().join("daemon.log");
    let log = std::fs::File::create(&log_path).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_canvass"))
        .args(["run", "--config"])
        .arg(cfg_dir.join("demo.toml"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "canvass=debug")
        .spawn()
        .unwrap();
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let web = wait_for("the daemon to start", Duration::from_secs(20), || {
        let log = read_log();
        let line = log.lines().find(|l| l.contains("canvass started"))?;
        let at = line.find("web=")? + 4;
        Some(
            line[at..]
                .split_whitespace()
                .next()?
                .trim_matches('"')
                .to_string(),
        )
    });
    let var = dir.path().join("var");
    let sent = var.join("sent");
    let inbox = var.join("inbox");

    deliver(
        &inbox,
        "1.eml",
        &std::fs::read(root.join("config/samples/cc-trigger.eml")).unwrap(),
    );
    let first = wait_for("the first invitation", Duration::from_secs(10), || {
        let f = files_in(&sent);
        (f.len() == 1).then(|| f[0].clone())
    });
    let raw = std::fs::read(&first).unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains("To: soeren.aagaard@naestved.dk"), "{text}");
    assert!(text.contains("Auto-Submitted: auto-generated"));
    assert!(text.contains("Content-Type: text/plain"));
    assert!(text.contains("Content-Type: text/html"));
    let link = link_in(&raw).expect("a link");
    let (status, body) = http_get(&web, &link);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("sikkerhedskonsulentordningen"), "{body}");
    let (status, _) = http_get(&web, "/s/AAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!(status, 404);

    // The same mail again (a second copy) changes nothing; the phone-contact
    // sample invites two more and confirms to the consultant, naming the one
    // already invited.
    deliver(
        &inbox,
        "2.eml",
        &std::fs::read(root.join("config/samples/cc-trigger.eml")).unwrap(),
    );
    deliver(
        &inbox,
        "3.eml",
        &std::fs::read(root.join("config/samples/phone-contact.eml")).unwrap(),
    );
    let all = wait_for(
        "two invitations and a confirmation",
        Duration::from_secs(10),
        || {
            let f = files_in(&sent);
            (f.len() >= 4).then_some(f)
        },
    );
    let texts: Vec<String> = all
        .iter()
        .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned())
        .collect();
    let confirmation = texts
        .iter()
        .find(|t| t.contains("To: bo.jensen@siri.dk"))
        .expect("confirmation");
    let decoded = confirmation
        .replace("=\r\n", "")
        .replace("=C3=A5", "å")
        .replace("=C3=B8", "ø");
    assert!(decoded.contains("soeren.aagaard@naestved.dk"), "{decoded}");
    assert!(decoded.contains("ikke-en-adresse@"), "{decoded}");
    assert_eq!(
        texts
            .iter()
            .filter(|t| t.contains("To: soeren.aagaard@naestved.dk"))
            .count(),
        1
    );

    // A file that is no message (issue 13: never dropped silently): moved
    // to quarantine/ under its own name, and the log names it with its
    // Message-ID (none here) as the operator reads it.
    deliver(&inbox, "kaputt.eml", b"\x00\x01\x02 not a mail\r\n");
    wait_for("the quarantine", Duration::from_secs(10), || {
        inbox
            .join("quarantine")
            .join("kaputt.eml")
            .exists()
            .then_some(())
    });
    let line = wait_for("the quarantine in the log", Duration::from_secs(10), || {
        read_log()
            .lines()
            .find(|l| l.contains("quarantine") && l.contains("kaputt.eml"))
            .map(str::to_string)
    });
    assert!(line.contains("file_or_uid=new/kaputt.eml"), "{line}");
    assert!(line.contains("message_id=-"), "{line}");
    assert!(line.contains("canvass explain"), "{line}");

    // Status through the control socket while the daemon runs.
    let out = canvass(&[
        "status",
        "--json",
        "--config",
        cfg_dir.join("demo.toml").to_str().unwrap(),
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
    assert_eq!(v["total"]["invited"], 3);
    assert_eq!(v["returns"]["quarantined"], 1);

    // SIGTERM: a clean, quick stop.
    unsafe_kill(child.id(), "TERM");
    let status = wait_for("the daemon to exit", Duration::from_secs(15), || {
        child.try_wait().unwrap()
    });
    assert!(status.success(), "{}", read_log());
    let mut s = String::new();
    std::fs::File::open(&log_path)
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    // Privacy: no token in the log.
    let token = link.trim_start_matches("/s/");
    assert!(!s.contains(token), "the log carries a token");
}

fn unsafe_kill(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Issue 13: a file copied into `new/` (not renamed there) is read only once
/// it is complete. 1,000 mails are written into `new/` piece by piece, as
/// `cp` writes them, while the daemon reads the Maildir: every one is read
/// whole (refused as from an unknown sender, the same for all), none is
/// quarantined or lost. Then a file that is no message goes to
/// `quarantine/`, is counted, and `canvass explain` reads it there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_mails_copied_into_new_while_the_daemon_reads_lose_nothing() {
    use std::io::Write;
    const N: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let (s, e) = open_window();
    let cfg_path = file_config(dir.path(), (&s, &e), "");
    let cfg = canvass::config::Config::load(&cfg_path).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shutdown = canvass::shutdown::Shutdown::new();
    let d = canvass::daemon::start(cfg.clone(), listener, shutdown.clone())
        .await
        .unwrap();
    let inbox = dir.path().join("inbox");
    let new = inbox.join("new");
    std::fs::create_dir_all(&new).unwrap();
    let writer = std::thread::spawn(move || {
        for n in 0..N {
            let raw = format!(
                "Message-ID: <copy-{n}@kommune.test>\r\nFrom: <borger{n}@kommune.test>\r\nTo: undersoegelse@siri.test\r\nSubject: Et spørgsmål\r\n\r\nHej, jeg har et spørgsmål om ordningen.\r\n"
            );
            // As `cp` does: the file exists empty first, then grows.
            let mut f = std::fs::File::create(new.join(format!("{n}.eml"))).unwrap();
            for chunk in raw.as_bytes().chunks(24) {
                f.write_all(chunk).unwrap();
                f.flush().unwrap();
                std::thread::yield_now();
            }
        }
    });
    let counters = |name: &str| -> u64 {
        d.pipeline
            .store
            .counters()
            .unwrap()
            .iter()
            .filter(|(_, k, _)| k == name)
            .map(|c| c.2)
            .sum()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while counters("refused_unknown_sender") < N as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {N} read",
            counters("refused_unknown_sender")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    writer.join().unwrap();
    assert_eq!(counters("refused_unknown_sender"), N as u64);
    for other in ["quarantined", "ignored_no_sender", "ignored_unparseable"] {
        assert_eq!(counters(other), 0, "{other}");
    }
    let cur = inbox.join("cur");
    wait_for("every file marked seen", Duration::from_secs(30), || {
        (files_in(&cur).len() == N).then_some(())
    });
    assert!(files_in(&inbox.join("new")).is_empty());

    // A file that is no message: quarantined, counted, explained.
    deliver(&inbox, "kaputt.eml", b"\x00\x01\x02 not a mail\r\n");
    let quarantined = inbox.join("quarantine").join("kaputt.eml");
    wait_for("the quarantine", Duration::from_secs(30), || {
        quarantined.exists().then_some(())
    });
    let st = canvass::control::current_status(&d.pipeline).unwrap();
    assert_eq!(st.returns.quarantined, 1);
    let e = canvass::explain::explain_file(&quarantined, None, &cfg).unwrap();
    assert_eq!(e.decision.label(), "ignored_unparseable");
    assert!(canvass::explain::render_text(&e, &cfg).contains("quarantine"));
    shutdown.trigger();
    d.wait().await.unwrap();
}
