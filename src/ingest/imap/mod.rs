//! The survey mailbox over IMAP (async-imap on tokio, TLS by rustls).
//!
//! What lives where:
//!
//! - `mod.rs` (this file): [`ImapSource`], the [`MailSource`] it implements
//!   (reading, marking, quarantining, waiting) and its error mapping, with
//!   `session()` (the live session or "not connected") and
//!   `command()` (run a command that must succeed; a refusal
//!   drops the session).
//! - `conn.rs`: the connection — TCP, TLS, greeting, login (password or
//!   OAuth 2.0 SASL), SELECT — and the socket wrapper `Conn` with its
//!   stall timeouts and the secret swap.
//! - `session.rs`: the command layer over a logged-in session (`Link`):
//!   run a command and collect its responses, IDLE by hand.
//! - `wire.rs`: pure helpers — UID sets, modified UTF-7, FETCH parsing,
//!   batch planning, the server's words from async-imap's errors.
//! - `purge.rs`: sweeping sent copies and processed mail out of the mailbox.
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

use std::io;
use std::time::Duration;

use chrono::Utc;

mod conn;
mod purge;
mod session;
mod wire;
pub use purge::{sweep_mailbox, FolderSweep, MailboxReport};

use session::{CmdError, IdleEnd, Item, Link, Reply};
use wire::{
    mailbox_arg, parse_internal_date, plan_batch, quote_inner, resume_point, same_mailbox,
    server_text, uid_set, uids_above, uids_from_search, uids_to_mark, Meta,
};

use super::{Incoming, MailSource, SourceError};
use crate::config::ImapConfig;
use crate::oauth::TokenSource;
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
    pub quarantine_exists: bool,
    /// The sent folder the retention sweep reads, and whether it exists:
    /// `inbound.imap.sent_folder`, or the folder LIST marks `\Sent`; `None`
    /// when neither.
    pub sent_folder: Option<(String, bool)>,
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

    /// The live session, or the "not connected" error.
    fn session(&mut self) -> Result<&mut Link, SourceError> {
        match self.link {
            Some(ref mut link) => Ok(link),
            None => Err(self.io_err(
                "not connected",
                io::Error::new(io::ErrorKind::NotConnected, "no IMAP session"),
            )),
        }
    }

    /// Sends `cmd` on the session and reads its reply, whatever the status;
    /// a failed connection drops the session.
    async fn exec(&mut self, doing: &str, cmd: &str) -> Result<Reply, SourceError> {
        let r = self.session()?.exec(cmd).await;
        r.map_err(|e| self.failed(doing, e))
    }

    /// Runs `cmd`, which must succeed: a refusal, like a failed connection,
    /// drops the session and is reported as `doing`.
    async fn command(&mut self, doing: &str, cmd: &str) -> Result<Reply, SourceError> {
        let r = self.session()?.run(cmd).await;
        r.map_err(|e| self.failed(doing, e))
    }

    /// A reply that is not OK, as [`Self::failed`] reports it.
    fn refused(&mut self, doing: &str, reply: Reply) -> SourceError {
        self.failed(doing, CmdError::Refused(reply.text))
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
        self.cmd_error(doing, e)
    }

    /// A failed command as an error (the session is left alone).
    fn cmd_error(&self, doing: &str, e: CmdError) -> SourceError {
        match e {
            CmdError::Io(e) => self.io_err(doing, e),
            CmdError::Refused(text) => self.protocol(format!("{doing}: the server said {text}")),
        }
    }

    /// Finds and reads the next messages above the stored mark and above
    /// the messages `in_flight` (fetched on this session, not yet committed).
    async fn fetch_inner(
        &mut self,
        store: &Store,
        limit: usize,
        in_flight: &[Incoming],
    ) -> Result<Vec<Incoming>, SourceError> {
        let name = self.name();
        let max_bytes = self.cfg.max_message_bytes;
        let validity = self.session()?.uid_validity;
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
        self.session()?.new_mail = false;
        self.more_waiting = false;
        if limit == 0 {
            return Ok(Vec::new());
        }

        // A server shows new mail to a session only at a command's end (as
        // EXISTS): NOOP first, so that the search sees what has arrived.
        self.command("NOOP", "NOOP").await?;
        self.session()?.new_mail = false;
        let last_uid = in_flight
            .iter()
            .filter_map(|m| m.mark)
            .filter(|m| m.uid_validity == validity)
            .map(|m| m.last_uid)
            .fold(last_uid, u32::max);
        let search = format!("UID SEARCH UID {}:*", last_uid.saturating_add(1));
        let found = uids_from_search(&self.command("UID SEARCH", &search).await?.data);
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
        let meta = self.exec("UID FETCH", &meta_cmd).await?;
        if !meta.ok() && meta.data.is_empty() {
            return Err(self.refused("UID FETCH", meta));
        }
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
            let reply = self.exec("UID FETCH", &cmd).await?;
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
        self.session()?.swept = true;
        if last_uid == 0 {
            return Ok(());
        }
        let cmd = if moving {
            format!("UID SEARCH UID 1:{last_uid}")
        } else {
            format!("UID SEARCH UID 1:{last_uid} UNSEEN")
        };
        let left = uids_from_search(&self.command("UID SEARCH", &cmd).await?.data);
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
        let store_cmd = format!("UID STORE {set} +FLAGS.SILENT (\\Seen)");
        self.command("UID STORE", &store_cmd).await?;
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
        let reply = self.exec("UID MOVE", &move_cmd).await?;
        if reply.ok() {
            return Ok(());
        }
        if reply.text.contains("[TRYCREATE]") {
            // The folder went away since it was created: once more.
            self.move_folder_ready = false;
            self.ensure_folder(&to).await?;
            self.command("UID MOVE", &move_cmd).await?;
            return Ok(());
        }
        Err(self.refused("UID MOVE", reply))
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
            self.command("quarantine", &cmd).await?;
        }
        Ok(())
    }

    /// Creates the folder `name` (the config key `key`) unless it exists.
    async fn create_folder(&mut self, name: &str, key: &str) -> Result<(), SourceError> {
        let to = name;
        let arg = mailbox_arg(to);
        let listed = self.command("LIST", &format!("LIST \"\" {arg}")).await?;
        let exists = listed.data.iter().any(|i| matches!(i, Item::List { .. }));
        if !exists {
            let r = self.exec("CREATE", &format!("CREATE {arg}")).await?;
            if r.ok() || r.text.contains("[ALREADYEXISTS]") {
                tracing::info!(source = %self.name(), folder = %to, key, "created the folder");
            } else {
                let detail = format!("cannot create {key} {to:?}: the server said {}", r.text);
                self.link = None;
                return Err(self.protocol(detail));
            }
        }
        Ok(())
    }

    /// IDLE until new mail, the re-issue time, or shutdown.
    async fn idle(&mut self, shutdown: &Shutdown) -> Result<(), SourceError> {
        let r = self.session()?.idle(shutdown).await;
        match r {
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

    async fn fetch(
        &mut self,
        store: &Store,
        limit: usize,
        in_flight: &[Incoming],
    ) -> Result<Vec<Incoming>, SourceError> {
        let r = self.fetch_inner(store, limit, in_flight).await;
        if r.is_err() {
            self.link = None;
        }
        r
    }

    async fn mark_processed(&mut self, done: &[Incoming]) -> Result<(), SourceError> {
        let validity = self.session()?.uid_validity;
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
        let validity = self.session()?.uid_validity;
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
        let (new_mail, idle) = {
            let link = self.session()?;
            (std::mem::take(&mut link.new_mail), link.idle)
        };
        if new_mail || self.more_waiting {
            self.more_waiting = false;
            return Ok(());
        }
        if idle {
            let r = self.idle(shutdown).await;
            if r.is_err() {
                self.link = None;
            }
            return r;
        }
        if shutdown.sleep(self.poll).await {
            return Ok(());
        }
        self.command("NOOP", "NOOP").await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TlsMode;
    use std::path::PathBuf;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

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
                // DONE and SASL responses have no tag: they answer with
                // IDLE's and AUTHENTICATE's.
                if line.trim().contains(' ') {
                    tag = line.split(' ').next().unwrap_or("").to_string();
                }
                w.write_all(reply.replace("{tag}", &tag).as_bytes())
                    .await
                    .ok();
                // A BYE ends the session: the server closes the connection.
                if reply.starts_with("* BYE") {
                    return seen;
                }
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

    /// `config` logging in with OAuth 2.0 at `idp`.
    fn oauth_config(
        port: u16,
        dir: &std::path::Path,
        idp: &crate::test_support::TokenEndpoint,
        mechanism: crate::oauth::Mechanism,
    ) -> ImapConfig {
        let mut cfg = config(port, dir);
        cfg.oauth = Some(Box::new(idp.config(dir, &cfg.username, mechanism)));
        cfg
    }

    const AUTH_OK: &str = "{tag} OK Logged in\r\n";

    /// Exchange ends a session whose token expired with `* BYE Session
    /// invalidated - AccessTokenExpired`: the next session logs in with a
    /// new token, though the cached one has most of its hour left. The token
    /// goes in reply to `+`, never on the AUTHENTICATE line.
    #[tokio::test]
    async fn a_session_ended_for_an_expired_token_logs_in_again_with_a_new_one() {
        use crate::test_support::{token_endpoint, token_number};
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("store")).expect("store");
        let idp = token_endpoint(token_number).await;
        let login = || {
            vec![
                ("AUTHENTICATE", "+ \r\n".to_string()),
                ("", AUTH_OK.to_string()),
                (
                    "CAPABILITY",
                    "* CAPABILITY IMAP4rev1 IDLE\r\n{tag} OK done\r\n".to_string(),
                ),
                ("SELECT", SELECT_OK.to_string()),
            ]
        };
        let mut first = login();
        first.push((
            "",
            "* BYE Session invalidated - AccessTokenExpired\r\n".to_string(),
        ));
        let (port, server) = scripted(first).await;
        let mut src = ImapSource::new(&oauth_config(
            port,
            dir.path(),
            &idp,
            crate::oauth::Mechanism::Xoauth2,
        ));
        src.connect().await.expect("connect");
        let e = src.fetch(&store, 10, &[]).await.expect_err("BYE");
        assert!(e.to_string().contains("AccessTokenExpired"), "{e}");
        let (port2, server2) = scripted(login()).await;
        src.cfg.port = port2;
        src.connect().await.expect("reconnect");
        assert_eq!(idp.requests(), 2, "a new token for the new session");
        drop(src);
        for (seen, token) in [
            (server.await.expect("server"), "tok-1"),
            (server2.await.expect("server"), "tok-2"),
        ] {
            let auth = seen
                .iter()
                .position(|l| l.contains("AUTHENTICATE"))
                .expect("AUTHENTICATE");
            assert!(
                seen[auth].ends_with(" AUTHENTICATE XOAUTH2\r\n"),
                "{:?}",
                seen[auth]
            );
            assert_eq!(
                crate::test_support::sasl_line(&seen[auth + 1]),
                format!("user=survey@example.org\x01auth=Bearer {token}\x01\x01")
            );
        }
    }

    /// A refused token: the error challenge is answered with an empty line,
    /// the server's words are reported, and the token is not offered again.
    #[tokio::test]
    async fn a_refused_token_is_reported_with_the_error_challenge_and_dropped() {
        use crate::test_support::{token_endpoint, token_number};
        let dir = tempfile::tempdir().expect("tempdir");
        let idp = token_endpoint(token_number).await;
        let (port, server) = scripted(vec![
            ("AUTHENTICATE", "+ \r\n".into()),
            // Google's documented failure challenge.
            (
                "",
                format!("+ {}\r\n", crate::test_support::GOOGLE_ERROR_CHALLENGE),
            ),
            (
                "",
                "{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n".into(),
            ),
        ])
        .await;
        let mut src = ImapSource::new(&oauth_config(
            port,
            dir.path(),
            &idp,
            crate::oauth::Mechanism::Oauthbearer,
        ));
        let e = src.connect().await.expect_err("refused");
        let text = e.to_string();
        assert!(matches!(e, SourceError::Token { .. }), "{e:?}");
        assert!(
            text.contains("the server refused AUTHENTICATE OAUTHBEARER for survey@example.org"),
            "{text}"
        );
        assert!(text.contains("Authentication failed"), "{text}");
        assert!(
            text.contains("token refused (status 401, scope https://mail.google.com/)"),
            "{text}"
        );
        assert!(!text.contains("tok-1") && !format!("{e:?}").contains("tok-1"));
        let Some(Ok(tokens)) = &src.tokens else {
            panic!("a token source")
        };
        assert_eq!(tokens.token().await.expect("token").expose(), "tok-2");
        drop(src);
        let seen = server.await.expect("server");
        let auth = seen
            .iter()
            .position(|l| l.contains("AUTHENTICATE"))
            .expect("AUTHENTICATE");
        assert!(seen[auth].ends_with(" AUTHENTICATE OAUTHBEARER\r\n"));
        assert!(
            crate::test_support::sasl_line(&seen[auth + 1]).ends_with("auth=Bearer tok-1\x01\x01")
        );
        assert_eq!(seen[auth + 2], "\r\n", "the error challenge's answer");
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
        let got = src.fetch(&store, 10, &[]).await.expect("fetch");
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
        assert!(src.fetch(&store, 10, &[]).await.expect("fetch").is_empty());
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
        assert!(src.fetch(&store, 10, &[]).await.expect("fetch").is_empty());
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
        src.fetch(&store, 10, &[]).await.expect("fetch");
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
