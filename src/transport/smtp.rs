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
//! line. A refused token (535, 454), at AUTH or later in a pooled session
//! (530, 535, 454 to MAIL/RCPT/DATA: the token expired or was revoked), is
//! dropped from the shared cache and the send deferred (transient): the next
//! connection gets a new token; no mail is failed for a login problem.
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
    conn: Pooled,
    since: Instant,
}

/// A connection, with the token it logged in with (OAuth 2.0).
struct Pooled {
    conn: AsyncSmtpConnection,
    token: Option<AccessToken>,
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
        let Pooled { mut conn, .. } = self.inner.connect().await?;
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
    async fn checkout(&self) -> Result<Pooled, SendError> {
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
            close(i.conn.conn).await;
        }
        loop {
            let idle = self.lock_idle().pop();
            let Some(Idle { mut conn, since }) = idle else {
                return self.connect().await;
            };
            if since.elapsed() < CHECK_AFTER_IDLE {
                return Ok(conn);
            }
            match tokio::time::timeout(self.timeout, conn.conn.test_connected()).await {
                Ok(true) => return Ok(conn),
                _ => close(conn.conn).await,
            }
        }
    }

    /// Puts a healthy connection back, or closes it when the pool is full.
    async fn checkin(&self, conn: Pooled) {
        if conn.conn.has_broken() {
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
            close(conn.conn).await;
        }
    }

    /// A send refused: throttling, a login problem (OAuth 2.0: the token
    /// the connection logged in with is dropped, the send deferred) or the
    /// server's verdict on the message.
    async fn send_error(
        &self,
        e: &lettre::transport::smtp::Error,
        token: Option<&AccessToken>,
    ) -> SendError {
        let refused = classify_error(e);
        if refused.is_throttled() {
            return refused;
        }
        if let (Some((_, _, tokens)), Some(token)) = (&self.oauth, token) {
            let code = e.status().map(|c| c.to_string()).unwrap_or_default();
            if is_login_refusal(&code) {
                tokens.rejected(token).await;
                return SendError::transient(format!(
                    "{}; the session's token was refused (expired or revoked): a new one is requested and the message retried",
                    refused.message
                ));
            }
        }
        refused
    }

    async fn connect(&self) -> Result<Pooled, SendError> {
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
            let mut used = None;
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
                used = Some(token);
            } else if let Some(credentials) = &self.credentials {
                conn.auth(DEFAULT_MECHANISMS, credentials)
                    .await
                    .map_err(|e| classify_error(&e))?;
            }
            Ok(Pooled { conn, token: used })
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

/// A reply that means the session's login is gone (with OAuth 2.0: its
/// token expired or was revoked), not a verdict on the message: `530`
/// authentication required, `535` credentials refused, `454` temporary
/// authentication failure.
fn is_login_refusal(code: &str) -> bool {
    matches!(code, "530" | "535" | "454")
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
            let result = conn.conn.send(&env, raw).await;
            let result = match result {
                Ok(_) => Ok(()),
                Err(e) => Err(self.inner.send_error(&e, conn.token.as_ref()).await),
            };
            self.inner.checkin(conn).await;
            result
        })
    }

    fn check(&self) -> SendFuture<'_> {
        Box::pin(async move {
            let mut conn = self.inner.checkout().await?;
            let ok = tokio::time::timeout(self.inner.timeout, conn.conn.test_connected())
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

#[cfg(test)]
mod tests {
    //! Against a scripted SMTP server, for what Postfix will not do on
    //! demand (a token refused mid-session, an error challenge); the real
    //! Postfix is in tests/it/oauth.rs.
    use super::*;
    use crate::oauth::Mechanism;
    use crate::test_support::{token_endpoint, token_number};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    const EHLO: &str = "250-test.example\r\n250 AUTH XOAUTH2 OAUTHBEARER\r\n";

    /// Serves one connection per script: for each step, waits for a line
    /// containing `expect` and answers `reply`; then answers QUIT. Returns
    /// the lines each connection read.
    async fn scripted(
        scripts: Vec<Vec<(&'static str, &'static str)>>,
    ) -> (u16, tokio::task::JoinHandle<Vec<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            let mut all = Vec::new();
            for steps in scripts {
                let (sock, _) = listener.accept().await.expect("accept");
                let (r, mut w) = sock.into_split();
                let mut r = BufReader::new(r);
                let mut seen = Vec::new();
                w.write_all(b"220 test.example ESMTP\r\n").await.ok();
                for (expect, reply) in steps {
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                            break;
                        }
                        seen.push(line.clone());
                        if line.contains(expect) {
                            break;
                        }
                    }
                    w.write_all(reply.as_bytes()).await.ok();
                }
                // QUIT, or the connection kept in the pool until the test ends.
                let mut line = String::new();
                while r.read_line(&mut line).await.unwrap_or(0) > 0 {
                    seen.push(std::mem::take(&mut line));
                    if seen.last().is_some_and(|l| l.starts_with("QUIT")) {
                        w.write_all(b"221 bye\r\n").await.ok();
                        break;
                    }
                }
                all.push(seen);
            }
            all
        });
        (port, task)
    }

    fn transport(port: u16, oauth: crate::oauth::OAuthConfig) -> SmtpTransport {
        SmtpTransport::new(&SmtpConfig {
            host: "127.0.0.1".into(),
            port,
            tls: TlsMode::None,
            username: None,
            password_file: None,
            ca_file: None,
            pool_size: 1,
            timeout_seconds: 10,
            oauth: Some(Box::new(oauth)),
        })
        .expect("transport")
    }

    const RAW: &[u8] = b"Subject: x\r\n\r\nbody\r\n";

    #[tokio::test]
    async fn the_token_goes_after_334_and_one_refused_mid_session_is_replaced_without_failing_the_mail(
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let idp = token_endpoint(token_number).await;
        let login = vec![
            ("EHLO", EHLO),
            ("AUTH", "334 \r\n"),
            ("", "235 2.7.0 Authentication successful\r\n"),
        ];
        // The first session's token stops being accepted (Exchange: expired).
        let mut first = login.clone();
        first.push(("MAIL FROM", "535 5.7.3 Authentication unsuccessful\r\n"));
        let mut second = login;
        second.extend([
            ("MAIL FROM", "250 2.1.0 ok\r\n"),
            ("RCPT TO", "250 2.1.5 ok\r\n"),
            ("DATA", "354 go ahead\r\n"),
            (".", "250 2.0.0 queued\r\n"),
        ]);
        let (port, server) = scripted(vec![first, second]).await;
        let t = transport(
            port,
            idp.config(dir.path(), "survey@example.org", Mechanism::Xoauth2),
        );
        let to = vec!["kontakt@example.org".to_string()];
        let e = t
            .send("survey@example.org", &to, RAW)
            .await
            .expect_err("535");
        assert!(
            e.is_transient() && !e.is_throttled(),
            "a login problem defers the mail, it does not fail it: {e}"
        );
        assert!(e.message.contains("token was refused"), "{e}");
        assert!(!e.message.contains("tok-"), "{e}");
        // The retry logs in with a new token and the mail goes.
        t.send("survey@example.org", &to, RAW)
            .await
            .expect("sent with a new token");
        assert_eq!(idp.requests(), 2);
        drop(t);
        let seen = server.await.expect("server");
        for (conn, token) in seen.iter().zip(["tok-1", "tok-2"]) {
            let auth = conn
                .iter()
                .position(|l| l.starts_with("AUTH"))
                .expect("AUTH");
            // The command line carries the mechanism alone.
            assert_eq!(conn[auth], "AUTH XOAUTH2\r\n");
            assert_eq!(
                crate::test_support::sasl_line(&conn[auth + 1]),
                format!("user=survey@example.org\x01auth=Bearer {token}\x01\x01")
            );
        }
    }

    #[tokio::test]
    async fn an_error_challenge_is_answered_with_an_empty_line_and_read_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let idp = token_endpoint(token_number).await;
        let (port, server) = scripted(vec![vec![
            ("EHLO", EHLO),
            ("AUTH", "334 \r\n"),
            // Google's documented failure challenge.
            ("", "334 eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ==\r\n"),
            ("", "535 5.7.8 Username and Password not accepted\r\n"),
        ]])
        .await;
        let t = transport(
            port,
            idp.config(dir.path(), "survey@example.org", Mechanism::Oauthbearer),
        );
        let e = t
            .send("survey@example.org", &["a@example.org".to_string()], RAW)
            .await
            .expect_err("refused");
        assert!(e.is_transient(), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("refused AUTH OAUTHBEARER for survey@example.org"),
            "{text}"
        );
        assert!(
            text.contains("Username and Password not accepted"),
            "{text}"
        );
        assert!(
            text.contains("token refused (status 401, scope https://mail.google.com/)"),
            "{text}"
        );
        assert!(!text.contains("tok-1"), "{text}");
        drop(t);
        let seen = server.await.expect("server").remove(0);
        let auth = seen
            .iter()
            .position(|l| l.starts_with("AUTH"))
            .expect("AUTH");
        assert_eq!(seen[auth], "AUTH OAUTHBEARER\r\n");
        assert_eq!(
            crate::test_support::sasl_line(&seen[auth + 1]),
            format!(
                "n,a=survey@example.org,\x01host=127.0.0.1\x01port={port}\x01auth=Bearer tok-1\x01\x01"
            )
        );
        assert_eq!(seen[auth + 2], "\r\n", "the error challenge's answer");
    }
}
