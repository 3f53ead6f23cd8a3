//! Golden tests for `classify`, in the style of the mail-parser crate: every
//! `tests/fixtures/classify/NAME.eml` is classified and the decision, as
//! pretty-printed JSON, must equal `NAME.json` beside it.
//!
//! Conventions:
//! - the message was received at 2024-08-12T10:00:00Z unless `NAME.received`
//!   holds another RFC 3339 time (the window is judged by it, never by Date:);
//! - a case whose name starts with `authserv-` is judged against
//!   `config-authserv.toml` (`[trust] authserv_id = "mx.siri.dk"`), `m365-`
//!   against `config-m365.toml` (`[mailbox] provider = "microsoft365"` with
//!   an invented tenant id), `google-` against `config-google.toml`
//!   (`provider = "google"`), every other case against `config.toml`.
//!
//! `CANVASS_BLESS=1 cargo test --test it classify_fixtures::` writes the `.json`
//! files instead of comparing; read every one you bless. All mismatches are
//! reported at once.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use canvass::classify::{classify_raw, Decision, SkipReason, TriggerKind};
use canvass::config::Config;
use chrono::{DateTime, Utc};

const DEFAULT_RECEIVED: &str = "2024-08-12T10:00:00Z";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/classify")
}

fn load_config(name: &str) -> Config {
    let path = dir().join(name);
    Config::load(&path).unwrap_or_else(|e| panic!("fixture config {name} is invalid:\n{e}"))
}

fn rfc3339(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s.trim())
        .unwrap_or_else(|e| panic!("{s:?} is not an RFC 3339 time: {e}"))
        .with_timezone(&Utc)
}

fn render(decision: &Decision) -> String {
    let mut s = serde_json::to_string_pretty(decision).expect("a Decision serialises");
    s.push('\n');
    s
}

/// A line diff (longest common subsequence) of expected and actual, with a
/// little context around each change.
fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    const CONTEXT: usize = 3;
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != ' ').collect();
    let mut out = String::new();
    let mut last_shown: Option<usize> = None;
    for (k, (op, line)) in ops.iter().enumerate() {
        let near = changed
            .iter()
            .any(|&c| k + CONTEXT >= c && k <= c + CONTEXT);
        if !near {
            continue;
        }
        if let Some(l) = last_shown {
            if k > l + 1 {
                out.push_str("    ...\n");
            }
        }
        let _ = writeln!(out, "  {op} {line}");
        last_shown = Some(k);
    }
    out
}

#[test]
fn fixtures() {
    let bless = std::env::var("CANVASS_BLESS").is_ok_and(|v| v == "1");
    let plain = load_config("config.toml");
    let authserv = load_config("config-authserv.toml");
    let m365 = load_config("config-m365.toml");
    let google = load_config("config-google.toml");
    assert!(plain.trust.authserv_id.is_none());
    assert_eq!(authserv.trust.authserv_id.as_deref(), Some("mx.siri.dk"));

    let mut names: Vec<String> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(dir()).expect("the fixture directory is readable") {
        let path = entry.expect("a directory entry").path();
        let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
            continue;
        };
        if let Some(name) = file.strip_suffix(".eml") {
            names.push(name.to_string());
        } else if let Some(name) = file
            .strip_suffix(".json")
            .or_else(|| file.strip_suffix(".received"))
        {
            if !dir().join(format!("{name}.eml")).exists() {
                problems.push(format!("{file}: there is no {name}.eml beside it"));
            }
        }
    }
    names.sort();
    assert!(
        names.len() >= 40,
        "only {} fixtures found in {}",
        names.len(),
        dir().display()
    );

    let started = Instant::now();
    let mut blessed = 0;
    for name in &names {
        let raw = std::fs::read(dir().join(format!("{name}.eml"))).expect("the .eml is readable");
        let received = match std::fs::read_to_string(dir().join(format!("{name}.received"))) {
            Ok(s) => rfc3339(&s),
            Err(_) => rfc3339(DEFAULT_RECEIVED),
        };
        let cfg = if name.starts_with("authserv-") {
            &authserv
        } else if name.starts_with("m365-") {
            &m365
        } else if name.starts_with("google-") {
            &google
        } else {
            &plain
        };
        let actual = render(&classify_raw(&raw, received, cfg));
        let json_path = dir().join(format!("{name}.json"));
        if bless {
            let old = std::fs::read_to_string(&json_path).unwrap_or_default();
            if old != actual {
                std::fs::write(&json_path, &actual).expect("the .json is writable");
                blessed += 1;
                eprintln!("blessed {name}.json");
            }
            continue;
        }
        match std::fs::read_to_string(&json_path) {
            Err(_) => problems.push(format!(
                "{name}: no {name}.json; the decision is\n{actual}(run with CANVASS_BLESS=1 to write it, then read it)"
            )),
            Ok(expected) if expected != actual => problems.push(format!(
                "{name}: the decision differs from {name}.json (- expected, + actual):\n{}",
                diff(&expected, &actual)
            )),
            Ok(_) => {}
        }
    }
    let elapsed = started.elapsed();
    if bless {
        eprintln!("{blessed} of {} fixture(s) blessed", names.len());
    }
    assert!(
        problems.is_empty(),
        "{} of {} classify fixture(s) failed:\n\n{}",
        problems.len(),
        names.len(),
        problems.join("\n\n")
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "classifying {} fixtures took {elapsed:?}",
        names.len()
    );
}

/// Issue 13's targets over the fixture sets, by name: no auto-reply is
/// forwarded as a reply, no complaint counts as a trigger, every opt-out
/// phrase is recognised (and one only quoted is not), every bounce named
/// `bounce-*` is a bounce, and one that proves nothing (no canvass
/// Message-ID: `bounce-forged-*`, `bounce-without-original`) changes nothing.
#[test]
fn return_mail_targets_by_fixture_name() {
    let cfg = load_config("config.toml");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir()).expect("the fixture directory is readable") {
        let path = entry.expect("a directory entry").path();
        let Some(name) = path
            .file_name()
            .and_then(|f| f.to_str())
            .and_then(|f| f.strip_suffix(".eml"))
            .map(str::to_string)
        else {
            continue;
        };
        let raw = std::fs::read(&path).expect("readable");
        let d = classify_raw(&raw, received(), &cfg);
        let label = d.label();
        let ok = if name.starts_with("auto-reply-") {
            label == "ignored_auto_reply"
        } else if name.starts_with("complaint-") {
            label == "complaint"
        } else if name.starts_with("opt-out-forged-") {
            label == "reply"
        } else if name.starts_with("opt-out-") {
            matches!(d, Decision::OptOut { .. })
        } else if name.starts_with("bounce-forged-") || name == "bounce-without-original" {
            matches!(&d, Decision::Bounce(b) if b.proof.is_none())
        } else if name.starts_with("bounce-") {
            matches!(&d, Decision::Bounce(b) if b.proof.is_some())
        } else if name.starts_with("reply-opt-out") || name.starts_with("reply-afmeld") {
            label == "reply"
        } else {
            continue;
        };
        assert!(ok, "{name}: {d:?}");
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} return-mail fixtures");
}

fn received() -> DateTime<Utc> {
    rfc3339(DEFAULT_RECEIVED)
}

#[test]
fn many_cc_5000() {
    let cfg = load_config("config.toml");
    let cap = cfg.sending.max_invitees_per_message;
    let mut msg = String::from(
        "From: Anne Hansen <anne.hansen@siri.dk>\r\n\
         To: Mette Larsen <mette.larsen@aarhus.dk>\r\n\
         Cc: undersoegelse@siri.dk",
    );
    for i in 0..5000 {
        // Every fifth written in upper case: still one address each.
        let addr = format!("kontakt{i:04}@kommune{}.dk", i % 98);
        let addr = if i % 5 == 0 {
            addr.to_uppercase()
        } else {
            addr
        };
        let _ = write!(msg, ",\r\n \"Kontakt {i}\" <{addr}>");
    }
    msg.push_str(
        "\r\nSubject: Stort udsendelse\r\nDate: Mon, 12 Aug 2024 11:59:30 +0200\r\n\
         Message-ID: <many@siri.dk>\r\n\r\nHej alle\r\n",
    );
    let started = Instant::now();
    let decision = classify_raw(msg.as_bytes(), received(), &cfg);
    let elapsed = started.elapsed();
    let Decision::Invite(t) = decision else {
        panic!("expected an invitation, got {decision:?}");
    };
    assert_eq!(t.kind, TriggerKind::Cc);
    assert_eq!(t.invitees.len(), cap);
    assert_eq!(t.invitees[0].as_str(), "mette.larsen@aarhus.dk");
    assert_eq!(t.invitees[1].as_str(), "kontakt0000@kommune0.dk");
    let over: Vec<_> = t
        .skipped
        .iter()
        .filter(|s| s.why == SkipReason::OverMessageCap)
        .collect();
    assert_eq!(over.len(), 5001 - cap);
    assert_eq!(t.skipped.len(), over.len());
    assert_eq!(
        over.last().map(|s| s.address.as_str()),
        Some("kontakt4999@kommune1.dk")
    );
    assert!(t.invalid.is_empty());
    assert!(
        elapsed < Duration::from_secs(2),
        "5,000 Cc took {elapsed:?}"
    );
}

#[test]
fn message_of_30_mb() {
    let cfg = load_config("config.toml");
    let mut msg = String::from(
        "From: =?utf-8?q?S=C3=B8ren_Aagaard?= <soeren.aagaard@siri.dk>\r\n\
         To: Lars Kristensen <lars.kristensen@odense.dk>\r\n\
         Cc: undersoegelse@siri.dk\r\n\
         Subject: Video fra netvaerksmoedet\r\n\
         Date: Mon, 12 Aug 2024 11:59:30 +0200\r\n\
         Message-ID: <big@siri.dk>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHej Lars, her er videoen.\r\n\
         --b1\r\nContent-Type: video/mp4; name=\"moede.mp4\"\r\n\
         Content-Disposition: attachment; filename=\"moede.mp4\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n",
    );
    // 30 MB of base64 lines (76 characters and CRLF), not all the same.
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut line = [0u8; 76];
    let mut state: u32 = 0x2545_f491;
    while msg.len() < 30 * 1024 * 1024 {
        for c in line.iter_mut() {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            *c = alphabet[(state % 64) as usize];
        }
        msg.push_str(std::str::from_utf8(&line).expect("ASCII"));
        msg.push_str("\r\n");
    }
    msg.push_str("--b1--\r\n");
    let started = Instant::now();
    let decision = classify_raw(msg.as_bytes(), received(), &cfg);
    let elapsed = started.elapsed();
    let Decision::Invite(t) = decision else {
        panic!("expected an invitation, got {decision:?}");
    };
    assert_eq!(t.kind, TriggerKind::Cc);
    assert_eq!(t.consultant.as_str(), "soeren.aagaard@siri.dk");
    let invitees: Vec<&str> = t.invitees.iter().map(|a| a.as_str()).collect();
    assert_eq!(invitees, ["lars.kristensen@odense.dk"]);
    assert!(elapsed < Duration::from_secs(20), "30 MB took {elapsed:?}");
}
