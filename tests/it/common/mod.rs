//! Helpers shared by the integration tests: a config written into a temp
//! dir, the `canvass` binary, the daemon in process ([`start_in_process`])
//! and as a child process ([`process::Daemon`]).
#![allow(dead_code)]

pub mod process;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use canvass::shutdown::Shutdown;

pub const REGIONS: &str = r#"
[[regions]]
name = "Hovedstaden"
consultants = ["mette.larsen@siri.test"]
managers = ["leder.hovedstaden@siri.test"]

[[regions]]
name = "Sjælland"
consultants = ["anne.hansen@siri.test"]
managers = ["leder.sjaelland@siri.test"]

[[regions]]
name = "Syddanmark"
consultants = ["soeren.aagaard@siri.test"]
managers = ["leder.syddanmark@siri.test"]

[[regions]]
name = "Midtjylland"
consultants = ["bo.jensen@siri.test"]
managers = ["leder.midtjylland@siri.test"]

[[regions]]
name = "Nordjylland"
consultants = ["karen.moeller@siri.test"]
managers = ["leder.nordjylland@siri.test"]
"#;

/// The shipped survey definition.
pub fn survey_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/survey.da.toml")
}

/// A config for the Maildir + .eml path in `dir`, with `extra` TOML appended
/// to the [sending] table and the window given.
pub fn file_config(dir: &Path, window: (&str, &str), sending: &str) -> PathBuf {
    let key = dir.join("hmac.key");
    if !key.exists() {
        canvass::address::generate_key_file(&key).expect("key");
    }
    let text = format!(
        r#"
[survey]
address = "undersoegelse@siri.test"
base_url = "http://127.0.0.1:1"
definition = "{survey}"

[window]
start = {start}
end = {end}

[sending]
{sending}

[trust]
internal_domains = ["siri.test"]

[secrets]
hmac_key_file = "hmac.key"

[store]
path = "store"

[inbound.maildir]
path = "inbox"
poll_interval_ms = 50

[outbound.file]
path = "sent"

[web]
bind = "127.0.0.1:0"
metrics_bind = "127.0.0.1:0"
{REGIONS}"#,
        survey = survey_path().display(),
        start = window.0,
        end = window.1,
    );
    let path = dir.join("canvass.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// A window around today, so triggers received now are inside.
pub fn open_window() -> (String, String) {
    let today = chrono::Utc::now().date_naive();
    (
        (today - chrono::Duration::days(30)).to_string(),
        (today + chrono::Duration::days(30)).to_string(),
    )
}

pub fn canvass(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_canvass"))
        .args(args)
        .env_remove("CANVASS_CONFIG")
        .output()
        .expect("run canvass")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Polls `f` until it returns Some, or panics after `timeout` with `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Files in a folder (not recursing, not hidden), sorted.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                // Not hidden ones: the file transport writes `.<hex>.tmp`
                // first and renames it into place.
                .filter(|p| {
                    p.is_file()
                        && !p
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Writes a message into a Maildir's new/ atomically (tmp/ then rename).
pub fn deliver(maildir: &Path, name: &str, raw: &[u8]) {
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).expect("maildir");
    }
    let tmp = maildir.join("tmp").join(name);
    std::fs::write(&tmp, raw).expect("write");
    std::fs::rename(&tmp, maildir.join("new").join(name)).expect("rename");
}

/// A CC trigger from `from` to `to`, CC the survey address.
pub fn cc_trigger(id: &str, from: &str, to: &[&str]) -> Vec<u8> {
    format!(
        "Message-ID: <{id}@siri.test>\r\nDate: Mon, 12 Aug 2024 10:00:00 +0200\r\nFrom: Konsulent <{from}>\r\nTo: {}\r\nCc: =?utf-8?q?Sp=C3=B8rgeskema?= <undersoegelse@siri.test>\r\nSubject: =?utf-8?q?Opf=C3=B8lgning?=\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nHej, tak for snakken.\r\n",
        to.join(", ")
    )
    .into_bytes()
}

/// A plain HTTP/1.1 GET against 127.0.0.1; returns (status, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    http_get_with(addr, path, "")
}

/// [`http_get`] with extra header lines (each ending in `\r\n`).
pub fn http_get_with(addr: &str, path: &str, headers: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect web");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n"
    )
    .expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The personal link in a raw invitation (quoted-printable soft breaks undone).
pub fn link_in(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(raw)
        .replace("=\r\n", "")
        .replace("=\n", "");
    let start = text.find("/s/")?;
    let token: String = text[start + 3..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    Some(format!("/s/{token}"))
}

/// The bytes a queued item goes out as: invitations are queued without
/// their body and rendered when the outbox sends them.
pub fn as_sent(p: &canvass::pipeline::Pipeline, item: &canvass::store::OutboxItem) -> Vec<u8> {
    match p.ready_to_send(item.clone()).expect("read the store") {
        canvass::pipeline::Ready::Send(item) => item.raw,
        other => panic!("not sendable: {other:?}"),
    }
}

/// A plain HTTP/1.1 request with a body; returns (status, headers, body).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect web");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .expect("write");
    let _ = s.write_all(body);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .map(|(h, b)| (h.to_string(), b.to_string()))
        .unwrap_or_default();
    (status, head, body)
}

/// Form-encodes pairs.
pub fn form_body(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish().into_bytes()
}

/// A complete, valid answer to the shipped survey.
pub fn complete_answer() -> Vec<(&'static str, &'static str)> {
    vec![
        ("organisation", "krisecenter"),
        ("antal_sager", "2_5"),
        ("boern", "ja"),
        ("raadgivning", "risiko"),
        ("raadgivning", "andet"),
        ("raadgivning__andet_tekst", "Netværk på tværs – æøå ÆØÅ 🙂"),
        ("tilgaengelighed", "meget_hoej"),
        ("hjulpet_videre", "hoej"),
        ("anbefale", "meget_hoej"),
        ("kommentarer", "Rigtig god hjælp, tak! Søren & Åse <3 🎉"),
    ]
}

/// What varies between the configs of tests that run against the real mail
/// stack (tests/it/harness); everything else is the same for all of them.
pub struct StackConfig<'a> {
    pub imap_port: u16,
    pub smtp_port: u16,
    /// (start, end) of the collection window; default: around today.
    pub window: Option<(&'a str, &'a str)>,
    pub base_url: &'a str,
    /// The IMAP password written to the password file.
    pub password: &'a str,
    /// The store's path (default `store` beside the config).
    pub store: Option<&'a Path>,
    /// Extra lines in [sending], [trust], [inbound.imap], [outbound.smtp];
    /// extra tables at the end.
    pub sending: &'a str,
    pub trust: &'a str,
    pub imap: &'a str,
    pub smtp: &'a str,
    pub tables: &'a str,
    /// The [mailbox] and [auth] tables of an OAuth 2.0 login; the IMAP
    /// user name and password file are then left out.
    pub oauth: Option<&'a str>,
}

impl StackConfig<'_> {
    pub fn new(imap_port: u16, smtp_port: u16) -> StackConfig<'static> {
        StackConfig {
            imap_port,
            smtp_port,
            window: None,
            base_url: "http://127.0.0.1:9",
            password: "pw",
            store: None,
            sending: "",
            trust: "",
            imap: "",
            smtp: "",
            tables: "",
            oauth: None,
        }
    }

    /// Writes `canvass.toml`, the password file and (once) the HMAC key into `dir`.
    pub fn write(&self, dir: &Path) -> PathBuf {
        std::fs::write(dir.join("imap-password"), self.password).expect("password file");
        let key = dir.join("hmac.key");
        if !key.exists() {
            canvass::address::generate_key_file(&key).expect("key");
        }
        let open = open_window();
        let (start, end) = self.window.unwrap_or((&open.0, &open.1));
        let store = self
            .store
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "store".into());
        let text = format!(
            r#"
[survey]
address = "undersoegelse@siri.test"
base_url = "{base}"
definition = "{survey}"

[window]
start = {start}
end = {end}

[sending]
min_retry_seconds = 1
{sending}

[trust]
internal_domains = ["siri.test"]
{trust}

[secrets]
hmac_key_file = "hmac.key"

[store]
path = "{store}"
control_socket = "{socket}"

{oauth}
[inbound.imap]
host = "127.0.0.1"
port = {imap}
tls = "none"
{login}move_to = "Behandlet"
{imap_lines}

[outbound.smtp]
host = "127.0.0.1"
port = {smtp_port}
tls = "none"
timeout_seconds = 5
{smtp}

[web]
bind = "127.0.0.1:0"
metrics_bind = "127.0.0.1:0"

{tables}
{regions}"#,
            base = self.base_url,
            survey = survey_path().display(),
            sending = self.sending,
            trust = self.trust,
            socket = dir.join("canvass.sock").display(),
            imap = self.imap_port,
            oauth = self.oauth.unwrap_or(""),
            login = if self.oauth.is_some() {
                ""
            } else {
                "username = \"undersoegelse@siri.test\"\npassword_file = \"imap-password\"\n"
            },
            imap_lines = self.imap,
            smtp_port = self.smtp_port,
            smtp = self.smtp,
            tables = self.tables,
            regions = REGIONS,
        );
        let path = dir.join("canvass.toml");
        std::fs::write(&path, text).expect("write config");
        path
    }
}

/// `daemon::start` in this process on the config at `path`, its web server
/// on a free loopback port.
pub async fn start_in_process(path: &Path) -> (canvass::daemon::Daemon, Shutdown) {
    let cfg = canvass::config::Config::load(path).unwrap_or_else(|e| panic!("{e}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shutdown = Shutdown::new();
    let d = canvass::daemon::start(cfg, listener, shutdown.clone())
        .await
        .unwrap();
    (d, shutdown)
}

/// Triggers the shutdown; the daemon must drain within 30 s and end cleanly.
pub async fn stop_in_process(d: canvass::daemon::Daemon, shutdown: Shutdown) {
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(30), d.wait())
        .await
        .expect("drained in time")
        .unwrap();
}

/// A pipeline over the store of the config at `path` (no daemon), as
/// `canvass status` opens it.
pub fn pipeline(path: &Path) -> std::sync::Arc<canvass::pipeline::Pipeline> {
    let cfg = canvass::config::Config::load(path).unwrap_or_else(|e| panic!("{e}"));
    std::sync::Arc::new(canvass::pipeline::Pipeline::open_offline(cfg).expect("open the store"))
}

/// Runs blocking I/O (a raw HTTP request) off the test's runtime threads.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}
