//! SMTP over implicit TLS, STARTTLS or (to loopback only, enforced by the
//! config) plaintext: lettre speaks the protocol (EHLO, STARTTLS, AUTH,
//! MAIL/RCPT/DATA, dot-stuffing, replies); the connections and their pool
//! are ours.
//!
//! Why not lettre's own pooled transport: it never sets `TCP_NODELAY`, and
//! it writes a message's final `\r\n.\r\n` as a separate small write. Nagle's
//! algorithm then holds those five bytes until the server acknowledges the
//! body, which a server delays (delayed ACK, 40 ms on Linux) because it is
//! waiting for exactly those bytes: every message costs ~40 ms per
//! connection, 160 messages a second with 8 connections however fast both
//! ends are (BENCHMARKS.md, target 1). Its pool also sends a NOOP before
//! every reuse and, recycling connections from a spawned task, opens extra
//! connections under load.
//!
//! Here every connection is a `TcpStream` with `TCP_NODELAY`, handed to
//! lettre's `AsyncSmtpConnection` (implicit TLS: wrapped in rustls first). At
//! most `pool_size` connections are kept; one idle for longer than
//! [`CHECK_AFTER_IDLE`] is checked with NOOP before reuse, those idle for
//! [`IDLE_TIMEOUT`] are closed (QUIT) at the next send, by the sender, so no
//! task runs beside the outbox loop; while the daemon sends nothing the
//! server's own idle timeout closes them. `timeout_seconds` bounds
//! connecting (TCP, TLS, greeting, EHLO, STARTTLS, AUTH), as lettre's did.
//!
//! **OAuth 2.0.** With `auth.method = "oauth2"` a new connection sends
//! `AUTH XOAUTH2` (or `OAUTHBEARER`) alone, waits for `334`, then sends the
//! base64 response on its own line: lettre's XOAUTH2 puts it on the AUTH
//! line, which Postfix (`line_length_limit`) and Gmail (555) refuse for long
//! tokens. An error challenge (`334 <base64 JSON>`) is answered with an empty
//! line. A refused token (535, 454) is dropped from the shared cache and the
//! send deferred (transient): the next connection gets a new token; no mail
//! is failed for a login problem.
//!
//! **Throttling.** A reply asking to slow down (`pacing::is_throttling`:
//! 421, 432 4.3.2, 4.7.x rate limits, quota replies) is
//! [`SendError::throttled`]: the outbox pauses and retries.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::TlsParameters;
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, Certificate};
use lettre::transport::smtp::extension::ClientId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

use super::{envelope, SendError, SendFuture, Transport};
use crate::config::{read_secret, SmtpConfig, TlsMode};
use crate::oauth::{sasl, AccessToken, Mechanism, OAuthConfig, TokenSource};

/// A pooled connection idle for longer is checked with NOOP before reuse.
pub const CHECK_AFTER_IDLE: Duration = Duration::from_secs(1);
/// A pooled connection idle for this long is closed (lettre's default).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

pub struct SmtpTransport {
    inner: Inner,
    what: String,
}

struct Inner {
    host: String,
    port: u16,
    security: Security,
    credentials: Option<Credentials>,
    /// OAuth 2.0: the settings, the login name and the shared token cache.
    oauth: Option<(OAuthConfig, String, Arc<TokenSource>)>,
    timeout: Duration,
    hello: ClientId,
    max_idle: usize,
    idle: Mutex<Vec<Idle>>,
}

enum Security {
    None,
    Starttls(TlsParameters),
    Implicit(Arc<rustls::ClientConfig>),
}

struct Idle {
    conn: AsyncSmtpConnection,
    since: Instant,
}

impl SmtpTransport {
    pub fn new(cfg: &SmtpConfig) -> anyhow::Result<SmtpTransport> {
        let security = match cfg.tls {
            TlsMode::None => Security::None,
            TlsMode::Starttls => {
                let mut b = TlsParameters::builder(cfg.host.clone());
                if let Some(ca) = &cfg.ca_file {
                    let pem = std::fs::read(ca).map_err(|e| {
                        anyhow::anyhow!("outbound.smtp.ca_file {}: {e}", ca.display())
                    })?;
                    let cert = Certificate::from_pem(&pem).map_err(|e| {
                        anyhow::anyhow!("outbound.smtp.ca_file {}: {e}", ca.display())
                    })?;
                    b = b.add_root_certificate(cert);
                }
                Security::Starttls(
                    b.build_rustls()
                        .map_err(|e| anyhow::anyhow!("TLS setup for {}: {e}", cfg.host))?,
                )
            }
            TlsMode::Implicit => Security::Implicit(
                crate::tls::client_config(cfg.ca_file.as_deref(), "outbound.smtp.ca_file")
                    .map_err(|e| anyhow::anyhow!(e))?,
            ),
        };
        let oauth = match &cfg.oauth {
            Some(o) => {
                let tokens = TokenSource::shared(o).map_err(|e| anyhow::anyhow!(e))?;
                let user = cfg.username.clone().unwrap_or_else(|| o.login.clone());
                Some(((**o).clone(), user, tokens))
            }
            None => None,
        };
        let credentials = match (&cfg.username, &cfg.password_file) {
            (Some(user), Some(pw_file)) => {
                let pw = read_secret(pw_file).map_err(|e| {
                    anyhow::anyhow!("outbound.smtp.password_file {}: {e}", pw_file.display())
                })?;
                Some(Credentials::new(user.clone(), pw))
            }
            _ => None,
        };
        let inner = Inner {
            host: cfg.host.clone(),
            port: cfg.port,
            security,
            credentials,
            oauth,
            timeout: Duration::from_secs(cfg.timeout_seconds),
            hello: ClientId::default(),
            max_idle: cfg.pool_size.max(1) as usize,
            idle: Mutex::new(Vec::new()),
        };
        Ok(SmtpTransport {
            inner,
            what: format!("smtp {}:{} ({:?})", cfg.host, cfg.port, cfg.tls),
        })
    }
}

impl SmtpTransport {
    /// `canvass check-mail`: connects and authenticates as for sending, has
    /// `from` accepted as MAIL FROM, then RSET and QUIT: nothing is sent.
    /// Ok: what was proven.
    pub async fn check_mail(&self, from: &str) -> Result<String, SendError> {
        use lettre::transport::smtp::commands::{Mail, Rset};
        let mut conn = self.inner.connect().await?;
        let auth = match (&self.inner.oauth, &self.inner.credentials) {
            (Some((o, user, _)), _) => format!("AUTH {} as {user} accepted", o.mechanism.name()),
            (None, Some(_)) => "password login accepted".to_string(),
            (None, None) => "no SMTP AUTH configured".to_string(),
        };
        let address = from
            .parse()
            .map_err(|e| SendError::permanent(format!("survey address {from:?}: {e}")))?;
        let mail = tokio::time::timeout(
            self.inner.timeout,
            conn.command(Mail::new(Some(address), vec![])),
        )
        .await;
        let result = match mail {
            Ok(Ok(_)) => Ok(format!(
                "{auth}; MAIL FROM:<{from}> accepted (then RSET, QUIT: nothing sent)"
            )),
            Ok(Err(e)) => Err(SendError::permanent(format!(
                "{auth}, but MAIL FROM:<{from}> was refused: {e}"
            ))),
            Err(_) => Err(SendError::transient(format!(
                "{auth}, but MAIL FROM got no answer within {:?}",
                self.inner.timeout
            ))),
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), conn.command(Rset)).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), conn.quit()).await;
        result
    }
}

/// 5xx is permanent; 4xx, refused connections and time-outs are transient;
/// a reply asking to slow down is throttling, whatever its code.
fn classify_error(e: &lettre::transport::smtp::Error) -> SendError {
    let msg = e.to_string();
    let reply = e
        .status()
        .map(|c| format!("{c} {msg}"))
        .unwrap_or_else(|| msg.clone());
    if crate::pacing::is_throttling(&reply) {
        SendError::throttled(msg)
    } else if e.is_permanent() {
        SendError::permanent(msg)
    } else {
        SendError::transient(msg)
    }
}

impl Inner {
    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle connection (checked if it idled long), or a new one.
    async fn checkout(&self) -> Result<AsyncSmtpConnection, SendError> {
        // Connections idle too long hold a slot on the server: closed first.
        let stale: Vec<Idle> = {
            let mut idle = self.lock_idle();
            let (stale, fresh) = std::mem::take(&mut *idle)
                .into_iter()
                .partition(|i| i.since.elapsed() >= IDLE_TIMEOUT);
            *idle = fresh;
            stale
        };
        for i in stale {
            close(i.conn).await;
        }
        loop {
            let idle = self.lock_idle().pop();
            let Some(Idle { mut conn, since }) = idle else {
                return self.connect().await;
            };
            if since.elapsed() < CHECK_AFTER_IDLE {
                return Ok(conn);
            }
            match tokio::time::timeout(self.timeout, conn.test_connected()).await {
                Ok(true) => return Ok(conn),
                _ => close(conn).await,
            }
        }
    }

    /// Puts a healthy connection back, or closes it when the pool is full.
    async fn checkin(&self, conn: AsyncSmtpConnection) {
        if conn.has_broken() {
            return;
        }
        let full = {
            let mut idle = self.lock_idle();
            if idle.len() < self.max_idle {
                idle.push(Idle {
                    conn,
                    since: Instant::now(),
                });
                None
            } else {
                Some(conn)
            }
        };
        if let Some(conn) = full {
            close(conn).await;
        }
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let what = format!("{}:{}", self.host, self.port);
        let setup = async {
            let tcp = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| SendError::transient(format!("connect to {what}: {e}")))?;
            tcp.set_nodelay(true)
                .map_err(|e| SendError::transient(format!("TCP_NODELAY on {what}: {e}")))?;
            let stream: Box<dyn AsyncTokioStream> = match &self.security {
                Security::Implicit(config) => {
                    let name = rustls::pki_types::ServerName::try_from(self.host.clone()).map_err(
                        |e| {
                            SendError::permanent(format!(
                                "{:?} is not a valid TLS server name: {e}",
                                self.host
                            ))
                        },
                    )?;
                    let tls = tokio_rustls::TlsConnector::from(config.clone())
                        .connect(name, tcp)
                        .await
                        .map_err(|e| {
                            SendError::transient(format!("TLS handshake with {what}: {e}"))
                        })?;
                    Box::new(TlsTcp(tls))
                }
                _ => Box::new(tcp),
            };
            let mut conn = AsyncSmtpConnection::connect_with_transport(stream, &self.hello)
                .await
                .map_err(|e| classify_error(&e))?;
            if let Security::Starttls(params) = &self.security {
                conn.starttls(params.clone(), &self.hello)
                    .await
                    .map_err(|e| classify_error(&e))?;
            }
            if let Some((o, user, tokens)) = &self.oauth {
                let token = tokens.token().await.map_err(|e| {
                    SendError::transient(format!("SMTP {what}: no OAuth 2.0 token: {e}"))
                })?;
                if let Err(e) =
                    authenticate(&mut conn, o.mechanism, user, &self.host, self.port, &token).await
                {
                    tokens.rejected(&token).await;
                    close(conn).await;
                    let hint = smtp_auth_hint(o.provider, &e)
                        .map(|h| format!(" ({h})"))
                        .unwrap_or_default();
                    return Err(SendError::transient(format!(
                        "SMTP {what}: the server refused AUTH {} for {user}: {e}{hint}",
                        o.mechanism.name()
                    )));
                }
            } else if let Some(credentials) = &self.credentials {
                conn.auth(DEFAULT_MECHANISMS, credentials)
                    .await
                    .map_err(|e| classify_error(&e))?;
            }
            Ok(conn)
        };
        match tokio::time::timeout(self.timeout, setup).await {
            Ok(r) => r,
            Err(_) => Err(SendError::transient(format!(
                "connecting to {what}: no answer within {:?}",
                self.timeout
            ))),
        }
    }
}

/// A command line written as is (CRLF included).
struct Line<'a>(&'a str);

impl std::fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// `AUTH <mechanism>`, `334`, then the response on its own line; an error
/// challenge is answered with an empty line. The error is the server's reply
/// and, when it sent one, the error challenge read out. Never the token.
pub async fn authenticate(
    conn: &mut AsyncSmtpConnection,
    mechanism: Mechanism,
    user: &str,
    host: &str,
    port: u16,
    token: &AccessToken,
) -> Result<(), String> {
    let reply_text = |e: &lettre::transport::smtp::Error| match e.status() {
        Some(code) => format!("{code} {e}"),
        None => e.to_string(),
    };
    let first = conn
        .command(Line(&format!("AUTH {}\r\n", mechanism.name())))
        .await
        .map_err(|e| reply_text(&e))?;
    if first.code().to_string() != "334" {
        return Err(format!(
            "{} {} (expected 334)",
            first.code(),
            first.message().collect::<Vec<_>>().join(" ")
        ));
    }
    let response = sasl::initial_response(mechanism, user, host, port, token);
    let line = format!("{}\r\n", response.base64());
    match conn.command(Line(&line)).await {
        Ok(r) if r.code().to_string() == "334" => {
            let challenge = r.message().next().unwrap_or("").to_string();
            let why = sasl::error_challenge_text(challenge.as_bytes());
            match conn.command(Line("\r\n")).await {
                Ok(r) => Err(format!("{} ({why})", r.code())),
                Err(e) => Err(format!("{} ({why})", reply_text(&e))),
            }
        }
        Ok(_) => Ok(()),
        Err(e) => Err(reply_text(&e)),
    }
}

/// What to do about a refused SMTP AUTH, per provider (None: nothing known).
pub fn smtp_auth_hint(provider: crate::oauth::Provider, reply: &str) -> Option<&'static str> {
    use crate::oauth::Provider;
    let lower = reply.to_ascii_lowercase();
    let not_offered = lower.contains("not enabled")
        || lower.contains("not supported")
        || lower.contains("unrecognized authentication")
        || ["502", "503", "504"]
            .iter()
            .any(|c| lower.starts_with(c) || lower.contains(&format!("({c})")));
    match provider {
        Provider::Microsoft365
            if lower.contains("smtpclientauthentication is disabled")
                || lower.contains("5.7.139")
                || not_offered =>
        {
            Some("SMTP AUTH is disabled for this mailbox: `Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false`")
        }
        Provider::Microsoft365 if lower.contains("535") => Some(
            "the app's service principal may not send as this mailbox: `Add-MailboxPermission -Identity <mailbox> -User <service principal id> -AccessRights FullAccess`, and grant SMTP.SendAsApp with admin consent",
        ),
        Provider::Google if lower.contains("535") || lower.contains("534") => Some(
            "authorise the service account for https://mail.google.com/ under domain-wide delegation, and check that auth.login is the mailbox",
        ),
        _ if not_offered => Some(
            "the server does not offer SMTP AUTH here: check outbound.smtp.port and tls (submission is usually 587 with STARTTLS), and that the server enables SASL",
        ),
        _ => None,
    }
}

/// QUIT and close, waiting at most a second for the server.
async fn close(mut conn: AsyncSmtpConnection) {
    let _ = tokio::time::timeout(Duration::from_secs(1), conn.abort()).await;
}

impl Transport for SmtpTransport {
    fn send<'a>(&'a self, from: &'a str, to: &'a [String], raw: &'a [u8]) -> SendFuture<'a> {
        Box::pin(async move {
            let env = envelope(from, to)?;
            let mut conn = self.inner.checkout().await?;
            // On an error lettre has sent QUIT and marked the connection
            // broken; it is not put back.
            let result = conn.send(&env, raw).await;
            self.inner.checkin(conn).await;
            result.map(|_| ()).map_err(|e| classify_error(&e))
        })
    }

    fn check(&self) -> SendFuture<'_> {
        Box::pin(async move {
            let mut conn = self.inner.checkout().await?;
            let ok = tokio::time::timeout(self.inner.timeout, conn.test_connected())
                .await
                .unwrap_or(false);
            if !ok {
                return Err(SendError::transient("the SMTP server did not answer NOOP"));
            }
            self.inner.checkin(conn).await;
            Ok(())
        })
    }

    fn describe(&self) -> String {
        self.what.clone()
    }
}

/// An implicit-TLS connection, as lettre's stream trait wants it.
struct TlsTcp(tokio_rustls::client::TlsStream<TcpStream>);

impl std::fmt::Debug for TlsTcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsTcp")
    }
}

impl AsyncTokioStream for TlsTcp {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl AsyncRead for TlsTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsTcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}
