//! canvass as a systemd service, tested on the real binary: the sd_notify
//! messages (READY=1, STATUS=, WATCHDOG=1, RELOADING=1, STOPPING=1) arrive on a
//! NOTIFY_SOCKET this test listens on; SIGHUP reloads (a broken file is
//! rejected, a good one applied); SIGTERM stops cleanly within the bound; and
//! `systemd/canvass.service` passes `systemd-analyze verify` and `security`.
//!
//! Nothing here sleeps for a fixed time: every step waits for an event (a
//! datagram, a log line, the process' exit) with a time-out.

use crate::common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::process::Daemon;
use common::{cc_trigger, deliver, file_config, open_window};

const STARTUP: Duration = Duration::from_secs(30);
const STEP: Duration = Duration::from_secs(15);

/// A NOTIFY_SOCKET: a datagram socket in a temp dir, read by a thread.
struct Notifications {
    path: PathBuf,
    rx: mpsc::Receiver<String>,
    /// Every message received so far, in order.
    seen: Vec<String>,
}

impl Notifications {
    fn bind(dir: &Path) -> Notifications {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf) {
                if tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .is_err()
                {
                    break;
                }
            }
        });
        Notifications {
            path,
            rx,
            seen: Vec::new(),
        }
    }

    /// The next message for which `pred` holds (others are kept in `seen`).
    fn wait(&mut self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(m) => {
                    self.seen.push(m.clone());
                    if pred(&m) {
                        return m;
                    }
                }
                Err(_) => panic!(
                    "timed out after {timeout:?} waiting for {what}; received so far: {:#?}",
                    self.seen
                ),
            }
        }
    }

    /// Takes what has arrived without waiting.
    fn drain(&mut self) {
        while let Ok(m) = self.rx.try_recv() {
            self.seen.push(m);
        }
    }
}

fn has_line(msg: &str, line: &str) -> bool {
    msg.lines().any(|l| l == line)
}

fn status_of(msg: &str) -> Option<&str> {
    msg.lines().find_map(|l| l.strip_prefix("STATUS="))
}

/// `canvass run` with `NOTIFY_SOCKET` and `env`, its stderr collected.
fn start(config: &Path, notify: &Path, env: &[(&str, &str)], log_format: &str) -> Daemon {
    let mut cmd = Daemon::command(config, log_format, "warn,canvass=info");
    cmd.env("NOTIFY_SOCKET", notify);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Daemon::spawn(cmd)
}

/// A config whose invitations wait an hour in the outbox (so the outbox depth
/// in STATUS= shows what ingest did), with `max` invitees per message.
fn config(dir: &Path, max: usize) -> PathBuf {
    let (start, end) = open_window();
    file_config(
        dir,
        (&start, &end),
        &format!("delay_minutes = 60\nmax_invitees_per_message = {max}"),
    )
}

fn status_json(config: &Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_canvass"))
        .arg("--config")
        .arg(config)
        .args(["status", "--json"])
        .env_remove("CANVASS_CONFIG")
        .output()
        .expect("run canvass status");
    assert!(
        out.status.success(),
        "canvass status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

#[test]
fn notify_watchdog_reload_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 20);
    let good = std::fs::read_to_string(&cfg).unwrap();
    let mut notes = Notifications::bind(dir.path());
    let mut daemon = start(&cfg, &notes.path, &[("WATCHDOG_USEC", "200000")], "json");

    // READY=1 once everything is up; the Maildir connects at once, so it says
    // it is ingesting. STATUS= lines came before it (opening the store, …).
    let ready = notes.wait("READY=1", STARTUP, |m| has_line(m, "READY=1"));
    assert_eq!(
        status_of(&ready),
        Some("ingesting; 0 waiting in outbox"),
        "{ready:?}"
    );
    let before: Vec<&str> = notes.seen.iter().filter_map(|m| status_of(m)).collect();
    assert!(
        before.contains(&"opening the store") && before.contains(&"checking outbound mail"),
        "status before READY=1: {before:?}"
    );
    assert!(
        !notes.seen[..notes.seen.len() - 1]
            .iter()
            .any(|m| has_line(m, "READY=1")),
        "READY=1 only once"
    );

    // Keep-alives every 100 ms (half of WATCHDOG_USEC), again and again.
    let first = Instant::now();
    for _ in 0..5 {
        notes.wait("WATCHDOG=1", STEP, |m| has_line(m, "WATCHDOG=1"));
    }
    assert!(
        first.elapsed() < Duration::from_secs(10),
        "5 keep-alives took {:?}",
        first.elapsed()
    );

    // Ingest shows in STATUS=: three invitations wait (delay_minutes = 60).
    deliver(
        &dir.path().join("inbox"),
        "1.eml",
        &cc_trigger(
            "one",
            "mette.larsen@siri.test",
            &["a@kunde.test", "b@kunde.test", "c@kunde.test"],
        ),
    );
    notes.wait("STATUS with 3 in the outbox", STEP, |m| {
        status_of(m) == Some("ingesting; 3 waiting in outbox")
    });

    // SIGHUP with a broken file: rejected, the old config stays, and systemd
    // hears RELOADING=1 … READY=1 (with the rejection in STATUS=).
    std::fs::write(&cfg, "[survey\naddress = ").unwrap();
    let mark = daemon.log_len();
    daemon.signal("HUP");
    notes.wait("RELOADING=1", STEP, |m| has_line(m, "RELOADING=1"));
    let after = notes.wait("READY=1 after the reload", STEP, |m| has_line(m, "READY=1"));
    assert!(
        status_of(&after).is_some_and(|s| s.contains("last reload rejected")),
        "{after:?}"
    );
    daemon.wait_log("new configuration rejected", mark);
    assert!(daemon.running(), "still running");
    // Still serving: `canvass status` reaches it over the control socket (the
    // store is the daemon's: an offline open would fail on sled's lock).
    std::fs::write(&cfg, &good).unwrap();
    let st = status_json(&cfg);
    assert_eq!(st["outbox"], 3, "{st}");
    assert_eq!(st["total"]["invited"], 3, "{st}");
    notes.wait("a keep-alive after the rejected reload", STEP, |m| {
        has_line(m, "WATCHDOG=1")
    });

    // SIGHUP with a good, changed file: applied. One invitee per message now.
    let cfg2 = config(dir.path(), 1);
    assert_eq!(cfg2, cfg);
    let mark = daemon.log_len();
    daemon.signal("HUP");
    notes.wait("RELOADING=1", STEP, |m| has_line(m, "RELOADING=1"));
    let after = notes.wait("READY=1 after the reload", STEP, |m| has_line(m, "READY=1"));
    assert!(
        status_of(&after).is_some_and(|s| !s.contains("rejected")),
        "{after:?}"
    );
    daemon.wait_log("configuration reloaded", mark);
    deliver(
        &dir.path().join("inbox"),
        "2.eml",
        &cc_trigger(
            "two",
            "mette.larsen@siri.test",
            &["d@kunde.test", "e@kunde.test", "f@kunde.test"],
        ),
    );
    notes.wait("STATUS with 4 in the outbox", STEP, |m| {
        status_of(m) == Some("ingesting; 4 waiting in outbox")
    });
    let st = status_json(&cfg);
    assert_eq!(st["total"]["invited"], 4, "{st}");

    // SIGTERM: STOPPING=1, then exit 0 well within the drain bound.
    let stop = Instant::now();
    daemon.signal("TERM");
    notes.wait("STOPPING=1", STEP, |m| has_line(m, "STOPPING=1"));
    let status = daemon.wait_exit(Duration::from_secs(20 + 10));
    assert!(status.success(), "exit status {status:?}");
    assert!(
        stop.elapsed() < Duration::from_secs(20),
        "stopping took {:?}",
        stop.elapsed()
    );
    assert!(
        daemon.log_text().contains("\"stopped\""),
        "{}",
        daemon.log_text()
    );
}

#[test]
fn without_a_watchdog_no_keepalives_and_auto_logs_text() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 20);
    let mut notes = Notifications::bind(dir.path());
    // JOURNAL_STREAM that is not our stderr: `auto` must not pick journald.
    let mut daemon = start(&cfg, &notes.path, &[("JOURNAL_STREAM", "0:1")], "auto");
    notes.wait("READY=1", STARTUP, |m| has_line(m, "READY=1"));
    daemon.wait_log("canvass started", 0);
    daemon.signal("TERM");
    notes.wait("STOPPING=1", STEP, |m| has_line(m, "STOPPING=1"));
    let status = daemon.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "exit status {status:?}");
    notes.drain();
    assert!(
        !notes.seen.iter().any(|m| m.contains("WATCHDOG")),
        "{:#?}",
        notes.seen
    );
    let log = daemon.log_text();
    assert!(
        !log.trim_start().starts_with('{'),
        "text, not JSON or journald: {log}"
    );
}

#[test]
fn journald_falls_back_to_stderr_when_the_journal_is_unreachable() {
    if Path::new("/run/systemd/journal/socket").exists() {
        println!("skipped: a journal runs on this machine, so there is no fallback to see");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 20);
    let mut notes = Notifications::bind(dir.path());
    let mut daemon = start(&cfg, &notes.path, &[], "journald");
    notes.wait("READY=1", STARTUP, |m| has_line(m, "READY=1"));
    daemon.wait_log("journal is unreachable", 0);
    daemon.wait_log("canvass started", 0);
    daemon.signal("TERM");
    assert!(daemon.wait_exit(Duration::from_secs(30)).success());
}

#[test]
fn without_notify_socket_it_runs_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 20);
    let mut cmd = Daemon::command(&cfg, "json", "warn,canvass=info");
    cmd.env("WATCHDOG_USEC", "100000");
    let mut daemon = Daemon::spawn(cmd);
    daemon.wait_log("mailbox connected", 0);
    daemon.signal("TERM");
    assert!(daemon.wait_exit(Duration::from_secs(30)).success());
}

fn systemd_analyze() -> Option<PathBuf> {
    ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/canvass.service")
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let Some(analyze) = systemd_analyze() else {
        println!("skipped: systemd-analyze is not installed (Debian package: systemd)");
        return;
    };
    // verify checks that ExecStart= exists: point it at the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(unit_path()).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/canvass "), "{unit}");
    let copy = dir.path().join("canvass.service");
    std::fs::write(
        &copy,
        unit.replace(
            "ExecStart=/usr/bin/canvass ",
            &format!("ExecStart={} ", env!("CARGO_BIN_EXE_canvass")),
        ),
    )
    .unwrap();
    let out = Command::new(&analyze)
        .arg("verify")
        .arg(&copy)
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {err}");
    assert!(
        !err.contains("canvass.service"),
        "warnings about the unit: {err}"
    );
}

/// Issue 14, item 2: under the usual 1024 descriptors a web flood starved
/// `/healthz` and the Maildir source ("Too many open files"). The unit
/// raises the limit well above what the web side may hold at once.
#[test]
fn the_unit_leaves_descriptors_for_the_mail_beyond_the_web_cap() {
    let unit = std::fs::read_to_string(unit_path()).unwrap();
    let limit: usize = unit
        .lines()
        .find_map(|l| l.trim().strip_prefix("LimitNOFILE="))
        .unwrap_or_else(|| panic!("the unit sets no LimitNOFILE: {unit}"))
        .trim()
        .parse()
        .expect("LimitNOFILE is a number");
    let web = canvass::config::WebSettings::default().max_connections;
    assert!(
        limit >= 4 * web && limit > 1024,
        "LimitNOFILE={limit} leaves too little beside max_connections = {web}"
    );
}

#[test]
fn unit_is_rated_ok_by_systemd_analyze_security() {
    let Some(analyze) = systemd_analyze() else {
        println!("skipped: systemd-analyze is not installed (Debian package: systemd)");
        return;
    };
    let out = Command::new(&analyze)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(unit_path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no score: {text} {}", String::from_utf8_lossy(&out.stderr)));
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line:?}"));
    // systemd-analyze rates 1.0–4.9 "OK" and below 1.0 "SAFE"; 1.1 today:
    // keep it below 2.0 so a loosened sandbox fails here.
    assert!(score < 2.0, "{line}");
    // The README records the exact line.
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/README.md"))
            .unwrap();
    assert!(
        readme.contains(line.trim()),
        "systemd/README.md does not record {line:?}"
    );
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn install_script_creates_no_readable_secret() {
    let dest = tempfile::tempdir().unwrap();
    let root = dest.path();
    let run = || {
        Command::new("sh")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/install.sh"))
            .arg(env!("CARGO_BIN_EXE_canvass"))
            .env("DESTDIR", root)
            .output()
            .expect("run install.sh")
    };
    let out = run();
    assert!(
        out.status.success(),
        "install.sh: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&root.join("usr/bin/canvass")), 0o755);
    assert_eq!(
        mode(&root.join("lib/systemd/system/canvass.service")),
        0o644
    );
    assert_eq!(mode(&root.join("etc/canvass/canvass.toml")), 0o640);
    assert_eq!(mode(&root.join("etc/canvass/survey.da.toml")), 0o644);
    assert_eq!(mode(&root.join("etc/credstore/canvass")), 0o700);
    let key = root.join("etc/credstore/canvass/hmac.key");
    assert_eq!(mode(&key), 0o600);
    let key_text = std::fs::read_to_string(&key).unwrap();
    assert!(key_text.trim().len() >= 32, "{key_text:?}");

    // Again: the operator's config and the key are kept as they are.
    std::fs::write(root.join("etc/canvass/canvass.toml"), "# mine\n").unwrap();
    let out = run();
    assert!(out.status.success());
    assert_eq!(
        std::fs::read_to_string(root.join("etc/canvass/canvass.toml")).unwrap(),
        "# mine\n"
    );
    assert_eq!(std::fs::read_to_string(&key).unwrap(), key_text);
}

#[test]
fn deb_metadata_installs_the_unit_and_a_private_config() {
    let manifest: toml::Value = toml::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap(),
    )
    .unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    let assets: Vec<(String, String, String)> = deb["assets"]
        .as_array()
        .expect("assets")
        .iter()
        .map(|a| {
            let a = a.as_array().expect("[source, dest, mode]");
            let s = |i: usize| a[i].as_str().unwrap().to_string();
            (s(0), s(1), s(2))
        })
        .collect();
    let find = |dest: &str| {
        assets
            .iter()
            .find(|(_, d, _)| d == dest)
            .unwrap_or_else(|| panic!("no asset installed as {dest}: {assets:?}"))
    };
    assert_eq!(find("usr/bin/").0, "target/release/canvass");
    let unit = find("lib/systemd/system/canvass.service");
    assert_eq!(
        (unit.0.as_str(), unit.2.as_str()),
        ("systemd/canvass.service", "644")
    );
    let conf = find("etc/canvass/canvass.toml");
    assert_eq!(
        (conf.0.as_str(), conf.2.as_str()),
        ("config/canvass.example.toml", "640")
    );
    assert_eq!(
        find("etc/canvass/survey.da.toml").0,
        "config/survey.da.toml"
    );
    let conffiles: Vec<&str> = deb["conf-files"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        conffiles.contains(&"/etc/canvass/canvass.toml"),
        "{conffiles:?}"
    );
    // Nothing secret in the package: no credential, no key.
    for (src, dest, _) in &assets {
        for secret in ["credstore", "password", "hmac", ".key"] {
            assert!(
                !src.contains(secret) && !dest.contains(secret),
                "{src} → {dest}"
            );
        }
    }
    let scripts =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(deb["maintainer-scripts"].as_str().unwrap());
    for s in ["postinst", "prerm", "postrm"] {
        assert_eq!(mode(&scripts.join(s)) & 0o111, 0o111, "{s} executable");
    }
}
