//! Integration-test harness: a REAL Dovecot (IMAP with IDLE, LMTP) and a REAL
//! Postfix (SMTP) from Debian's packages, started as plain processes on
//! loopback ports with all their state in a temp dir, torn down on drop.
//!
//! ```ignore
//! mod harness;
//! use harness::MailStack;
//!
//! #[tokio::test]
//! async fn delivers() {
//!     let mail = MailStack::start();
//!     mail.add_user("anne@siri.test");
//!     mail.send("bob@kommune.test", &["anne@siri.test"], b"Subject: hi\r\n\r\nhello\r\n");
//!     let msgs = mail
//!         .wait_for_messages("anne@siri.test", "INBOX", 1, std::time::Duration::from_secs(5))
//!         .await;
//!     assert!(String::from_utf8_lossy(&msgs[0]).contains("hello"));
//! }
//! ```
//!
//! * Postfix accepts mail from 127.0.0.0/8 for ANY address in [`DOMAINS`]
//!   and hands it to Dovecot over LMTP. Dovecot knows only the users added
//!   with [`MailStack::add_user`] and rejects the others (`550 5.1.1`), so
//!   Postfix bounces them to the envelope sender with a real DSN
//!   (`multipart/report`). Mail to any other domain bounces at once
//!   ("outbound mail is disabled"); nothing ever leaves the machine.
//! * All users share the password [`PASSWORD`].
//! * TLS: IMAPS (implicit) and SMTP STARTTLS use a certificate for
//!   `localhost` and `127.0.0.1`, signed by a small CA: [`MailStack::ca_pem`].
//! * The daemons are killed (whole process groups) and the directory removed
//!   on drop. Set `CANVASS_KEEP_MAILSTACK=1` to keep the directory (its path
//!   is printed). If the test is panicking, the log tail goes to stderr.
//! * Needs root and the packages of `scripts/install-test-deps`.
#![allow(dead_code)]

mod config;
pub mod oidc;
mod os;
mod smtp;

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_imap::types::{Fetch, Flag};
use async_imap::Session;
use chrono::{DateTime, FixedOffset};
use futures::TryStreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;

use config::Ports;

/// The password of every user.
pub const PASSWORD: &str = "pw";
/// Every daemon listens on this address only.
pub const HOST: &str = "127.0.0.1";
/// The name the server certificate is valid for (besides IP 127.0.0.1).
pub const TLS_SERVER_NAME: &str = "localhost";
/// Domains Postfix accepts mail for (any local part) and delivers to Dovecot.
pub const DOMAINS: [&str; 5] = [
    "siri.test",
    "kommune.test",
    "politi.test",
    "example.test",
    "localhost",
];

/// Plaintext IMAP session, as returned by [`MailStack::imap_login`].
pub type ImapSession = Session<TcpStream>;
/// Implicit-TLS IMAP session, as returned by [`MailStack::imaps_login`].
pub type ImapsSession = Session<TlsStream<TcpStream>>;

/// Upper bound for one IMAP helper call, so a wedged server fails the test
/// instead of hanging it.
const IMAP_OP_TIMEOUT: Duration = Duration::from_secs(20);
/// How often `wait_for_messages` looks at the mailbox.
const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// A running Dovecot + Postfix pair. See the module docs.
pub struct MailStack {
    root: PathBuf,
    dir: Option<tempfile::TempDir>,
    ca_path: PathBuf,
    ports: Ports,
    ids: Ids,
    dovecot: Mutex<Option<Child>>,
    postfix: Mutex<Option<Child>>,
    users: Mutex<Vec<String>>,
    /// Messages a minute the submission port accepts from one client.
    submission_rate: Mutex<Option<u32>>,
}

#[derive(Clone, Copy)]
struct Ids {
    mail: (u32, u32),
    postfix: (u32, u32),
    postdrop: u32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MailStack {
    /// Starts Dovecot and Postfix; blocks until both listen. Panics with the
    /// daemons' log tails if either fails.
    pub fn start() -> MailStack {
        let started = Instant::now();
        assert!(
            os::is_root(),
            "MailStack needs root: Dovecot and Postfix run as root and drop privileges \
             to `mail` / `postfix` (CI runs as root)"
        );
        let ids = Ids {
            mail: os::user_ids("mail"),
            postfix: os::user_ids("postfix"),
            postdrop: os::group_id("postdrop"),
        };
        let dir = make_tempdir();
        let root = dir.path().to_path_buf();
        let p = os::reserve_ports(4);
        let mut stack = MailStack {
            ca_path: root.join("tls/ca.pem"),
            root,
            dir: Some(dir),
            ports: Ports {
                imap: p[0],
                imaps: p[1],
                smtp: p[2],
                submission: p[3],
            },
            ids,
            dovecot: Mutex::new(None),
            postfix: Mutex::new(None),
            users: Mutex::new(Vec::new()),
            submission_rate: Mutex::new(None),
        };
        // From here on a panic drops `stack`, which kills whatever runs.
        stack.lay_out();

        let mut attempt = 0;
        while let Err(e) = stack.spawn_dovecot() {
            attempt += 1;
            if !e.contains("Address already in use") || attempt >= 5 {
                panic!("Dovecot failed to start: {e}\n{}", stack.log_tail());
            }
            let new = os::reserve_ports(2);
            os::release_ports(&[stack.ports.imap, stack.ports.imaps]);
            stack.ports.imap = new[0];
            stack.ports.imaps = new[1];
        }

        let mut attempt = 0;
        while let Err(e) = stack.spawn_postfix() {
            attempt += 1;
            if os::port_is_free(stack.ports.smtp) || attempt >= 5 {
                panic!(
                    "Postfix failed to start: {e}\n{}\n{}",
                    stack.postfix_diagnostics(),
                    stack.log_tail()
                );
            }
            let new = os::reserve_ports(1);
            os::release_ports(&[stack.ports.smtp]);
            stack.ports.smtp = new[0];
        }

        let took = started.elapsed();
        if took > Duration::from_millis(1500) {
            eprintln!("note: MailStack::start took {took:?}");
        }
        stack
    }

    // ----- addresses -------------------------------------------------------

    /// Plaintext IMAP on 127.0.0.1 (IDLE supported; LOGIN allowed).
    pub fn imap_port(&self) -> u16 {
        self.ports.imap
    }
    /// Implicit-TLS IMAP on 127.0.0.1.
    pub fn imaps_port(&self) -> u16 {
        self.ports.imaps
    }
    /// Postfix smtpd on 127.0.0.1: plaintext, STARTTLS offered, no AUTH
    /// (clients on 127.0.0.0/8 may send to [`DOMAINS`]).
    pub fn smtp_port(&self) -> u16 {
        self.ports.smtp
    }
    /// Postfix submission on 127.0.0.1: plaintext, STARTTLS offered, SMTP
    /// AUTH required (PLAIN/LOGIN with [`PASSWORD`], XOAUTH2 and OAUTHBEARER
    /// with a token whose key [`Self::install_oauth_key`] installed).
    pub fn submission_port(&self) -> u16 {
        self.ports.submission
    }
    /// Makes the submission port throttle: after `per_minute` messages from
    /// a client within a minute, MAIL FROM gets Postfix's real
    /// `450 4.7.1 Error: too much mail from ...` (anvil). Restarts Postfix.
    pub fn throttle_submission(&self, per_minute: u32) {
        *lock(&self.submission_rate) = Some(per_minute);
        self.stop_smtp();
        self.start_smtp();
    }
    /// Gives Dovecot the public key (PEM) that verifies RS256 tokens signed
    /// with key id `kid` (no `azp` claim: the `default` directory).
    pub fn install_oauth_key(&self, kid: &str, public_pem: &[u8]) {
        let dir = self.root.join("dovecot/oauth2-keys/default/RS256");
        fs::create_dir_all(&dir).expect("create the oauth2 key directory");
        os::write_file(&dir.join(kid), public_pem, 0o644);
    }
    /// Always [`HOST`].
    pub fn host(&self) -> &'static str {
        HOST
    }
    /// PEM file of the CA that signed the servers' certificate.
    pub fn ca_pem(&self) -> &Path {
        &self.ca_path
    }
    /// Contents of [`Self::ca_pem`].
    pub fn ca_pem_bytes(&self) -> Vec<u8> {
        os::tls_material().ca_pem.clone()
    }
    /// The stack's temp directory (configs, logs, Maildirs under `mail/`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    // ----- users -----------------------------------------------------------

    /// Creates a mailbox for a full address such as `anne@siri.test`
    /// (password [`PASSWORD`]). Takes effect immediately, also while running.
    /// Idempotent. Case-insensitive, like Dovecot's lookups.
    pub fn add_user(&self, address: &str) {
        let address = address.trim().to_lowercase();
        let valid = address.split_once('@').is_some_and(|(l, d)| {
            !l.is_empty() && !d.is_empty() && !d.contains('@') && !l.starts_with('.')
        }) && !address.contains([':', '/', '\n', ' ', '\t', '\r']);
        assert!(valid, "add_user: not a usable address: {address:?}");
        let mut users = lock(&self.users);
        if users.contains(&address) {
            return;
        }
        users.push(address);
        let (uid, gid) = self.ids.mail;
        let mut passwd = String::new();
        for user in users.iter() {
            let (local, domain) = user.split_once('@').expect("validated");
            let home = self.root.join("mail").join(domain).join(local);
            passwd.push_str(&format!(
                "{user}:{{PLAIN}}{PASSWORD}:{uid}:{gid}::{}::\n",
                home.display()
            ));
        }
        os::write_file_atomic(&self.root.join("dovecot/passwd"), passwd, 0o644);
    }

    /// [`Self::add_user`] for several addresses.
    pub fn add_users(&self, addresses: &[&str]) {
        for a in addresses {
            self.add_user(a);
        }
    }

    // ----- daemon control --------------------------------------------------

    /// Stops Postfix entirely (smtpd and queue manager): connections to
    /// [`Self::smtp_port`] are refused until [`Self::start_smtp`]. Queued
    /// mail stays queued. Idempotent.
    pub fn stop_smtp(&self) {
        kill_child(&self.postfix);
    }

    /// Starts Postfix again on the same port (after [`Self::stop_smtp`]).
    pub fn start_smtp(&self) {
        if lock(&self.postfix).is_some() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Err(e) = self.spawn_postfix() {
            if os::port_is_free(self.ports.smtp) || Instant::now() > deadline {
                panic!(
                    "Postfix failed to restart: {e}\n{}\n{}",
                    self.postfix_diagnostics(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.flush_queue();
    }

    /// Kills Dovecot (IMAP and LMTP; open IMAP connections drop). Mail
    /// arriving meanwhile is deferred in Postfix's queue and delivered right
    /// after [`Self::start_imap`] (which flushes the queue). Idempotent.
    pub fn stop_imap(&self) {
        kill_child(&self.dovecot);
    }

    /// Starts Dovecot again on the same ports.
    pub fn start_imap(&self) {
        if lock(&self.dovecot).is_some() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Err(e) = self.spawn_dovecot() {
            if !e.contains("Address already in use") || Instant::now() > deadline {
                panic!("Dovecot failed to restart: {e}\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.flush_queue();
    }

    /// Kills and restarts Dovecot on the same ports (for reconnect tests).
    pub fn restart_imap(&self) {
        self.stop_imap();
        self.start_imap();
    }

    /// Asks Postfix's queue manager to retry every queued message now,
    /// ignoring back-off timers (what `postqueue -f` does). The harness does
    /// this itself after [`Self::start_imap`] / [`Self::start_smtp`] and
    /// about once a second inside [`Self::wait_for_messages`]: a deferral
    /// that races with a queue scan otherwise parks a message for 60 s.
    pub fn flush_queue(&self) {
        use std::io::Write;
        if lock(&self.postfix).is_none() {
            return;
        }
        let socket = self.root.join("postfix/queue/public/qmgr");
        if let Ok(mut s) = std::os::unix::net::UnixStream::connect(socket) {
            // FLUSH_DEAD, SCAN_ALL (ignore time stamps), DEFERRED, INCOMING.
            let _ = s.write_all(b"FADI");
        }
    }

    // ----- SMTP ------------------------------------------------------------

    /// Injects a message through Postfix's SMTP port (blocking). Every
    /// recipient must be accepted; panics otherwise. `raw` is the RFC 5322
    /// message; line endings become CRLF and leading dots are stuffed.
    pub fn send(&self, from: &str, to: &[&str], raw: &[u8]) {
        if let Err(e) = self.try_send(from, to, raw) {
            panic!(
                "sending through Postfix at {HOST}:{} failed: {e}\n{}",
                self.ports.smtp,
                self.log_tail()
            );
        }
    }

    /// Like [`Self::send`] but returns the error (e.g. connection refused
    /// after [`Self::stop_smtp`]). Ok holds the final server reply text.
    pub fn try_send(&self, from: &str, to: &[&str], raw: &[u8]) -> Result<String, String> {
        smtp::send(self.ports.smtp, from, to, raw)
    }

    /// The EHLO keywords Postfix offers (upper case), e.g. `STARTTLS`.
    pub fn smtp_extensions(&self) -> Result<Vec<String>, String> {
        let (mut conn, _) = smtp::SmtpConn::connect(self.ports.smtp)?;
        let reply = conn.command("EHLO harness.canvass.test")?;
        let _ = conn.command("QUIT");
        Ok(reply
            .text
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .map(|k| k.to_ascii_uppercase())
            .collect())
    }

    // ----- IMAP ------------------------------------------------------------

    /// rustls client config trusting only [`Self::ca_pem`].
    pub fn rustls_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        let pem = self.ca_pem_bytes();
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots
                .add(cert.expect("parse CA PEM"))
                .expect("add CA to root store");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("rustls protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }

    /// A TLS connector for [`TLS_SERVER_NAME`] / 127.0.0.1 trusting the CA.
    pub fn tls_connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(self.rustls_config())
    }

    /// Logged-in plaintext IMAP session (LOGIN), or the error.
    pub async fn try_imap_login(&self, user: &str) -> Result<ImapSession, String> {
        let port = self.ports.imap;
        with_timeout(IMAP_OP_TIMEOUT, "IMAP login", async {
            let tcp = TcpStream::connect((HOST, port))
                .await
                .map_err(|e| format!("connect to IMAP {HOST}:{port}: {e}"))?;
            login(tcp, user).await
        })
        .await
    }

    /// Logged-in plaintext IMAP session; panics (with logs) on failure.
    pub async fn imap_login(&self, user: &str) -> ImapSession {
        match self.try_imap_login(user).await {
            Ok(s) => s,
            Err(e) => panic!("{e}\n{}", self.log_tail()),
        }
    }

    /// Logged-in implicit-TLS IMAP session (certificate verified against
    /// the CA for [`TLS_SERVER_NAME`]), or the error.
    pub async fn try_imaps_login(&self, user: &str) -> Result<ImapsSession, String> {
        let port = self.ports.imaps;
        let connector = self.tls_connector();
        with_timeout(IMAP_OP_TIMEOUT, "IMAPS login", async {
            let tcp = TcpStream::connect((HOST, port))
                .await
                .map_err(|e| format!("connect to IMAPS {HOST}:{port}: {e}"))?;
            let name = rustls::pki_types::ServerName::try_from(TLS_SERVER_NAME)
                .expect("valid server name");
            let tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake with IMAPS {HOST}:{port}: {e}"))?;
            login(tls, user).await
        })
        .await
    }

    /// Logged-in implicit-TLS IMAP session; panics (with logs) on failure.
    pub async fn imaps_login(&self, user: &str) -> ImapsSession {
        match self.try_imaps_login(user).await {
            Ok(s) => s,
            Err(e) => panic!("{e}\n{}", self.log_tail()),
        }
    }

    /// IMAP CREATE; an already existing mailbox is fine.
    pub async fn create_mailbox(&self, user: &str, mailbox: &str) {
        let mut s = self.imap_login(user).await;
        let r = with_timeout(IMAP_OP_TIMEOUT, "CREATE", async {
            match s.create(mailbox).await {
                Ok(()) => Ok(()),
                Err(e) if e.to_string().to_ascii_lowercase().contains("exists") => Ok(()),
                Err(e) => Err(format!("CREATE {mailbox:?} for {user}: {e}")),
            }
        })
        .await;
        if let Err(e) = r {
            panic!("{e}\n{}", self.log_tail());
        }
        let _ = s.logout().await;
    }

    /// Names of all mailboxes of `user` (IMAP LIST "" "*"), sorted.
    pub async fn list_mailboxes(&self, user: &str) -> Vec<String> {
        let mut s = self.imap_login(user).await;
        let r = with_timeout(IMAP_OP_TIMEOUT, "LIST", async {
            let names: Vec<_> = s
                .list(Some(""), Some("*"))
                .await
                .map_err(|e| e.to_string())?
                .try_collect()
                .await
                .map_err(|e| e.to_string())?;
            let mut names: Vec<String> = names.iter().map(|n| n.name().to_string()).collect();
            names.sort();
            Ok(names)
        })
        .await;
        let _ = s.logout().await;
        r.unwrap_or_else(|e| panic!("LIST for {user}: {e}\n{}", self.log_tail()))
    }

    /// IMAP APPEND of `raw` to `mailbox` (created if missing), with the given
    /// INTERNALDATE (else "now").
    pub async fn append(
        &self,
        user: &str,
        mailbox: &str,
        raw: &[u8],
        internal_date: Option<DateTime<FixedOffset>>,
    ) {
        self.append_with_flags(user, mailbox, raw, &[], internal_date)
            .await
    }

    /// [`Self::append`] with flags, e.g. `&["\\Seen", "$Canvassed"]`.
    pub async fn append_with_flags(
        &self,
        user: &str,
        mailbox: &str,
        raw: &[u8],
        flags: &[&str],
        internal_date: Option<DateTime<FixedOffset>>,
    ) {
        let mut s = self.imap_login(user).await;
        let date = internal_date.map(|d| d.format("\"%d-%b-%Y %H:%M:%S %z\"").to_string());
        let flags = (!flags.is_empty()).then(|| format!("({})", flags.join(" ")));
        let r = with_timeout(IMAP_OP_TIMEOUT, "APPEND", async {
            if !mailbox.eq_ignore_ascii_case("INBOX") {
                // Fails harmlessly if it exists.
                let _ = s.create(mailbox).await;
            }
            s.append(mailbox, flags.as_deref(), date.as_deref(), raw)
                .await
                .map_err(|e| format!("APPEND to {user}/{mailbox}: {e}"))
        })
        .await;
        if let Err(e) = r {
            panic!("{e}\n{}", self.log_tail());
        }
        let _ = s.logout().await;
    }

    /// Raw RFC 822 bytes of every message in `mailbox`, in mailbox order.
    /// Uses EXAMINE + BODY.PEEK[], so flags (\Seen, \Recent) are untouched.
    /// A mailbox that does not exist yields an empty list.
    pub async fn fetch_all(&self, user: &str, mailbox: &str) -> Vec<Vec<u8>> {
        let mut s = self.imap_login(user).await;
        let r = with_timeout(IMAP_OP_TIMEOUT, "FETCH", fetch_bodies(&mut s, mailbox)).await;
        let _ = s.logout().await;
        match r {
            Ok(v) => v.unwrap_or_default(),
            Err(e) => panic!("fetching {user}/{mailbox}: {e}\n{}", self.log_tail()),
        }
    }

    /// Waits until `mailbox` holds at least `n` messages, then returns all of
    /// them (may be more than `n`). Polls every 25 ms over one IMAP session
    /// (reconnecting if needed, e.g. across [`Self::restart_imap`]); a
    /// missing mailbox counts as empty. Also pokes Postfix's queue once a
    /// second ([`Self::flush_queue`]). Panics on timeout with what it saw.
    pub async fn wait_for_messages(
        &self,
        user: &str,
        mailbox: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut session: Option<ImapSession> = None;
        let mut last_error = String::from("(none)");
        let mut seen: Vec<Vec<u8>> = Vec::new();
        let mut next_flush = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            if tokio::time::Instant::now() >= next_flush {
                self.flush_queue();
                next_flush += Duration::from_secs(1);
            }
            if session.is_none() {
                match self.try_imap_login(user).await {
                    Ok(s) => session = Some(s),
                    Err(e) => last_error = e,
                }
            }
            if let Some(s) = session.as_mut() {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let r = with_timeout(left + Duration::from_secs(1), "poll", async {
                    let exists = match s.examine(mailbox).await {
                        Ok(mb) => mb.exists as usize,
                        Err(e) if is_nonexistent(&e) => 0,
                        Err(e) => return Err(e.to_string()),
                    };
                    if exists >= n || tokio::time::Instant::now() >= deadline {
                        Ok(fetch_bodies(s, mailbox).await?.unwrap_or_default())
                    } else {
                        Ok(Vec::new())
                    }
                })
                .await;
                match r {
                    Ok(msgs) => {
                        if msgs.len() >= n {
                            let _ = with_timeout(Duration::from_secs(2), "LOGOUT", async {
                                s.logout().await.map_err(|e| e.to_string())
                            })
                            .await;
                            return msgs;
                        }
                        if !msgs.is_empty() {
                            seen = msgs;
                        }
                    }
                    Err(e) => {
                        last_error = e;
                        session = None;
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                let summary: Vec<String> = seen.iter().map(|m| summarize(m)).collect();
                panic!(
                    "timed out after {timeout:?} waiting for {n} message(s) in {user}/{mailbox}; \
                     saw {} message(s):\n{}\nlast IMAP error: {last_error}\n{}",
                    seen.len(),
                    summary.join("\n"),
                    self.log_tail()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// (UID, flags) of every message in `mailbox`, by UID. `\Recent` is left
    /// out (it depends on which session looked first).
    pub async fn flags(&self, user: &str, mailbox: &str) -> Vec<(u32, Vec<String>)> {
        let mut s = self.imap_login(user).await;
        let r = with_timeout(IMAP_OP_TIMEOUT, "FETCH FLAGS", async {
            let mb = s.examine(mailbox).await.map_err(|e| e.to_string())?;
            if mb.exists == 0 {
                return Ok(Vec::new());
            }
            let fetches: Vec<Fetch> = s
                .uid_fetch("1:*", "(UID FLAGS)")
                .await
                .map_err(|e| e.to_string())?
                .try_collect()
                .await
                .map_err(|e| e.to_string())?;
            let mut out: Vec<(u32, Vec<String>)> = fetches
                .iter()
                .filter_map(|f| {
                    let flags = f
                        .flags()
                        .filter(|fl| *fl != Flag::Recent)
                        .map(|fl| flag_name(&fl))
                        .collect();
                    f.uid.map(|uid| (uid, flags))
                })
                .collect();
            out.sort_by_key(|(uid, _)| *uid);
            Ok::<_, String>(out)
        })
        .await;
        let _ = s.logout().await;
        r.unwrap_or_else(|e| panic!("flags of {user}/{mailbox}: {e}\n{}", self.log_tail()))
    }

    // ----- diagnostics -----------------------------------------------------

    /// Process-group ids of the running daemons (Dovecot's and Postfix's
    /// masters lead their groups); for leak checks with
    /// [`live_processes_in_group`].
    pub fn daemon_process_groups(&self) -> Vec<u32> {
        [&self.dovecot, &self.postfix]
            .iter()
            .filter_map(|slot| lock(slot).as_ref().map(|c| c.id()))
            .collect()
    }

    /// The last lines of Dovecot's and Postfix's logs.
    pub fn log_tail(&self) -> String {
        let d = self.root.join("dovecot");
        let p = self.root.join("postfix");
        let mut out = format!(
            "==== dovecot log ({}) ====\n{}\n",
            d.join("dovecot.log").display(),
            os::tail(&d.join("dovecot.log"), 60)
        );
        let stderr = os::tail(&d.join("stderr.log"), 20);
        if !stderr.trim().is_empty() {
            out.push_str(&format!("==== dovecot stderr ====\n{stderr}\n"));
        }
        out.push_str(&format!(
            "==== postfix log ({}) ====\n{}\n",
            p.join("postfix.log").display(),
            os::tail(&p.join("postfix.log"), 60)
        ));
        out
    }

    // ----- internals -------------------------------------------------------

    fn dovecot_conf_path(&self) -> PathBuf {
        self.root.join("dovecot/dovecot.conf")
    }
    fn postfix_etc(&self) -> PathBuf {
        self.root.join("postfix/etc")
    }

    /// Creates the directory tree, TLS files, empty passwd, Postfix config.
    fn lay_out(&self) {
        let r = &self.root;
        let root_owned = Some((0, 0));
        os::mkdir(r, 0o755, root_owned);
        for d in ["tls", "dovecot", "dovecot/run", "dovecot/state", "postfix"] {
            os::mkdir(&r.join(d), 0o755, root_owned);
        }
        os::mkdir(&r.join("mail"), 0o755, Some(self.ids.mail));

        let tls = os::tls_material();
        os::write_file(&r.join("tls/ca.pem"), &tls.ca_pem, 0o644);
        os::write_file(&r.join("tls/server.pem"), &tls.server_pem, 0o644);
        os::write_file(&r.join("tls/server.key"), &tls.server_key, 0o600);
        os::write_file(&r.join("dovecot/passwd"), "", 0o644);
        os::write_file(
            &r.join("dovecot/oauth2.conf"),
            config::dovecot_oauth2_conf(r),
            0o644,
        );
        os::mkdir(&r.join("dovecot/oauth2-keys"), 0o755, root_owned);

        // Postfix: what `postfix start` (post-install create-missing) would
        // make, done directly because its checks cost ~0.7 s per start.
        let pf = r.join("postfix");
        let (pu, pg) = self.ids.postfix;
        os::mkdir(&pf.join("etc"), 0o755, root_owned);
        os::mkdir(&pf.join("data"), 0o700, Some((pu, pg)));
        let q = pf.join("queue");
        os::mkdir(&q, 0o755, root_owned);
        os::mkdir(&q.join("pid"), 0o755, root_owned);
        for d in [
            "active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming",
            "private", "saved", "trace",
        ] {
            os::mkdir(&q.join(d), 0o700, Some((pu, 0)));
        }
        os::mkdir(&q.join("maildrop"), 0o730, Some((pu, self.ids.postdrop)));
        os::mkdir(&q.join("public"), 0o710, Some((pu, self.ids.postdrop)));
        let main_cf = pf.join("etc/main.cf");
        os::write_file(&main_cf, config::postfix_main_cf(r, &DOMAINS), 0o644);
        os::backdate(&main_cf, 10);
    }

    /// Starts Dovecot in the foreground as our child, in its own process
    /// group; returns once its master listens on both IMAP ports.
    fn spawn_dovecot(&self) -> Result<(), String> {
        let conf = self.dovecot_conf_path();
        os::write_file(
            &conf,
            config::dovecot_conf(&self.root, self.ports, self.ids.mail.0),
            0o644,
        );
        let run = self.root.join("dovecot/run");
        let _ = fs::remove_file(run.join("master.pid"));
        let stderr = self.root.join("dovecot/stderr.log");
        let offset = fs::metadata(&stderr).map(|m| m.len()).unwrap_or(0);
        let child = spawn_logged(
            Command::new(os::find_program(&["/usr/sbin/dovecot", "/usr/bin/dovecot"]))
                .arg("-F")
                .arg("-c")
                .arg(&conf),
            &stderr,
            "dovecot",
        )?;
        let pid = child.id();
        *lock(&self.dovecot) = Some(child);
        let lmtp = run.join("lmtp");
        self.wait_ready(&self.dovecot, "Dovecot", (&stderr, offset), || {
            os::is_listening_by(self.ports.imap, pid)
                && os::is_listening_by(self.ports.imaps, pid)
                && lmtp.exists()
        })
    }

    /// Starts Postfix's master (`master -d`) as our child, in its own process
    /// group; returns once it listens on the SMTP port.
    fn spawn_postfix(&self) -> Result<(), String> {
        let etc = self.postfix_etc();
        let master_cf = etc.join("master.cf");
        os::write_file(
            &master_cf,
            config::postfix_master_cf(&self.root, self.ports, *lock(&self.submission_rate)),
            0o644,
        );
        // master waits ~2 s at start-up while its config files are younger
        // than that.
        os::backdate(&master_cf, 10);
        os::backdate(&etc.join("main.cf"), 10);
        let stderr = self.root.join("postfix/stderr.log");
        let offset = fs::metadata(&stderr).map(|m| m.len()).unwrap_or(0);
        let master = os::find_program(&[
            "/usr/lib/postfix/sbin/master",
            "/usr/libexec/postfix/master",
        ]);
        let child = spawn_logged(
            Command::new(master)
                .arg("-c")
                .arg(&etc)
                .arg("-d")
                .env("MAIL_CONFIG", &etc),
            &stderr,
            "postfix master",
        )?;
        let pid = child.id();
        *lock(&self.postfix) = Some(child);
        self.wait_ready(&self.postfix, "Postfix", (&stderr, offset), || {
            os::is_listening_by(self.ports.smtp, pid)
                && os::is_listening_by(self.ports.submission, pid)
        })
    }

    fn wait_ready(
        &self,
        slot: &Mutex<Option<Child>>,
        name: &str,
        (stderr, offset): (&Path, u64),
        ready: impl Fn() -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            {
                let mut guard = lock(slot);
                let child = guard.as_mut().expect("child just spawned");
                if let Ok(Some(status)) = child.try_wait() {
                    let pgid = child.id();
                    *guard = None;
                    os::kill_group_and_wait(pgid);
                    let mut msg = format!("{name} exited during start-up ({status})");
                    // Only what this attempt wrote.
                    let err = fs::read(stderr)
                        .map(|b| {
                            String::from_utf8_lossy(&b[(offset as usize).min(b.len())..])
                                .into_owned()
                        })
                        .unwrap_or_default();
                    if !err.trim().is_empty() {
                        msg.push_str(&format!(": {err}"));
                    }
                    return Err(msg);
                }
            }
            if ready() {
                return Ok(());
            }
            if Instant::now() > deadline {
                kill_child(slot);
                return Err(format!("{name} did not start listening within 10 s"));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Postfix's own check, run under a pty because its complaints otherwise
    /// go only to the (absent) syslog.
    fn postfix_diagnostics(&self) -> String {
        let etc = self.postfix_etc();
        let cmd = format!("postfix -c {} check", etc.display());
        let out = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(Stdio::null())
            .output();
        let port = self.ports.smtp;
        let port_note = if os::port_is_free(port) {
            format!("port {port} is free")
        } else {
            format!("port {port} is in use by another process")
        };
        match out {
            Ok(o) => format!(
                "`{cmd}` ({}; {port_note}):\n{}{}",
                o.status,
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => format!("cannot run `script -qec '{cmd}'`: {e}; {port_note}"),
        }
    }
}

impl Drop for MailStack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "MailStack in {} (test panicked):\n{}",
                self.root.display(),
                self.log_tail()
            );
        }
        kill_child(&self.postfix);
        kill_child(&self.dovecot);
        os::release_ports(&[
            self.ports.imap,
            self.ports.imaps,
            self.ports.smtp,
            self.ports.submission,
        ]);
        if let Some(dir) = self.dir.take() {
            if std::env::var_os("CANVASS_KEEP_MAILSTACK").is_some() {
                let kept = dir.keep();
                eprintln!("CANVASS_KEEP_MAILSTACK: kept {}", kept.display());
            }
            // Otherwise TempDir's drop removes the tree.
        }
    }
}

/// Live (non-zombie) processes whose process group is `pgid`.
pub fn live_processes_in_group(pgid: u32) -> Vec<u32> {
    os::live_group_members(pgid)
}

fn make_tempdir() -> tempfile::TempDir {
    let builder = {
        let mut b = tempfile::Builder::new();
        b.prefix("canvass-mailstack-");
        b
    };
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        builder.tempdir_in(shm).or_else(|_| builder.tempdir())
    } else {
        builder.tempdir()
    };
    dir.expect("create temp dir for MailStack")
}

/// Spawns a daemon with stdin from /dev/null and stdout+stderr appended to
/// `log` (daemons inherit them; a pipe would keep `Command::output()` of a
/// test waiting), in a new process group whose id is the child's pid.
fn spawn_logged(cmd: &mut Command, log: &Path, what: &str) -> Result<Child, String> {
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("open {}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run {what} ({e}): run scripts/install-test-deps as root"))
}

/// Kills the child's whole process group and reaps the child.
fn kill_child(slot: &Mutex<Option<Child>>) {
    let Some(mut child) = lock(slot).take() else {
        return;
    };
    os::kill_group_and_wait(child.id());
    let _ = child.wait();
}

async fn with_timeout<T>(
    limit: Duration,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("{what}: no answer within {limit:?}")),
    }
}

async fn login<T>(stream: T, user: &str) -> Result<Session<T>, String>
where
    T: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    let mut client = async_imap::Client::new(stream);
    match client.read_response().await {
        Ok(Some(_greeting)) => {}
        Ok(None) => return Err("IMAP server closed the connection before greeting".into()),
        Err(e) => return Err(format!("reading IMAP greeting: {e}")),
    }
    client
        .login(user, PASSWORD)
        .await
        .map_err(|(e, _)| format!("IMAP LOGIN as {user:?}: {e} (did you add_user it?)"))
}

/// EXAMINE + FETCH 1:* BODY.PEEK[]; `None` if the mailbox does not exist.
async fn fetch_bodies<T>(s: &mut Session<T>, mailbox: &str) -> Result<Option<Vec<Vec<u8>>>, String>
where
    T: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    let mb = match s.examine(mailbox).await {
        Ok(mb) => mb,
        Err(e) if is_nonexistent(&e) => return Ok(None),
        Err(e) => return Err(format!("EXAMINE {mailbox:?}: {e}")),
    };
    if mb.exists == 0 {
        return Ok(Some(Vec::new()));
    }
    let mut fetches: Vec<Fetch> = s
        .fetch("1:*", "(UID BODY.PEEK[])")
        .await
        .map_err(|e| format!("FETCH: {e}"))?
        .try_collect()
        .await
        .map_err(|e| format!("FETCH: {e}"))?;
    fetches.sort_by_key(|f| f.message);
    Ok(Some(
        fetches
            .iter()
            .map(|f| f.body().unwrap_or_default().to_vec())
            .collect(),
    ))
}

fn is_nonexistent(e: &async_imap::error::Error) -> bool {
    let text = e.to_string();
    text.contains("NONEXISTENT") || text.contains("doesn't exist")
}

fn flag_name(flag: &Flag<'_>) -> String {
    match flag {
        Flag::Seen => "\\Seen".into(),
        Flag::Answered => "\\Answered".into(),
        Flag::Flagged => "\\Flagged".into(),
        Flag::Deleted => "\\Deleted".into(),
        Flag::Draft => "\\Draft".into(),
        Flag::Recent => "\\Recent".into(),
        Flag::MayCreate => "\\*".into(),
        Flag::Custom(s) => s.to_string(),
    }
}

/// One line per message for diagnostics: From, To, Subject.
fn summarize(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let header = |name: &str| {
        text.lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    format!(
        "  - From: {} | To: {} | Subject: {} ({} bytes)",
        header("From"),
        header("To"),
        header("Subject"),
        raw.len()
    )
}
