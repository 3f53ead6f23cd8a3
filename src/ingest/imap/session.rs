//! The command layer over a logged-in session: [`Link`] runs one command and
//! collects its untagged data up to the tagged status ([`Link::exec`], or
//! [`Link::run`] when anything but OK is a refusal), notes EXISTS along the
//! way, and idles by hand (RFC 2177). Server responses are digested into the
//! owned [`Got`]/[`Item`] here; nothing in this file maps errors for the
//! operator (that is `ImapSource`'s job in `mod.rs`).

use std::io;

use async_imap::imap_proto::{MailboxDatum, RequestId, Response, ResponseCode, Status};
use async_imap::Session;
use tokio::time::Instant;

use super::conn::Conn;
use super::wire::{outcome_text, parse_fetch, status_copy, Fetched};
use super::{DONE_AT_SHUTDOWN, IDLE_REISSUE, IO_TIMEOUT};
use crate::shutdown::Shutdown;

/// A logged-in session with the mailbox selected.
pub(super) struct Link {
    pub(super) session: Session<Conn>,
    pub(super) idle: bool,
    pub(super) can_move: bool,
    /// UIDPLUS (RFC 4315): `UID EXPUNGE` removes only the messages named.
    pub(super) uidplus: bool,
    pub(super) uid_validity: u32,
    /// The server reported EXISTS since the last fetch started.
    pub(super) new_mail: bool,
    /// Left-overs below the mark were looked for on this connection.
    pub(super) swept: bool,
}

/// A command's outcome: untagged data and the tagged status.
pub(super) struct Reply {
    pub(super) data: Vec<Item>,
    pub(super) status: Status,
    pub(super) text: String,
}

impl Reply {
    pub(super) fn ok(&self) -> bool {
        self.status == Status::Ok
    }
}

pub(super) enum CmdError {
    /// The connection failed.
    Io(io::Error),
    /// The server answered NO or BAD where the caller cannot go on.
    Refused(String),
}

/// How an IDLE ended.
pub(super) enum IdleEnd {
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
pub(super) enum Got {
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
pub(super) enum Item {
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
    pub(super) async fn exec(&mut self, cmd: &str) -> Result<Reply, CmdError> {
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

    /// Runs one command that must succeed: any status but OK is
    /// [`CmdError::Refused`] with the server's words.
    pub(super) async fn run(&mut self, cmd: &str) -> Result<Reply, CmdError> {
        let reply = self.exec(cmd).await?;
        if reply.ok() {
            Ok(reply)
        } else {
            Err(CmdError::Refused(reply.text))
        }
    }

    /// IDLE (RFC 2177) until EXISTS, the re-issue time or shutdown, then DONE.
    ///
    /// Done by hand rather than with async-imap's `Handle`: that one sends
    /// responses arriving before the continuation to a side channel that is
    /// out of reach while idling (an EXISTS there would be missed for 25
    /// minutes), restarts its timeout on every `* OK Still here`, and reports
    /// a closed connection as a manual interrupt.
    pub(super) async fn idle(&mut self, shutdown: &Shutdown) -> Result<IdleEnd, CmdError> {
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
