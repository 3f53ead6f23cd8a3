//! The connection to the IMAP server: TCP, TLS (implicit or STARTTLS), the
//! greeting, login with a password or OAuth 2.0 SASL, capabilities and
//! SELECT, giving a [`Link`]; and [`Conn`], the socket underneath, with
//! stall timeouts and the swap of the placeholder for the real secret on the
//! wire (see the module documentation of `imap`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_imap::imap_proto::{Response, Status};
use async_imap::{Client, Session};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_rustls::rustls;

use super::session::{Item, Link};
use super::wire::{mailbox_arg, mutf7, quote_inner, same_mailbox, server_text};
use super::{ImapCheck, ImapSource, CONNECT_TIMEOUT, IO_TIMEOUT, SETUP_TIMEOUT};
use crate::config::{is_loopback_host, read_secret, TlsMode};
use crate::ingest::{MailSource, SourceError};
use crate::oauth::{sasl, AccessToken};

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

impl ImapSource {
    /// Opens a session: TCP, TLS, greeting, login, capabilities, SELECT.
    pub(super) async fn open(&self) -> Result<Link, SourceError> {
        self.open_and(true).await
    }

    /// Opens a session; `select`: also SELECT the configured mailbox.
    pub(super) async fn open_and(&self, select: bool) -> Result<Link, SourceError> {
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
        let special_sent = names
            .iter()
            .find(|n| {
                n.attributes()
                    .iter()
                    .any(|a| matches!(a, async_imap::types::NameAttribute::Sent))
            })
            .map(|n| n.name().to_string());
        let check = ImapCheck {
            mailbox_exists: exists(&self.cfg.mailbox),
            move_to_exists: self.cfg.move_to.as_deref().map(exists),
            quarantine_exists: exists(&self.cfg.quarantine),
            sent_folder: match &self.cfg.sent_folder {
                Some(name) => Some((name.clone(), exists(name))),
                None => special_sent.map(|name| (name, true)),
            },
            capabilities,
            folders,
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), session.logout()).await;
        Ok(check)
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
pub(super) struct Conn {
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

    pub(super) fn set_io_timeout(&mut self, t: Option<Duration>) {
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
}
