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

/// 5xx is permanent; 4xx, refused connections and time-outs are transient.
fn classify_error(e: &lettre::transport::smtp::Error) -> SendError {
    let msg = e.to_string();
    if e.is_permanent() {
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
            if let Some(credentials) = &self.credentials {
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
