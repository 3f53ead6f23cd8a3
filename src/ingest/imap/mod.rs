//! The survey mailbox over IMAP (async-imap on tokio, TLS by rustls).
//!
//! **Connecting.** `tls = "implicit"` speaks TLS from the first byte (IMAPS),
//! `"starttls"` reads the plaintext greeting, upgrades with `STARTTLS` and
//! throws away anything the server sent before the handshake; `"none"` is
//! refused unless the host is a loopback address (the config validator says
//! so too; this is checked again here). Certificates are verified against the
//! webpki roots plus `ca_file` (PEM) when set. async-imap 0.12 does not read the
//! greeting itself: [`async_imap::Client::new`] is followed by one
//! `read_response`. The password is read from `password_file` at every
//! connect. It never goes through async-imap's own logging: the client is
//! handed a placeholder and the socket wrapper swaps in the real password as
//! the `LOGIN` line is written (async-imap traces every command it encodes).
//! A refused login is [`SourceError::Auth`] and names the password file, never
//! the password.
//!
//! **OAuth 2.0.** With `auth.method = "oauth2"` the session logs in with
//! `AUTHENTICATE XOAUTH2` or `OAUTHBEARER` (RFC 7628): the token comes from
//! the process's one token cache (`oauth::TokenSource`, shared with SMTP) and
//! goes in reply to the server's `+`, never on the command line (tokens run
//! past 2 KB). async-imap is handed a placeholder and the socket wrapper
//! swaps in the real response, as for the password. A refused token is
//! answered with an empty line (the error challenge), reported with the
//! server's words, and dropped from the cache so the next connection asks
//! for a new one; a session ended for an expired token (`* BYE ...
//! AccessTokenExpired`) is an ordinary lost connection: the ingest loop
//! reconnects with a fresh token and resumes from the stored mark. The TCP connect gives up after 10 s, and every read or write
//! that makes no progress for 60 s fails (except while idling).
//!
//! **Reading.** The mailbox is `SELECT`ed and its UIDVALIDITY kept. The store
//! holds `(uid_validity, last_uid)` under [`MailSource::name`]; the pipeline
//! advances it in the same transaction as each message. When UIDVALIDITY
//! differs from the stored one, the mailbox is read again from the start (a
//! warning is logged; the pipeline de-duplicates by Message-ID). `fetch` sends
//! `NOOP` first (a server shows a session new mail only between commands),
//! finds the UIDs above the mark with `UID SEARCH` (`n:*` also matches the
//! highest message when its UID is below `n`, so results are filtered), and
//! fetches at most `limit` of them, oldest first, with `INTERNALDATE` (the time
//! of receipt the collection window is judged on), `RFC822.SIZE` and
//! `BODY.PEEK[]`, which leaves `\Seen` alone. Messages over
//! `max_message_bytes` are read as `BODY.PEEK[HEADER]` only. A batch also
//! stops at 64 MiB of bodies; the rest waits for the next round
//! (`wait_for_mail` then returns at once), so a backlog of thousands is read
//! batch by batch.
//!
//! **Marking.** `mark_processed` sets `\Seen` on the whole batch with one
//! `UID STORE +FLAGS.SILENT`, then, when `move_to` is set, `UID MOVE`s it
//! there (the folder is created once if missing). Without the MOVE capability
//! mail stays where it is (logged once). Nothing is ever deleted or expunged.
//! Should marking fail after the store committed, the next connection
//! finishes the job for the messages at or below the mark that are still
//! waiting in the mailbox.
//!
//! **Waiting.** With IDLE (RFC 2177) `wait_for_mail` idles until the server
//! reports new mail (`EXISTS`), re-issuing IDLE every 25 minutes (servers may
//! drop an idle client after 29) and leaving at once on shutdown, with `DONE`
//! so the session stays usable. IDLE is driven by hand, not with async-imap's
//! `Handle`, which would hide an EXISTS sent before its continuation. Without
//! IDLE it polls with `NOOP` every 5 s.
//!
//! **Errors.** Any failure drops the session and returns a [`SourceError`];
//! the ingest loop reconnects with backoff and logs the outage once. Nothing
//! here logs above debug per attempt, and server input never panics.
//!
//! Mailbox names are written in the config as plain Unicode and sent in IMAP's
//! modified UTF-7.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_imap::imap_proto::{
    AttributeValue, MailboxDatum, MessageSection, RequestId, Response, ResponseCode, SectionPath,
    Status,
};
use async_imap::{Client, Session};
use chrono::{DateTime, Utc};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_rustls::rustls;

mod purge;
pub use purge::{sweep_mailbox, FolderSweep, MailboxReport};

use super::{Incoming, MailSource, SourceError};
use crate::config::{is_loopback_host, read_secret, ImapConfig, TlsMode};
use crate::oauth::{sasl, AccessToken, TokenSource};
use crate::shutdown::Shutdown;
use crate::store::{IngestMark, Store};

/// Giving up on a TCP connect (a black-holed server).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS handshake, greeting, STARTTLS, login, capabilities and SELECT together.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// A read or write that makes no progress for this long fails (not in IDLE).
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// IDLE is re-issued before the 29 minutes RFC 2177 allows a server.
const IDLE_REISSUE: Duration = Duration::from_secs(25 * 60);
/// Waiting for the server to end IDLE after `DONE` at shutdown.
const DONE_AT_SHUTDOWN: Duration = Duration::from_secs(2);
/// Polling interval for servers without IDLE.
const POLL_INTERVAL: Duration = Duration::from_secs(5);
/// Bodies read in one batch, at most (at least one message is always read).
const BATCH_BYTES: u64 = 64 * 1024 * 1024;
/// UIDs per command when finishing left-over messages after a reconnect.
const SWEEP_CHUNK: usize = 500;

/// What async-imap is given as the password; [`Conn`] writes the real one.
const PASSWORD_PLACEHOLDER: &str = "canvassPasswordPlaceholder7Qx2";
/// What async-imap is given as the SASL response (it base64-encodes and
/// traces it); [`Conn`] writes the real one.
const TOKEN_PLACEHOLDER: &[u8] = b"canvassTokenPlaceholder9Rw4";

/// What the session logs in with.
enum Secret {
    Password(String),
    Token(AccessToken),
}

/// Answers AUTHENTICATE's continuations: first the (placeholder) initial
/// response, then an empty line to an error challenge, which it keeps.
#[derive(Default)]
struct SaslAuth {
    sent: std::sync::atomic::AtomicBool,
    error_challenge: std::sync::Mutex<Option<Vec<u8>>>,
}

impl SaslAuth {
    fn error_challenge(&self) -> Option<Vec<u8>> {
        self.error_challenge
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl async_imap::Authenticator for &SaslAuth {
    type Response = Vec<u8>;
    fn process(&mut self, challenge: &[u8]) -> Vec<u8> {
        use std::sync::atomic::Ordering;
        if !self.sent.swap(true, Ordering::SeqCst) {
            return TOKEN_PLACEHOLDER.to_vec();
        }
        *self
            .error_challenge
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(challenge.to_vec());
        Vec::new()
    }
}

pub struct ImapSource {
    cfg: ImapConfig,
    /// The token cache, with `auth.method = "oauth2"` (or why it failed).
    tokens: Option<Result<std::sync::Arc<TokenSource>, String>>,
    link: Option<Link>,
    /// More messages above the mark were waiting than the last fetch returned.
    more_waiting: bool,
    /// `move_to` is known to exist (checked or created once).
    move_folder_ready: bool,
    /// Logged that the server cannot MOVE (once).
    told_no_move: bool,
    /// Logged that `move_to` is the mailbox itself (once).
    told_move_to_self: bool,
    /// Polling interval without IDLE.
    poll: Duration,
    /// The server ended the session for an expired token.
    token_expired: bool,
}

/// What `check-mail` learns from the IMAP server.
#[derive(Debug, Clone)]
pub struct ImapCheck {
    /// As the server names them (`IDLE`, `AUTH=XOAUTH2`, ...).
    pub capabilities: Vec<String>,
    /// Every folder, as the server names them (modified UTF-7).
    pub folders: Vec<String>,
    pub mailbox_exists: bool,
    /// `None` when `move_to` is not set.
    pub move_to_exists: Option<bool>,
}

/// A logged-in session with the mailbox selected.
struct Link {
    session: Session<Conn>,
    idle: bool,
    can_move: bool,
    /// UIDPLUS (RFC 4315): `UID EXPUNGE` removes only the messages named.
    uidplus: bool,
    uid_validity: u32,
    /// The server reported EXISTS since the last fetch started.
    new_mail: bool,
    /// Left-overs below the mark were looked for on this connection.
    swept: bool,
}

/// A command's outcome: untagged data and the tagged status.
struct Reply {
    data: Vec<Item>,
    status: Status,
    text: String,
}

impl Reply {
    fn ok(&self) -> bool {
        self.status == Status::Ok
    }
}

impl ImapSource {
    pub fn new(cfg: &ImapConfig) -> ImapSource {
        ImapSource {
            cfg: cfg.clone(),
            tokens: cfg
                .oauth
                .as_ref()
                .map(|o| TokenSource::shared(o).map_err(|e| e.to_string())),
            link: None,
            more_waiting: false,
            move_folder_ready: false,
            told_no_move: false,
            told_move_to_self: false,
            poll: POLL_INTERVAL,
            token_expired: false,
        }
    }

    fn connect_err(&self, detail: impl Into<String>) -> SourceError {
        SourceError::Connect {
            what: format!("IMAP server {}:{}", self.cfg.host, self.cfg.port),
            detail: detail.into(),
        }
    }

    fn protocol(&self, detail: impl Into<String>) -> SourceError {
        SourceError::Protocol {
            what: self.name(),
            detail: detail.into(),
        }
    }

    fn io_err(&self, doing: &str, source: io::Error) -> SourceError {
        SourceError::Io {
            what: format!("{}: {doing}", self.name()),
            source,
        }
    }

    fn imap_err(&self, doing: &str, e: async_imap::error::Error) -> SourceError {
        use async_imap::error::Error;
        match e {
            Error::Io(e) => self.io_err(doing, e),
            Error::ConnectionLost => self.io_err(doing, connection_closed()),
            Error::No(s) | Error::Bad(s) => {
                self.protocol(format!("{doing}: the server said {}", server_text(&s)))
            }
            e => self.protocol(format!("{doing}: {e}")),
        }
    }

    fn not_connected(&self) -> SourceError {
        self.io_err(
            "not connected",
            io::Error::new(io::ErrorKind::NotConnected, "no IMAP session"),
        )
    }

    /// Turns a failed command into an error and drops the session.
    fn failed(&mut self, doing: &str, e: CmdError) -> SourceError {
        self.link = None;
        // Exchange ends a session whose token expired with
        // `* BYE Session invalidated - AccessTokenExpired`: the next
        // connection must not offer the same token, whatever our clock says.
        let text = match &e {
            CmdError::Io(e) => e.to_string(),
            CmdError::Refused(t) => t.clone(),
        };
        if text.contains("AccessTokenExpired") {
            self.token_expired = true;
        }
        match e {
            CmdError::Io(e) => self.io_err(doing, e),
            CmdError::Refused(text) => self.protocol(format!("{doing}: the server said {text}")),
        }
    }

    /// Opens a session: TCP, TLS, greeting, login, capabilities, SELECT.
    async fn open(&self) -> Result<Link, SourceError> {
        self.open_and(true).await
    }

    /// Opens a session; `select`: also SELECT the configured mailbox.
    async fn open_and(&self, select: bool) -> Result<Link, SourceError> {
        let cfg = &self.cfg;
        if cfg.tls == TlsMode::None && !is_loopback_host(&cfg.host) {
            return Err(self.connect_err(
                "plaintext IMAP (tls = \"none\") is only allowed to a loopback host; \
                 set inbound.imap.tls to \"implicit\" or \"starttls\"",
            ));
        }
        let secret = match &self.tokens {
            Some(Err(e)) => {
                return Err(SourceError::Token {
                    what: self.name(),
                    detail: e.clone(),
                })
            }
            Some(Ok(tokens)) => {
                Secret::Token(tokens.token().await.map_err(|e| SourceError::Token {
                    what: self.name(),
                    detail: e.to_string(),
                })?)
            }
            None => Secret::Password(self.password()?),
        };
        let host = cfg.host.trim_start_matches('[').trim_end_matches(']');
        let tcp =
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, cfg.port))).await
            {
                Err(_) => {
                    return Err(self
                        .connect_err(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs())))
                }
                Ok(Err(e)) => return Err(self.connect_err(e.to_string())),
                Ok(Ok(tcp)) => tcp,
            };
        // IDLE notifications are small: do not let Nagle hold our DONE back.
        let _ = tcp.set_nodelay(true);
        match tokio::time::timeout(SETUP_TIMEOUT, self.setup(tcp, host, &secret, select)).await {
            Ok(r) => r,
            Err(_) => Err(self.connect_err(format!(
                "the server did not complete the greeting, TLS and login within {} s",
                SETUP_TIMEOUT.as_secs()
            ))),
        }
    }

    /// The password, read at every connect.
    fn password(&self) -> Result<String, SourceError> {
        let cfg = &self.cfg;
        let password = read_secret(&cfg.password_file).map_err(|e| {
            self.io_err(
                &format!(
                    "cannot read inbound.imap.password_file {}",
                    cfg.password_file.display()
                ),
                e,
            )
        })?;
        if password.is_empty() || password.contains(['\r', '\n', '\0']) {
            return Err(SourceError::Auth {
                what: self.name(),
                user: cfg.username.clone(),
                detail: format!(
                    "the password file {} is empty or has a line break inside the password; \
                     nothing was sent",
                    cfg.password_file.display()
                ),
            });
        }
        Ok(password)
    }

    async fn setup(
        &self,
        tcp: TcpStream,
        host: &str,
        secret: &Secret,
        select: bool,
    ) -> Result<Link, SourceError> {
        let cfg = &self.cfg;
        let mut client = match cfg.tls {
            TlsMode::Implicit => {
                let tls = self.tls_handshake(tcp, host).await?;
                let mut client = Client::new(Conn::new(Io::Tls(Box::new(tls))));
                self.greeting(&mut client).await?;
                client
            }
            TlsMode::Starttls => {
                let mut client = Client::new(Conn::new(Io::Plain(tcp)));
                self.greeting(&mut client).await?;
                client
                    .run_command_and_check_ok("STARTTLS", None)
                    .await
                    .map_err(|e| match e {
                        async_imap::error::Error::No(s) | async_imap::error::Error::Bad(s) => self
                            .connect_err(format!(
                                "the server refused STARTTLS ({}); check inbound.imap.tls and port",
                                server_text(&s)
                            )),
                        e => self.imap_err("STARTTLS", e),
                    })?;
                // Anything buffered after the OK is dropped with the client.
                let Io::Plain(tcp) = client.into_inner().io else {
                    return Err(self.protocol("STARTTLS on a TLS connection"));
                };
                let tls = self.tls_handshake(tcp, host).await?;
                Client::new(Conn::new(Io::Tls(Box::new(tls))))
            }
            TlsMode::None => {
                let mut client = Client::new(Conn::new(Io::Plain(tcp)));
                self.greeting(&mut client).await?;
                client
            }
        };

        let (mut session, caps) = match secret {
            Secret::Password(password) => {
                client
                    .get_mut()
                    .arm_password(PASSWORD_PLACEHOLDER, &quote_inner(password));
                let login = client
                    .login_with_capabilities(&cfg.username, PASSWORD_PLACEHOLDER)
                    .await;
                match login {
                    Ok(ok) => ok,
                    Err((e, _client)) => return Err(self.login_error(e)),
                }
            }
            Secret::Token(token) => (self.authenticate(client, host, token).await?, None),
        };
        session.get_mut().disarm_password();
        let (idle, can_move, uidplus) = match caps {
            Some(c) => (c.has_str("IDLE"), c.has_str("MOVE"), c.has_str("UIDPLUS")),
            None => {
                let c = session
                    .capabilities()
                    .await
                    .map_err(|e| self.imap_err("CAPABILITY", e))?;
                (c.has_str("IDLE"), c.has_str("MOVE"), c.has_str("UIDPLUS"))
            }
        };
        let mut link = Link {
            session,
            idle,
            can_move,
            uidplus,
            uid_validity: 0,
            new_mail: false,
            swept: false,
        };
        if !select {
            return Ok(link);
        }
        let select = format!("SELECT {}", mailbox_arg(&cfg.mailbox));
        let reply = link
            .exec(&select)
            .await
            .map_err(|e| self.cmd_error("SELECT", e))?;
        if !reply.ok() {
            return Err(self.protocol(format!(
                "cannot select inbound.imap.mailbox {:?}: the server said {}",
                cfg.mailbox, reply.text
            )));
        }
        link.uid_validity = reply
            .data
            .iter()
            .find_map(|i| match i {
                Item::UidValidity(v) => Some(*v),
                _ => None,
            })
            .ok_or_else(|| self.protocol("SELECT returned no UIDVALIDITY"))?;
        tracing::debug!(
            source = %self.name(),
            idle = link.idle,
            can_move = link.can_move,
            uid_validity = link.uid_validity,
            "IMAP session ready"
        );
        Ok(link)
    }

    /// `AUTHENTICATE XOAUTH2|OAUTHBEARER` with the token after the `+`.
    async fn authenticate(
        &self,
        mut client: Client<Conn>,
        host: &str,
        token: &AccessToken,
    ) -> Result<Session<Conn>, SourceError> {
        use base64::Engine;
        let cfg = &self.cfg;
        let Some(o) = &cfg.oauth else {
            return Err(self.protocol("no OAuth 2.0 settings"));
        };
        let response = sasl::initial_response(o.mechanism, &cfg.username, host, cfg.port, token);
        let placeholder = base64::engine::general_purpose::STANDARD.encode(TOKEN_PLACEHOLDER);
        client
            .get_mut()
            .arm_password(&placeholder, &response.base64());
        let auth = SaslAuth::default();
        match client.authenticate(o.mechanism.name(), &auth).await {
            Ok(session) => Ok(session),
            Err((e, _client)) => {
                if let Some(Ok(tokens)) = &self.tokens {
                    tokens.rejected(token).await;
                }
                Err(self.token_login_error(e, auth.error_challenge()))
            }
        }
    }

    fn token_login_error(
        &self,
        e: async_imap::error::Error,
        challenge: Option<Vec<u8>>,
    ) -> SourceError {
        use async_imap::error::Error;
        let mechanism = self.cfg.oauth.as_ref().map_or("", |o| o.mechanism.name());
        match e {
            Error::No(s) | Error::Bad(s) => {
                let text = server_text(&s);
                if text.contains("[UNAVAILABLE]") {
                    return self.connect_err(format!("login temporarily impossible: {text}"));
                }
                let why = challenge
                    .map(|c| format!("; {}", sasl::error_challenge_text(&c)))
                    .unwrap_or_default();
                SourceError::Token {
                    what: self.name(),
                    detail: format!(
                        "the server refused AUTHENTICATE {mechanism} for {}: {text}{why}",
                        self.cfg.username
                    ),
                }
            }
            e => self.imap_err(&format!("AUTHENTICATE {mechanism}"), e),
        }
    }

    /// `canvass check-mail`: logs in (token or password), reads the
    /// capabilities and the folder list, and logs out. Changes nothing.
    pub async fn check(&self) -> Result<ImapCheck, SourceError> {
        use futures::TryStreamExt;
        let link = self.open_and(false).await?;
        let mut session = link.session;
        let caps = session
            .capabilities()
            .await
            .map_err(|e| self.imap_err("CAPABILITY", e))?;
        let capabilities = caps
            .iter()
            .map(|c| match c {
                async_imap::types::Capability::Imap4rev1 => "IMAP4rev1".to_string(),
                async_imap::types::Capability::Auth(a) => format!("AUTH={a}"),
                async_imap::types::Capability::Atom(a) => a.to_string(),
            })
            .collect();
        let names: Vec<async_imap::types::Name> = session
            .list(Some(""), Some("*"))
            .await
            .map_err(|e| self.imap_err("LIST", e))?
            .try_collect()
            .await
            .map_err(|e| self.imap_err("LIST", e))?;
        let folders: Vec<String> = names.iter().map(|n| n.name().to_string()).collect();
        let exists = |want: &str| {
            let wire = mutf7(want);
            folders
                .iter()
                .any(|f| f == &wire || same_mailbox(f, "INBOX") && same_mailbox(want, "INBOX"))
        };
        let check = ImapCheck {
            mailbox_exists: exists(&self.cfg.mailbox),
            move_to_exists: self.cfg.move_to.as_deref().map(exists),
            capabilities,
            folders,
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), session.logout()).await;
        Ok(check)
    }

    fn cmd_error(&self, doing: &str, e: CmdError) -> SourceError {
        match e {
            CmdError::Io(e) => self.io_err(doing, e),
            CmdError::Refused(text) => self.protocol(format!("{doing}: the server said {text}")),
        }
    }

    fn login_error(&self, e: async_imap::error::Error) -> SourceError {
        use async_imap::error::Error;
        let cfg = &self.cfg;
        match e {
            Error::No(s) | Error::Bad(s) => {
                let text = server_text(&s);
                if text.contains("[UNAVAILABLE]") {
                    // The server's authentication backend is down: retry.
                    return self.connect_err(format!("login temporarily impossible: {text}"));
                }
                let hint = if text.contains("[PRIVACYREQUIRED]") {
                    "; the server wants TLS: set inbound.imap.tls"
                } else {
                    ""
                };
                SourceError::Auth {
                    what: self.name(),
                    user: cfg.username.clone(),
                    detail: format!(
                        "{text}{hint} (password read from {})",
                        cfg.password_file.display()
                    ),
                }
            }
            Error::Validate(_) => SourceError::Auth {
                what: self.name(),
                user: cfg.username.clone(),
                detail: "the user name contains a line break".into(),
            },
            e => self.imap_err("LOGIN", e),
        }
    }

    async fn greeting(&self, client: &mut Client<Conn>) -> Result<(), SourceError> {
        let r = client
            .read_response()
            .await
            .map_err(|e| self.io_err("reading the greeting", e))?;
        let Some(r) = r else {
            return Err(self.connect_err("the server closed the connection before its greeting"));
        };
        match r.parsed() {
            Response::Data {
                status: Status::Ok, ..
            } => Ok(()),
            Response::Data {
                status: Status::Bye,
                outcome,
            } => Err(self.connect_err(format!(
                "the server refused the connection: {}",
                outcome.information.as_deref().unwrap_or("BYE")
            ))),
            Response::Data {
                status: Status::PreAuth,
                ..
            } => Err(self.protocol(
                "the server pre-authenticated the connection (PREAUTH), which is not supported",
            )),
            other => Err(self.protocol(format!(
                "unexpected greeting: {:.200}",
                format!("{other:?}")
            ))),
        }
    }

    async fn tls_handshake(
        &self,
        tcp: TcpStream,
        host: &str,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, SourceError> {
        let config = crate::tls::client_config(self.cfg.ca_file.as_deref(), "inbound.imap.ca_file")
            .map_err(|e| self.connect_err(e))?;
        let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| {
            self.connect_err(format!("{host:?} is not a valid TLS server name: {e}"))
        })?;
        tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| self.connect_err(format!("TLS handshake failed: {e}")))
    }

    /// Finds and reads the next messages above the stored mark.
    async fn fetch_inner(
        &mut self,
        store: &Store,
        limit: usize,
    ) -> Result<Vec<Incoming>, SourceError> {
        let name = self.name();
        let max_bytes = self.cfg.max_message_bytes;
        let Some(link) = self.link.as_mut() else {
            return Err(self.not_connected());
        };
        let validity = link.uid_validity;
        let stored = store.ingest_mark(&name).map_err(|e| {
            self.protocol(format!("cannot read the ingest mark from the store: {e}"))
        })?;
        let (last_uid, reset) = resume_point(stored, validity);
        if reset {
            tracing::warn!(
                source = %name,
                old = stored.map(|m| m.uid_validity),
                new = validity,
                "the mailbox's UIDVALIDITY changed; reading it again from the start (already processed messages are recognised by Message-ID)"
            );
            store
                .set_ingest_mark(
                    &name,
                    IngestMark {
                        uid_validity: validity,
                        last_uid: 0,
                    },
                )
                .map_err(|e| self.protocol(format!("cannot store the ingest mark: {e}")))?;
        }
        if !self.link.as_ref().is_some_and(|l| l.swept) {
            self.sweep(last_uid).await?;
        }
        let Some(link) = self.link.as_mut() else {
            return Err(self.not_connected());
        };
        link.new_mail = false;
        self.more_waiting = false;
        if limit == 0 {
            return Ok(Vec::new());
        }

        // A server shows new mail to a session only at a command's end (as
        // EXISTS): NOOP first, so that the search sees what has arrived.
        match link.exec("NOOP").await {
            Ok(r) if r.ok() => {}
            Ok(r) => return Err(self.failed("NOOP", CmdError::Refused(r.text))),
            Err(e) => return Err(self.failed("NOOP", e)),
        }
        let Some(link) = self.link.as_mut() else {
            return Err(self.not_connected());
        };
        link.new_mail = false;
        let search = format!("UID SEARCH UID {}:*", last_uid.saturating_add(1));
        let found = match link.exec(&search).await {
            Ok(r) if r.ok() => uids_from_search(&r.data),
            Ok(r) => return Err(self.failed("UID SEARCH", CmdError::Refused(r.text))),
            Err(e) => return Err(self.failed("UID SEARCH", e)),
        };
        let waiting = uids_above(found, last_uid);
        if waiting.is_empty() {
            return Ok(Vec::new());
        }
        let wanted = &waiting[..waiting.len().min(limit)];

        // Sizes and dates first, to decide what to read whole.
        let meta_cmd = format!(
            "UID FETCH {} (UID RFC822.SIZE INTERNALDATE)",
            uid_set(wanted)
        );
        let Some(link) = self.link.as_mut() else {
            return Err(self.not_connected());
        };
        let meta = match link.exec(&meta_cmd).await {
            Ok(r) if r.ok() || !r.data.is_empty() => r,
            Ok(r) => return Err(self.failed("UID FETCH", CmdError::Refused(r.text))),
            Err(e) => return Err(self.failed("UID FETCH", e)),
        };
        let mut metas: Vec<Meta> = meta
            .data
            .iter()
            .filter_map(|i| match i {
                Item::Fetch(f) if wanted.binary_search(&f.uid).is_ok() => Some(Meta {
                    uid: f.uid,
                    size: f.size.map(u64::from).unwrap_or(0),
                    received: f.internal_date.as_deref().and_then(parse_internal_date),
                }),
                _ => None,
            })
            .collect();
        metas.sort_by_key(|m| m.uid);
        metas.dedup_by_key(|m| m.uid);
        drop(meta);
        let plan = plan_batch(&metas, max_bytes, BATCH_BYTES.max(max_bytes));
        self.more_waiting = plan.len() < waiting.len();

        let whole: Vec<u32> = plan.iter().filter(|p| !p.1).map(|p| p.0.uid).collect();
        let heads: Vec<u32> = plan.iter().filter(|p| p.1).map(|p| p.0.uid).collect();
        let mut bodies: Vec<(u32, Vec<u8>)> = Vec::with_capacity(plan.len());
        let mut refused: Option<String> = None;
        for (uids, item) in [(&whole, "BODY.PEEK[]"), (&heads, "BODY.PEEK[HEADER]")] {
            if uids.is_empty() {
                continue;
            }
            let cmd = format!("UID FETCH {} (UID {item})", uid_set(uids));
            let Some(link) = self.link.as_mut() else {
                return Err(self.not_connected());
            };
            let reply = match link.exec(&cmd).await {
                Ok(r) => r,
                Err(e) => return Err(self.failed("UID FETCH", e)),
            };
            if !reply.ok() {
                tracing::warn!(source = %name, uids = %uid_set(uids), server = %reply.text, "the server could not return some messages");
                refused = Some(reply.text.clone());
            }
            for i in reply.data {
                let Item::Fetch(f) = i else {
                    continue;
                };
                if uids.binary_search(&f.uid).is_err() {
                    continue;
                }
                let data = if item == "BODY.PEEK[]" {
                    f.body
                } else {
                    f.header
                };
                if let Some(data) = data {
                    bodies.push((f.uid, data));
                }
            }
        }
        if let (true, Some(text)) = (bodies.is_empty(), refused) {
            // Nothing readable: try again later rather than skip past it.
            return Err(self.failed("UID FETCH", CmdError::Refused(text)));
        }

        let mut out = Vec::with_capacity(bodies.len());
        for (meta, headers_only) in plan {
            let Some(pos) = bodies.iter().position(|b| b.0 == meta.uid) else {
                tracing::debug!(source = %name, uid = meta.uid, "message vanished before it was read");
                continue;
            };
            let raw = bodies.swap_remove(pos).1;
            let received = meta.received.unwrap_or_else(|| {
                tracing::warn!(source = %name, uid = meta.uid, "no usable INTERNALDATE; using the time of reading");
                Utc::now()
            });
            out.push(Incoming {
                id: meta.uid.to_string(),
                raw,
                received,
                mark: Some(IngestMark {
                    uid_validity: validity,
                    last_uid: meta.uid,
                }),
                headers_only,
            });
        }
        Ok(out)
    }

    /// After a reconnect: messages at or below the mark were committed but,
    /// if marking failed, may still sit unmarked in the mailbox. Marks them.
    async fn sweep(&mut self, last_uid: u32) -> Result<(), SourceError> {
        let moving = self.moving();
        let Some(link) = self.link.as_mut() else {
            return Err(self.not_connected());
        };
        link.swept = true;
        if last_uid == 0 {
            return Ok(());
        }
        let cmd = if moving {
            format!("UID SEARCH UID 1:{last_uid}")
        } else {
            format!("UID SEARCH UID 1:{last_uid} UNSEEN")
        };
        let left = match link.exec(&cmd).await {
            Ok(r) if r.ok() => uids_from_search(&r.data),
            Ok(r) => return Err(self.failed("UID SEARCH", CmdError::Refused(r.text))),
            Err(e) => return Err(self.failed("UID SEARCH", e)),
        };
        let mut left: Vec<u32> = left.into_iter().filter(|u| *u <= last_uid).collect();
        left.sort_unstable();
        left.dedup();
        if left.is_empty() {
            return Ok(());
        }
        tracing::info!(source = %self.name(), count = left.len(), "marking messages processed earlier but not marked on the server");
        for chunk in left.chunks(SWEEP_CHUNK) {
            self.mark_uids(chunk).await?;
        }
        Ok(())
    }

    /// Whether processed mail is to be moved (and can be).
    fn moving(&self) -> bool {
        match (&self.cfg.move_to, &self.link) {
            (Some(to), Some(link)) => link.can_move && !same_mailbox(to, &self.cfg.mailbox),
            _ => false,
        }
    }

    /// `\Seen` on `uids`, then the move when configured. `uids` is sorted.
    async fn mark_uids(&mut self, uids: &[u32]) -> Result<(), SourceError> {
        if uids.is_empty() {
            return Ok(());
        }
        let set = uid_set(uids);
        let Some(link) = self.link.as_mut() else {
            return Err(self.not_connected());
        };
        let store_cmd = format!("UID STORE {set} +FLAGS.SILENT (\\Seen)");
        match link.exec(&store_cmd).await {
            Ok(r) if r.ok() => {}
            Ok(r) => return Err(self.failed("UID STORE", CmdError::Refused(r.text))),
            Err(e) => return Err(self.failed("UID STORE", e)),
        }
        let Some(to) = self.cfg.move_to.clone() else {
            return Ok(());
        };
        if same_mailbox(&to, &self.cfg.mailbox) {
            if !self.told_move_to_self {
                self.told_move_to_self = true;
                tracing::warn!(source = %self.name(), "inbound.imap.move_to is the mailbox itself; processed mail is left in place");
            }
            return Ok(());
        }
        if !self.link.as_ref().is_some_and(|l| l.can_move) {
            if !self.told_no_move {
                self.told_no_move = true;
                tracing::warn!(source = %self.name(), move_to = %to, "the IMAP server has no MOVE capability; processed mail stays in the mailbox, marked \\Seen");
            }
            return Ok(());
        }
        if !self.move_folder_ready {
            self.ensure_folder(&to).await?;
        }
        let move_cmd = format!("UID MOVE {set} {}", mailbox_arg(&to));
        let Some(link) = self.link.as_mut() else {
            return Err(self.not_connected());
        };
        let reply = match link.exec(&move_cmd).await {
            Ok(r) => r,
            Err(e) => return Err(self.failed("UID MOVE", e)),
        };
        if reply.ok() {
            return Ok(());
        }
        if reply.text.contains("[TRYCREATE]") {
            // The folder went away since it was created: once more.
            self.move_folder_ready = false;
            self.ensure_folder(&to).await?;
            let Some(link) = self.link.as_mut() else {
                return Err(self.not_connected());
            };
            match link.exec(&move_cmd).await {
                Ok(r) if r.ok() => return Ok(()),
                Ok(r) => return Err(self.failed("UID MOVE", CmdError::Refused(r.text))),
                Err(e) => return Err(self.failed("UID MOVE", e)),
            }
        }
        Err(self.failed("UID MOVE", CmdError::Refused(reply.text)))
    }

    /// Creates `move_to` unless it exists.
    async fn ensure_folder(&mut self, to: &str) -> Result<(), SourceError> {
        self.create_folder(to, "inbound.imap.move_to").await?;
        self.move_folder_ready = true;
        Ok(())
    }

    /// Moves unreadable messages to `inbound.imap.quarantine` (created if
    /// missing); without MOVE, copies them there and marks them \Seen.
    async fn quarantine_uids(&mut self, uids: &[u32]) -> Result<(), SourceError> {
        if uids.is_empty() {
            return Ok(());
        }
        let folder = self.cfg.quarantine.clone();
        self.create_folder(&folder, "inbound.imap.quarantine")
            .await?;
        let set = uid_set(uids);
        let can_move = self.link.as_ref().is_some_and(|l| l.can_move);
        let cmds = if can_move {
            vec![format!("UID MOVE {set} {}", mailbox_arg(&folder))]
        } else {
            vec![
                format!("UID COPY {set} {}", mailbox_arg(&folder)),
                format!("UID STORE {set} +FLAGS.SILENT (\\Seen)"),
            ]
        };
        for cmd in cmds {
            let Some(link) = self.link.as_mut() else {
                return Err(self.not_connected());
            };
            match link.exec(&cmd).await {
                Ok(r) if r.ok() => {}
                Ok(r) => return Err(self.failed("quarantine", CmdError::Refused(r.text))),
                Err(e) => return Err(self.failed("quarantine", e)),
            }
        }
        Ok(())
    }

    /// Creates the folder `name` (the config key `key`) unless it exists.
    async fn create_folder(&mut self, name: &str, key: &str) -> Result<(), SourceError> {
        let to = name;
        let arg = mailbox_arg(to);
        let Some(link) = self.link.as_mut() else {
            return Err(self.not_connected());
        };
        let exists = match link.exec(&format!("LIST \"\" {arg}")).await {
            Ok(r) if r.ok() => r.data.iter().any(|i| matches!(i, Item::List { .. })),
            Ok(r) => return Err(self.failed("LIST", CmdError::Refused(r.text))),
            Err(e) => return Err(self.failed("LIST", e)),
        };
        if !exists {
            let Some(link) = self.link.as_mut() else {
                return Err(self.not_connected());
            };
            match link.exec(&format!("CREATE {arg}")).await {
                Ok(r) if r.ok() || r.text.contains("[ALREADYEXISTS]") => {
                    tracing::info!(source = %self.name(), folder = %to, key, "created the folder");
                }
                Ok(r) => {
                    let detail = format!("cannot create {key} {to:?}: the server said {}", r.text);
                    self.link = None;
                    return Err(self.protocol(detail));
                }
                Err(e) => return Err(self.failed("CREATE", e)),
            }
        }
        Ok(())
    }

    /// IDLE until new mail, the re-issue time, or shutdown.
    async fn idle(&mut self, shutdown: &Shutdown) -> Result<(), SourceError> {
        let Some(link) = self.link.as_mut() else {
            return Err(self.not_connected());
        };
        match link.idle(shutdown).await {
            Ok(IdleEnd::Usable) => Ok(()),
            Ok(IdleEnd::Dropped) => {
                self.link = None;
                Ok(())
            }
            Err(e) => Err(self.failed("IDLE", e)),
        }
    }
}

fn connection_closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the server closed the connection",
    )
}

impl MailSource for ImapSource {
    fn name(&self) -> String {
        format!(
            "imap:{}@{}/{}",
            self.cfg.username, self.cfg.host, self.cfg.mailbox
        )
    }

    async fn connect(&mut self) -> Result<(), SourceError> {
        self.link = None;
        self.more_waiting = false;
        if std::mem::take(&mut self.token_expired) {
            if let Some(Ok(tokens)) = &self.tokens {
                tokens.expire().await;
            }
        }
        let link = self.open().await?;
        self.link = Some(link);
        Ok(())
    }

    async fn fetch(&mut self, store: &Store, limit: usize) -> Result<Vec<Incoming>, SourceError> {
        let r = self.fetch_inner(store, limit).await;
        if r.is_err() {
            self.link = None;
        }
        r
    }

    async fn mark_processed(&mut self, done: &[Incoming]) -> Result<(), SourceError> {
        let Some(validity) = self.link.as_ref().map(|l| l.uid_validity) else {
            return Err(self.not_connected());
        };
        let uids = uids_to_mark(done, validity);
        if uids.len() < done.len() {
            tracing::warn!(source = %self.name(), "some processed messages belong to an earlier UIDVALIDITY and are not marked");
        }
        let r = self.mark_uids(&uids).await;
        if r.is_err() {
            self.link = None;
        }
        r
    }

    async fn quarantine(&mut self, unreadable: &[Incoming]) -> Result<(), SourceError> {
        let Some(validity) = self.link.as_ref().map(|l| l.uid_validity) else {
            return Err(self.not_connected());
        };
        let uids = uids_to_mark(unreadable, validity);
        let r = self.quarantine_uids(&uids).await;
        if r.is_err() {
            self.link = None;
        }
        r
    }

    async fn wait_for_mail(&mut self, shutdown: &Shutdown) -> Result<(), SourceError> {
        if shutdown.is_triggered() {
            return Ok(());
        }
        let Some(link) = self.link.as_mut() else {
            return Err(self.not_connected());
        };
        if link.new_mail || self.more_waiting {
            link.new_mail = false;
            self.more_waiting = false;
            return Ok(());
        }
        if link.idle {
            let r = self.idle(shutdown).await;
            if r.is_err() {
                self.link = None;
            }
            return r;
        }
        if shutdown.sleep(self.poll).await {
            return Ok(());
        }
        let Some(link) = self.link.as_mut() else {
            return Err(self.not_connected());
        };
        match link.exec("NOOP").await {
            Ok(r) if r.ok() => Ok(()),
            Ok(r) => Err(self.failed("NOOP", CmdError::Refused(r.text))),
            Err(e) => Err(self.failed("NOOP", e)),
        }
    }
}

// ---------------------------------------------------------------------------
// Commands.
// ---------------------------------------------------------------------------

enum CmdError {
    /// The connection failed.
    Io(io::Error),
    /// The server answered NO or BAD where the caller cannot go on.
    Refused(String),
}

/// How an IDLE ended.
enum IdleEnd {
    Usable,
    /// At shutdown the server did not confirm DONE in time: session dropped.
    Dropped,
}

enum Waited {
    Response(Result<Got, CmdError>),
    Deadline,
    Shutdown,
}

fn imap_io(e: async_imap::error::Error) -> CmdError {
    match e {
        async_imap::error::Error::Io(e) => CmdError::Io(e),
        e => CmdError::Io(io::Error::other(e.to_string())),
    }
}

/// One server response, owned (async-imap's `ResponseData` cannot be named
/// outside the crate).
enum Got {
    Done {
        tag: RequestId,
        status: Status,
        text: String,
    },
    Continue,
    Bye(String),
    Item(Item),
}

/// The untagged data used here.
enum Item {
    NewMail,
    UidValidity(u32),
    Search(Vec<u32>),
    Fetch(Fetched),
    /// A LIST answer: the name as the server wrote it (modified UTF-7) and
    /// whether it carries the `\Sent` special-use attribute (RFC 6154).
    List {
        name: String,
        sent: bool,
    },
    Other,
}

fn digest(r: &Response<'_>) -> Got {
    match r {
        Response::Done {
            tag,
            status,
            outcome,
        } => Got::Done {
            tag: tag.clone(),
            status: status_copy(status),
            text: outcome_text(outcome.code.as_ref(), outcome.information.as_deref()),
        },
        Response::Continue(_) => Got::Continue,
        Response::Data {
            status: Status::Bye,
            outcome,
        } => Got::Bye(format!(
            "the server closed the session: {}",
            outcome.information.as_deref().unwrap_or("BYE")
        )),
        Response::Data {
            status: Status::Ok,
            outcome,
        } => match outcome.code {
            Some(ResponseCode::UidValidity(v)) => Got::Item(Item::UidValidity(v)),
            _ => Got::Item(Item::Other),
        },
        Response::MailboxData(MailboxDatum::Exists(_))
        | Response::MailboxData(MailboxDatum::Recent(_)) => Got::Item(Item::NewMail),
        Response::MailboxData(MailboxDatum::Search(v)) => Got::Item(Item::Search(v.clone())),
        Response::MailboxData(MailboxDatum::List(l)) => Got::Item(Item::List {
            name: l.name.to_string(),
            sent: l
                .name_attributes
                .iter()
                .any(|a| matches!(a, async_imap::imap_proto::NameAttribute::Sent)),
        }),
        Response::Fetch(..) => match parse_fetch(r) {
            Some(f) => Got::Item(Item::Fetch(f)),
            None => Got::Item(Item::Other),
        },
        _ => Got::Item(Item::Other),
    }
}

impl Link {
    /// The next response, digested; the end of the stream is an error, with
    /// the server's BYE text when it sent one.
    async fn next(&mut self, bye: &mut Option<String>) -> Result<Got, CmdError> {
        let got = read_one(&mut self.session, bye).await?;
        if let Got::Item(Item::NewMail) = got {
            self.new_mail = true;
        }
        Ok(got)
    }

    /// Runs one command and reads every response up to its tagged status.
    /// The status is left to the caller (async-imap's own fetch and store
    /// helpers do not check it). EXISTS along the way is noted.
    async fn exec(&mut self, cmd: &str) -> Result<Reply, CmdError> {
        tracing::debug!(command = %cmd, "IMAP");
        let tag = self.session.run_command(cmd).await.map_err(imap_io)?;
        let mut data = Vec::new();
        let mut bye = None;
        loop {
            match self.next(&mut bye).await? {
                Got::Done {
                    tag: t,
                    status,
                    text,
                } if t == tag => return Ok(Reply { data, status, text }),
                Got::Item(i) => data.push(i),
                _ => {}
            }
        }
    }

    /// IDLE (RFC 2177) until EXISTS, the re-issue time or shutdown, then DONE.
    ///
    /// Done by hand rather than with async-imap's `Handle`: that one sends
    /// responses arriving before the continuation to a side channel that is
    /// out of reach while idling (an EXISTS there would be missed for 25
    /// minutes), restarts its timeout on every `* OK Still here`, and reports
    /// a closed connection as a manual interrupt.
    async fn idle(&mut self, shutdown: &Shutdown) -> Result<IdleEnd, CmdError> {
        let tag = self.session.run_command("IDLE").await.map_err(imap_io)?;
        let mut bye = None;
        loop {
            match self.next(&mut bye).await? {
                Got::Continue => break,
                Got::Done {
                    tag: t,
                    status,
                    text,
                } if t == tag => {
                    if status == Status::Ok {
                        return Ok(IdleEnd::Usable);
                    }
                    return Err(CmdError::Refused(text));
                }
                _ => {}
            }
        }
        self.session.get_mut().set_io_timeout(None);
        let deadline = Instant::now() + IDLE_REISSUE;
        let mut at_shutdown = false;
        while !self.new_mail {
            let waited = tokio::select! {
                r = read_one(&mut self.session, &mut bye) => Waited::Response(r),
                _ = tokio::time::sleep_until(deadline) => Waited::Deadline,
                _ = shutdown.wait() => Waited::Shutdown,
            };
            match waited {
                Waited::Deadline => break,
                Waited::Shutdown => {
                    at_shutdown = true;
                    break;
                }
                Waited::Response(Err(e)) => return Err(e),
                Waited::Response(Ok(Got::Item(Item::NewMail))) => self.new_mail = true,
                Waited::Response(Ok(Got::Done { tag: t, .. })) if t == tag => {
                    // The server ended the IDLE itself.
                    self.session.get_mut().set_io_timeout(Some(IO_TIMEOUT));
                    return Ok(IdleEnd::Usable);
                }
                // Keepalives, flag changes, expunges: nothing to read.
                Waited::Response(Ok(_)) => {}
            }
        }
        self.session.get_mut().set_io_timeout(Some(IO_TIMEOUT));
        let finish = async {
            self.session
                .run_command_untagged("DONE")
                .await
                .map_err(imap_io)?;
            loop {
                if let Got::Done { tag: t, .. } = self.next(&mut bye).await? {
                    if t == tag {
                        return Ok(());
                    }
                }
            }
        };
        if at_shutdown {
            return match tokio::time::timeout(DONE_AT_SHUTDOWN, finish).await {
                Ok(Ok(())) => Ok(IdleEnd::Usable),
                Ok(Err(_)) | Err(_) => Ok(IdleEnd::Dropped),
            };
        }
        finish.await.map(|()| IdleEnd::Usable)
    }
}

/// Reads and digests one response. Cancel-safe: a response half read stays
/// in async-imap's buffer.
async fn read_one(session: &mut Session<Conn>, bye: &mut Option<String>) -> Result<Got, CmdError> {
    match session.read_response().await {
        Ok(Some(r)) => {
            let got = digest(r.parsed());
            if let Got::Bye(text) = &got {
                *bye = Some(text.clone());
            }
            Ok(got)
        }
        Ok(None) => Err(closed_with(bye)),
        Err(e) => Err(CmdError::Io(e)),
    }
}

fn closed_with(bye: &Option<String>) -> CmdError {
    CmdError::Io(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        bye.clone()
            .unwrap_or_else(|| "the server closed the connection".into()),
    ))
}

fn status_copy(s: &Status) -> Status {
    match s {
        Status::Ok => Status::Ok,
        Status::No => Status::No,
        Status::Bad => Status::Bad,
        Status::PreAuth => Status::PreAuth,
        Status::Bye => Status::Bye,
    }
}

fn outcome_text(code: Option<&ResponseCode<'_>>, info: Option<&str>) -> String {
    let info = info.unwrap_or("").trim();
    match code {
        Some(ResponseCode::TryCreate) => format!("[TRYCREATE] {info}"),
        Some(c) => format!("[{c:?}] {info}"),
        None => info.to_string(),
    }
}

/// The server's words from async-imap's `No`/`Bad` error text, which reads
/// `code: Some(..), info: Some("...")`.
fn server_text(s: &str) -> String {
    const INFO: &str = "info: Some(\"";
    const CODE: &str = "code: Some(";
    let Some(i) = s.find(INFO) else {
        return s.to_string();
    };
    let rest = s.get(i + INFO.len()..).unwrap_or("");
    let rest = rest.strip_suffix("\")").unwrap_or(rest);
    let text = rest.replace("\\\"", "\"").replace("\\\\", "\\");
    let code = s
        .get(..i)
        .and_then(|head| head.find(CODE).and_then(|j| head.get(j + CODE.len()..)))
        .map(|c| c.trim_end_matches([',', ' ', ')']));
    match code {
        Some(code) if !code.is_empty() => format!("[{code}] {text}"),
        _ => text,
    }
}

// ---------------------------------------------------------------------------
// Pure helpers.
// ---------------------------------------------------------------------------

/// Where to read on from: `(last_uid, reset)`; reset when the mailbox's
/// UIDVALIDITY is not the stored one.
fn resume_point(stored: Option<IngestMark>, uid_validity: u32) -> (u32, bool) {
    match stored {
        Some(m) if m.uid_validity == uid_validity => (m.last_uid, false),
        Some(_) => (0, true),
        None => (0, false),
    }
}

/// The UIDs above `last`, sorted, without repeats (`n:*` also matches the
/// highest message when its UID is below `n`).
fn uids_above(found: Vec<u32>, last: u32) -> Vec<u32> {
    let mut v: Vec<u32> = found.into_iter().filter(|u| *u > last).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// An IMAP sequence set for sorted UIDs: `1:3,7,9:10`.
fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end.wrapping_add(1) && uids[i + 1] > end {
            end = uids[i + 1];
            i += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// The UIDs of processed messages that belong to the current UIDVALIDITY,
/// sorted.
fn uids_to_mark(done: &[Incoming], uid_validity: u32) -> Vec<u32> {
    let mut uids: Vec<u32> = done
        .iter()
        .filter(|m| m.mark.is_none_or(|k| k.uid_validity == uid_validity))
        .filter_map(|m| m.id.parse::<u32>().ok())
        .filter(|u| *u > 0)
        .collect();
    uids.sort_unstable();
    uids.dedup();
    uids
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Meta {
    uid: u32,
    size: u64,
    received: Option<DateTime<Utc>>,
}

/// The messages to read this round, in order, with whether only the header
/// is read: stops before the bodies read pass `budget` (at least one message).
fn plan_batch(metas: &[Meta], max_message_bytes: u64, budget: u64) -> Vec<(Meta, bool)> {
    let mut out = Vec::new();
    let mut total: u64 = 0;
    for m in metas {
        let headers_only = m.size > max_message_bytes;
        let cost = if headers_only { 64 * 1024 } else { m.size };
        if !out.is_empty() && total.saturating_add(cost) > budget {
            break;
        }
        total = total.saturating_add(cost);
        out.push((*m, headers_only));
    }
    out
}

fn same_mailbox(a: &str, b: &str) -> bool {
    if a.eq_ignore_ascii_case("INBOX") || b.eq_ignore_ascii_case("INBOX") {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

struct Fetched {
    uid: u32,
    size: Option<u32>,
    internal_date: Option<String>,
    body: Option<Vec<u8>>,
    header: Option<Vec<u8>>,
}

/// The parts of a FETCH response used here; `None` without a UID.
fn parse_fetch(r: &Response<'_>) -> Option<Fetched> {
    let Response::Fetch(_, attrs) = r else {
        return None;
    };
    let mut f = Fetched {
        uid: 0,
        size: None,
        internal_date: None,
        body: None,
        header: None,
    };
    for a in attrs {
        match a {
            AttributeValue::Uid(u) => f.uid = *u,
            AttributeValue::Rfc822Size(s) => f.size = Some(*s),
            AttributeValue::InternalDate(d) => f.internal_date = Some(d.to_string()),
            AttributeValue::BodySection {
                section: None,
                data: Some(d),
                ..
            }
            | AttributeValue::Rfc822(Some(d)) => f.body = Some(d.to_vec()),
            AttributeValue::BodySection {
                section: Some(SectionPath::Full(MessageSection::Header)),
                data: Some(d),
                ..
            }
            | AttributeValue::Rfc822Header(Some(d)) => f.header = Some(d.to_vec()),
            _ => {}
        }
    }
    (f.uid != 0).then_some(f)
}

fn uids_from_search(data: &[Item]) -> Vec<u32> {
    data.iter()
        .filter_map(|i| match i {
            Item::Search(v) => Some(v.iter().copied()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// INTERNALDATE (`17-Jul-1996 02:44:25 -0700`, day possibly space-padded).
fn parse_internal_date(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_str(s.trim(), "%d-%b-%Y %H:%M:%S %z")
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// The inside of an IMAP quoted string.
fn quote_inner(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A mailbox name as a command argument: modified UTF-7, quoted.
fn mailbox_arg(name: &str) -> String {
    let enc = mutf7(name);
    format!("\"{}\"", quote_inner(&enc))
}

/// Modified UTF-7 (RFC 3501 5.1.3) for mailbox names.
fn mutf7(s: &str) -> String {
    use base64::engine::{general_purpose::GeneralPurposeConfig, GeneralPurpose};
    use base64::Engine;
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::IMAP_MUTF7,
        GeneralPurposeConfig::new().with_encode_padding(false),
    );
    let mut out = String::new();
    let mut run: Vec<u16> = Vec::new();
    let flush = |run: &mut Vec<u16>, out: &mut String| {
        if run.is_empty() {
            return;
        }
        let bytes: Vec<u8> = run.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        out.push_str(&ENGINE.encode(bytes));
        out.push('-');
        run.clear();
    };
    for c in s.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut run, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            run.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut run, &mut out);
    out
}

// ---------------------------------------------------------------------------
// The socket: plain or TLS, with stall timeouts and the password swap.
// ---------------------------------------------------------------------------

enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    #[cfg(test)]
    Mock(tokio::io::DuplexStream),
}

/// The IMAP connection's byte stream.
///
/// Reads and writes that stay pending for `io_timeout` fail with `TimedOut`.
/// While a password is armed, the first write that contains the placeholder
/// goes out with the password instead (async-imap only ever sees and logs the
/// placeholder).
struct Conn {
    io: Io,
    io_timeout: Option<Duration>,
    read_stall: Option<Pin<Box<Sleep>>>,
    write_stall: Option<Pin<Box<Sleep>>>,
    secret: Option<(Vec<u8>, Vec<u8>)>,
    /// A rewritten write in progress: bytes, how far written, length reported.
    pending: Option<(Vec<u8>, usize, usize)>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.io {
            Io::Plain(_) => "plain",
            Io::Tls(_) => "tls",
            #[cfg(test)]
            Io::Mock(_) => "mock",
        };
        f.debug_struct("Conn")
            .field("io", &kind)
            .finish_non_exhaustive()
    }
}

impl Conn {
    fn new(io: Io) -> Conn {
        Conn {
            io,
            io_timeout: Some(IO_TIMEOUT),
            read_stall: None,
            write_stall: None,
            secret: None,
            pending: None,
        }
    }

    fn set_io_timeout(&mut self, t: Option<Duration>) {
        self.io_timeout = t;
        self.read_stall = None;
        self.write_stall = None;
    }

    fn arm_password(&mut self, placeholder: &str, value: &str) {
        self.secret = Some((placeholder.as_bytes().to_vec(), value.as_bytes().to_vec()));
    }

    fn disarm_password(&mut self) {
        self.secret = None;
    }

    fn poll_write_io(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            #[cfg(test)]
            Io::Mock(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    /// Whether a pending operation has stalled past the timeout.
    fn stalled(
        stall: &mut Option<Pin<Box<Sleep>>>,
        limit: Option<Duration>,
        cx: &mut Context<'_>,
    ) -> bool {
        let Some(limit) = limit else {
            *stall = None;
            return false;
        };
        let sleep = stall.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if sleep.as_mut().poll(cx).is_ready() {
            *stall = None;
            true
        } else {
            false
        }
    }

    fn timed_out(what: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the server did not {what} for {} s", IO_TIMEOUT.as_secs()),
        )
    }

    fn write_progress(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match r {
            Poll::Ready(r) => {
                self.write_stall = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                if Self::stalled(&mut self.write_stall, self.io_timeout, cx) {
                    Poll::Ready(Err(Self::timed_out("accept data")))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            #[cfg(test)]
            Io::Mock(s) => Pin::new(s).poll_read(cx, buf),
        };
        match r {
            Poll::Ready(r) => {
                this.read_stall = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                if Conn::stalled(&mut this.read_stall, this.io_timeout, cx) {
                    Poll::Ready(Err(Conn::timed_out("answer")))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pending.is_none() {
            if let Some((placeholder, value)) = &this.secret {
                if let Some(at) = find(buf, placeholder) {
                    let mut out = Vec::with_capacity(buf.len() + value.len());
                    out.extend_from_slice(&buf[..at]);
                    out.extend_from_slice(value);
                    out.extend_from_slice(&buf[at + placeholder.len()..]);
                    this.pending = Some((out, 0, buf.len()));
                    this.secret = None;
                }
            }
        }
        // While a rewritten write is under way the caller repeats the same
        // `buf` (nothing of it was reported written yet).
        while let Some((bytes, done, reported)) = this.pending.take() {
            if done >= bytes.len() {
                return Poll::Ready(Ok(reported));
            }
            let r = this.poll_write_io(cx, &bytes[done..]);
            match this.write_progress(cx, r) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => this.pending = Some((bytes, done + n, reported)),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    this.pending = Some((bytes, done, reported));
                    return Poll::Pending;
                }
            }
        }
        let r = this.poll_write_io(cx, buf);
        this.write_progress(cx, r)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            #[cfg(test)]
            Io::Mock(s) => Pin::new(s).poll_flush(cx),
        };
        match r {
            Poll::Ready(r) => {
                this.write_stall = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                if Conn::stalled(&mut this.write_stall, this.io_timeout, cx) {
                    Poll::Ready(Err(Conn::timed_out("accept data")))
                } else {
                    Poll::Pending
                }
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            #[cfg(test)]
            Io::Mock(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    #[test]
    fn uid_sets_are_compressed_ranges() {
        assert_eq!(uid_set(&[]), "");
        assert_eq!(uid_set(&[7]), "7");
        assert_eq!(uid_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(uid_set(&[u32::MAX - 1, u32::MAX]), "4294967294:4294967295");
        let many: Vec<u32> = (1..=10_000).collect();
        assert_eq!(uid_set(&many), "1:10000");
    }

    #[test]
    fn the_highest_message_matched_by_star_is_filtered() {
        // `UID SEARCH UID 11:*` with only UID 5..=10 answers 10.
        assert!(uids_above(vec![10], 10).is_empty());
        assert_eq!(uids_above(vec![15, 11, 12, 11, 3], 10), vec![11, 12, 15]);
        assert_eq!(uids_above(vec![2, 1], 0), vec![1, 2]);
    }

    #[test]
    fn the_mark_resets_when_uidvalidity_changes() {
        let m = |v, u| {
            Some(IngestMark {
                uid_validity: v,
                last_uid: u,
            })
        };
        assert_eq!(resume_point(None, 5), (0, false));
        assert_eq!(resume_point(m(5, 42), 5), (42, false));
        assert_eq!(resume_point(m(4, 42), 5), (0, true));
    }

    fn incoming(id: &str, validity: u32) -> Incoming {
        Incoming {
            id: id.into(),
            raw: Vec::new(),
            received: Utc::now(),
            mark: Some(IngestMark {
                uid_validity: validity,
                last_uid: id.parse().unwrap_or(0),
            }),
            headers_only: false,
        }
    }

    #[test]
    fn only_uids_of_the_current_validity_are_marked() {
        let done = [
            incoming("9", 1),
            incoming("3", 1),
            incoming("4", 2),
            incoming("x", 1),
            incoming("3", 1),
            incoming("0", 1),
        ];
        assert_eq!(uids_to_mark(&done, 1), vec![3, 9]);
        assert_eq!(uids_to_mark(&done, 2), vec![4]);
    }

    fn meta(uid: u32, size: u64) -> Meta {
        Meta {
            uid,
            size,
            received: None,
        }
    }

    #[test]
    fn a_batch_reads_large_messages_as_headers_and_stops_at_the_budget() {
        let metas = [meta(1, 10), meta(2, 500), meta(3, 40), meta(4, 60)];
        let plan = plan_batch(&metas, 100, 1_000_000);
        let flags: Vec<(u32, bool)> = plan.iter().map(|(m, h)| (m.uid, *h)).collect();
        assert_eq!(flags, vec![(1, false), (2, true), (3, false), (4, false)]);

        let plan = plan_batch(&metas, 1000, 520);
        assert_eq!(plan.iter().map(|p| p.0.uid).collect::<Vec<_>>(), vec![1, 2]);

        // Always at least one, even over the budget.
        let plan = plan_batch(&[meta(1, 5000)], 10_000, 100);
        assert_eq!(plan.len(), 1);
        assert!(plan_batch(&[], 10, 10).is_empty());
    }

    #[test]
    fn mailbox_names_are_modified_utf7_and_quoted() {
        assert_eq!(mutf7("INBOX"), "INBOX");
        assert_eq!(mutf7("Færdig"), "F&AOY-rdig");
        assert_eq!(mutf7("a&b"), "a&-b");
        // RFC 3501 5.1.3's example.
        assert_eq!(
            mutf7("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
        assert_eq!(mailbox_arg("Behandlet"), "\"Behandlet\"");
        assert_eq!(mailbox_arg("a\"b\\c"), "\"a\\\"b\\\\c\"");
        // Control characters are encoded too: never a raw line break.
        assert_eq!(mailbox_arg("x\r\ny"), "\"x&AA0ACg-y\"");
    }

    #[test]
    fn internal_dates_parse_to_utc() {
        let d = parse_internal_date("17-Jul-1996 02:44:25 -0700").expect("date");
        assert_eq!(d.to_rfc3339(), "1996-07-17T09:44:25+00:00");
        let d = parse_internal_date(" 7-Jul-1996 02:44:25 +0200").expect("date");
        assert_eq!(d.to_rfc3339(), "1996-07-07T00:44:25+00:00");
        assert!(parse_internal_date("yesterday").is_none());
        assert!(parse_internal_date("").is_none());
    }

    #[test]
    fn server_text_is_taken_from_async_imap_errors() {
        assert_eq!(
            server_text(
                "code: None, info: Some(\"[AUTHENTICATIONFAILED] Authentication failed.\")"
            ),
            "[AUTHENTICATIONFAILED] Authentication failed."
        );
        assert_eq!(
            server_text("code: Some(TryCreate), info: Some(\"Mailbox doesn't exist: X\")"),
            "[TryCreate] Mailbox doesn't exist: X"
        );
        assert_eq!(server_text("whatever"), "whatever");
        // Server text that looks like the wrapper does not confuse it.
        assert_eq!(
            server_text("code: None, info: Some(\"x code: Some(y\")"),
            "x code: Some(y"
        );
        assert_eq!(server_text("info: Some(\""), "");
    }

    #[test]
    fn inbox_is_case_insensitive() {
        assert!(same_mailbox("inbox", "INBOX"));
        assert!(!same_mailbox("INBOX", "Done"));
        assert!(!same_mailbox("Done", "done"));
    }

    #[test]
    fn fetch_responses_are_parsed() {
        let raw = b"* 3 FETCH (UID 12 RFC822.SIZE 44 INTERNALDATE \"01-Feb-2025 10:00:00 +0000\" BODY[] {5}\r\nHello)\r\n";
        let (_, r) = Response::parse(raw).expect("parse");
        let f = parse_fetch(&r).expect("fetch");
        assert_eq!(f.uid, 12);
        assert_eq!(f.size, Some(44));
        assert_eq!(f.body.as_deref(), Some(&b"Hello"[..]));
        assert!(f.header.is_none());
        let raw = b"* 3 FETCH (UID 12 BODY[HEADER] {4}\r\nA: b)\r\n";
        let (_, r) = Response::parse(raw).expect("parse");
        let f = parse_fetch(&r).expect("fetch");
        assert_eq!(f.header.as_deref(), Some(&b"A: b"[..]));
        // A flag update without UID is not ours.
        let (_, r) = Response::parse(b"* 3 FETCH (FLAGS (\\Seen))\r\n").expect("parse");
        assert!(parse_fetch(&r).is_none());
    }

    #[tokio::test]
    async fn the_password_is_swapped_in_on_the_wire_only() {
        // A tiny pipe forces partial writes of the rewritten line.
        let (a, mut b) = tokio::io::duplex(7);
        let mut conn = Conn::new(Io::Mock(a));
        conn.arm_password("PLACEHOLDER", "s3cr\\\"et");
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            b.read_to_end(&mut got).await.map(|_| got)
        });
        conn.write_all(b"A1 ").await.expect("write");
        conn.write_all(b"LOGIN \"u\" \"PLACEHOLDER\"")
            .await
            .expect("write");
        conn.write_all(b"\r\nA2 NOOP PLACEHOLDER\r\n")
            .await
            .expect("write");
        conn.shutdown().await.expect("shutdown");
        drop(conn);
        let got = reader.await.expect("join").expect("read");
        assert_eq!(
            String::from_utf8_lossy(&got),
            "A1 LOGIN \"u\" \"s3cr\\\"et\"\r\nA2 NOOP PLACEHOLDER\r\n"
        );
    }

    #[tokio::test]
    async fn a_stalled_read_times_out_unless_idling() {
        let (a, _b) = tokio::io::duplex(64);
        let mut conn = Conn::new(Io::Mock(a));
        conn.set_io_timeout(Some(Duration::from_millis(50)));
        let mut buf = [0u8; 8];
        let e = conn.read(&mut buf).await.expect_err("timeout");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        conn.set_io_timeout(None);
        let r = tokio::time::timeout(Duration::from_millis(200), conn.read(&mut buf)).await;
        assert!(r.is_err(), "no timeout while idling");
    }

    // -- A scripted IMAP server, for what Dovecot will not do on demand. ----

    /// Serves one connection: for each step, waits for a line containing
    /// `expect` (after the tag) and answers `reply` with `{tag}` replaced.
    async fn scripted(
        steps: Vec<(&'static str, String)>,
    ) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
        scripted_with(steps, None).await
    }

    /// `scripted`, also telling `lines` every line read.
    async fn scripted_with(
        steps: Vec<(&'static str, String)>,
        lines: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    ) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            let (sock, _) = listener.accept().await.expect("accept");
            let (r, mut w) = sock.into_split();
            let mut r = BufReader::new(r);
            let mut seen = Vec::new();
            let mut tag = String::new();
            w.write_all(b"* OK [CAPABILITY IMAP4rev1 IDLE] ready\r\n")
                .await
                .ok();
            for (expect, reply) in steps {
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return seen;
                    }
                    seen.push(line.clone());
                    if let Some(l) = &lines {
                        let _ = l.send(line.clone());
                    }
                    if line.contains(expect) {
                        break;
                    }
                }
                // DONE has no tag: it answers with IDLE's.
                if line.trim() != "DONE" {
                    tag = line.split(' ').next().unwrap_or("").to_string();
                }
                w.write_all(reply.replace("{tag}", &tag).as_bytes())
                    .await
                    .ok();
            }
            // Keep the connection until the client goes.
            let mut rest = String::new();
            while r.read_line(&mut rest).await.unwrap_or(0) > 0 {
                seen.push(std::mem::take(&mut rest));
            }
            seen
        });
        (port, task)
    }

    fn config(port: u16, dir: &std::path::Path) -> ImapConfig {
        let password_file: PathBuf = dir.join("password");
        std::fs::write(&password_file, "hunter2-secret\n").expect("write password");
        ImapConfig {
            host: "127.0.0.1".into(),
            port,
            tls: TlsMode::None,
            username: "survey@example.org".into(),
            password_file,
            oauth: None,
            mailbox: "INBOX".into(),
            move_to: None,
            sent_folder: None,
            ca_file: None,
            max_message_bytes: 1024,
            quarantine: "Quarantine".into(),
        }
    }

    const LOGIN_OK: &str = "{tag} OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n";
    const SELECT_OK: &str = "* 1 EXISTS\r\n* OK [UIDVALIDITY 77] UIDs valid\r\n{tag} OK [READ-WRITE] Select completed\r\n";

    #[tokio::test]
    async fn a_refused_login_is_an_auth_error_without_the_password() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (port, server) = scripted(vec![(
            "LOGIN",
            "{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n".into(),
        )])
        .await;
        let mut src = ImapSource::new(&config(port, dir.path()));
        let e = src.connect().await.expect_err("refused");
        let text = e.to_string();
        assert!(matches!(e, SourceError::Auth { .. }), "{e:?}");
        assert!(text.contains("Authentication failed"), "{text}");
        assert!(text.contains("password"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!format!("{e:?}").contains("hunter2"));
        drop(src);
        let seen = server.await.expect("server");
        assert!(
            seen.iter()
                .any(|l| l.contains("LOGIN \"survey@example.org\" \"hunter2-secret\"")),
            "{seen:?}"
        );
    }

    #[tokio::test]
    async fn plaintext_to_a_remote_host_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = config(1, dir.path());
        cfg.host = "imap.example.org".into();
        let e = ImapSource::new(&cfg).connect().await.expect_err("refused");
        assert!(matches!(e, SourceError::Connect { .. }), "{e:?}");
        assert!(e.to_string().contains("loopback"), "{e}");
    }

    #[tokio::test]
    async fn fetch_skips_the_highest_message_below_the_mark() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("store")).expect("store");
        let (port, server) = scripted(vec![
            ("LOGIN", LOGIN_OK.into()),
            ("SELECT", SELECT_OK.into()),
            ("UID SEARCH UID 1:5", "* SEARCH\r\n{tag} OK done\r\n".into()),
            ("NOOP", "{tag} OK NOOP completed\r\n".into()),
            (
                "UID SEARCH UID 6:*",
                "* SEARCH 5\r\n{tag} OK done\r\n".into(),
            ),
        ])
        .await;
        let src_cfg = config(port, dir.path());
        let mut src = ImapSource::new(&src_cfg);
        store
            .set_ingest_mark(
                &src.name(),
                IngestMark {
                    uid_validity: 77,
                    last_uid: 5,
                },
            )
            .expect("mark");
        src.connect().await.expect("connect");
        let got = src.fetch(&store, 10).await.expect("fetch");
        assert!(got.is_empty());
        drop(src);
        let seen = server.await.expect("server");
        assert!(!seen.iter().any(|l| l.contains("FETCH")), "{seen:?}");
    }

    #[tokio::test]
    async fn exists_before_the_idle_continuation_is_not_missed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("store")).expect("store");
        let (port, server) = scripted(vec![
            ("LOGIN", LOGIN_OK.into()),
            ("SELECT", SELECT_OK.into()),
            ("NOOP", "{tag} OK NOOP completed\r\n".into()),
            ("UID SEARCH", "* SEARCH\r\n{tag} OK done\r\n".into()),
            ("IDLE", "* 2 EXISTS\r\n+ idling\r\n".into()),
            ("DONE", "{tag} OK Idle completed\r\n".into()),
        ])
        .await;
        let mut src = ImapSource::new(&config(port, dir.path()));
        src.connect().await.expect("connect");
        assert!(src.fetch(&store, 10).await.expect("fetch").is_empty());
        let shutdown = Shutdown::new();
        tokio::time::timeout(Duration::from_secs(5), src.wait_for_mail(&shutdown))
            .await
            .expect("returns at once")
            .expect("ok");
        assert!(src.link.is_some(), "the session stays usable");
        drop(src);
        server.await.expect("server");
    }

    fn processed(uid: u32) -> Incoming {
        Incoming {
            id: uid.to_string(),
            raw: Vec::new(),
            received: Utc::now(),
            mark: Some(IngestMark {
                uid_validity: 77,
                last_uid: uid,
            }),
            headers_only: false,
        }
    }

    #[tokio::test]
    async fn without_move_mail_is_only_marked_seen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (port, server) = scripted(vec![
            (
                "LOGIN",
                "{tag} OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n".into(),
            ),
            ("SELECT", SELECT_OK.into()),
            (
                "UID STORE 3:4 +FLAGS.SILENT (\\Seen)",
                "{tag} OK Store completed\r\n".into(),
            ),
            ("UID STORE 5 ", "{tag} OK Store completed\r\n".into()),
        ])
        .await;
        let mut cfg = config(port, dir.path());
        cfg.move_to = Some("Behandlet".into());
        let mut src = ImapSource::new(&cfg);
        src.connect().await.expect("connect");
        src.mark_processed(&[processed(4), processed(3)])
            .await
            .expect("marked");
        src.mark_processed(&[processed(5)]).await.expect("marked");
        assert!(src.told_no_move);
        drop(src);
        let seen = server.await.expect("server");
        for word in ["MOVE", "EXPUNGE", "Deleted", "CREATE", "COPY"] {
            assert!(!seen.iter().any(|l| l.contains(word)), "{word}: {seen:?}");
        }
    }

    #[tokio::test]
    async fn a_vanished_move_folder_is_created_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = "{tag} OK done\r\n".to_string();
        let (port, server) = scripted(vec![
            (
                "LOGIN",
                "{tag} OK [CAPABILITY IMAP4rev1 IDLE MOVE] Logged in\r\n".into(),
            ),
            ("SELECT", SELECT_OK.into()),
            ("UID STORE 3 ", ok.clone()),
            ("LIST \"\" \"F&AOY-rdig\"", ok.clone()),
            ("CREATE \"F&AOY-rdig\"", ok.clone()),
            (
                "UID MOVE 3 \"F&AOY-rdig\"",
                "* 1 EXPUNGE\r\n{tag} OK moved\r\n".into(),
            ),
            ("UID STORE 4 ", ok.clone()),
            (
                "UID MOVE 4 ",
                "{tag} NO [TRYCREATE] Mailbox doesn't exist\r\n".into(),
            ),
            ("LIST", ok.clone()),
            ("CREATE", ok.clone()),
            ("UID MOVE 4 ", ok.clone()),
        ])
        .await;
        let mut cfg = config(port, dir.path());
        cfg.move_to = Some("Færdig".into());
        let mut src = ImapSource::new(&cfg);
        src.connect().await.expect("connect");
        src.mark_processed(&[processed(3)]).await.expect("moved");
        src.mark_processed(&[processed(4)]).await.expect("moved");
        drop(src);
        let seen = server.await.expect("server");
        let creates = seen.iter().filter(|l| l.contains("CREATE")).count();
        assert_eq!(creates, 2, "{seen:?}");
        assert!(!seen
            .iter()
            .any(|l| l.contains("EXPUNGE") && !l.starts_with('*')));
    }

    #[tokio::test]
    async fn without_idle_the_wait_polls_with_noop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("store")).expect("store");
        let (port, server) = scripted(vec![
            (
                "LOGIN",
                "{tag} OK [CAPABILITY IMAP4rev1] Logged in\r\n".into(),
            ),
            ("SELECT", SELECT_OK.into()),
            ("NOOP", "{tag} OK NOOP completed\r\n".into()),
            ("UID SEARCH", "* SEARCH\r\n{tag} OK done\r\n".into()),
            ("NOOP", "{tag} OK NOOP completed\r\n".into()),
        ])
        .await;
        let mut src = ImapSource::new(&config(port, dir.path()));
        src.poll = Duration::from_millis(10);
        src.connect().await.expect("connect");
        assert!(src.fetch(&store, 10).await.expect("fetch").is_empty());
        let shutdown = Shutdown::new();
        tokio::time::timeout(Duration::from_secs(5), src.wait_for_mail(&shutdown))
            .await
            .expect("polled")
            .expect("ok");
        shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(1), src.wait_for_mail(&shutdown))
            .await
            .expect("at once at shutdown")
            .expect("ok");
        drop(src);
        let seen = server.await.expect("server");
        assert!(!seen.iter().any(|l| l.contains("IDLE")), "{seen:?}");
        assert_eq!(
            seen.iter().filter(|l| l.contains("NOOP")).count(),
            2,
            "{seen:?}"
        );
    }

    #[tokio::test]
    async fn shutdown_ends_idle_with_done() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("store")).expect("store");
        let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
        let (port, server) = scripted_with(
            vec![
                ("LOGIN", LOGIN_OK.into()),
                ("SELECT", SELECT_OK.into()),
                ("NOOP", "{tag} OK NOOP completed\r\n".into()),
                ("UID SEARCH", "* SEARCH\r\n{tag} OK done\r\n".into()),
                ("IDLE", "+ idling\r\n* OK Still here\r\n".into()),
                ("DONE", "{tag} OK Idle completed\r\n".into()),
            ],
            Some(tx),
        )
        .await;
        let mut src = ImapSource::new(&config(port, dir.path()));
        src.connect().await.expect("connect");
        src.fetch(&store, 10).await.expect("fetch");
        let shutdown = Shutdown::new();
        let trigger = shutdown.clone();
        // Shut down once the client idles.
        tokio::spawn(async move {
            while let Some(line) = lines.recv().await {
                if line.contains("IDLE") {
                    trigger.trigger();
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(5), src.wait_for_mail(&shutdown))
            .await
            .expect("returns at shutdown")
            .expect("ok");
        assert!(src.link.is_some(), "DONE was answered: session usable");
        drop(src);
        let seen = server.await.expect("server");
        assert!(seen.iter().any(|l| l.trim() == "DONE"), "{seen:?}");
    }
}
