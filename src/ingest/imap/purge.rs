//! Keeping the survey mailbox free of personal data (issue 12).
//!
//! The store is not the only place canvass leaves addresses and live links:
//! a hosted mailbox keeps a copy of every mail sent through its SMTP
//! submission in the sent folder (Exchange's "Sent Items", Gmail's
//! "[Gmail]/Sent Mail"), each with a personal link, and the processed
//! triggers stay in the processed folder with the contacts' addresses. The
//! retention purge and `forget` therefore also sweep those two folders:
//!
//! - **sent copies**: messages whose Message-ID starts with canvass' own
//!   prefix (`UID SEARCH HEADER Message-ID "canvass."`), in the folder named
//!   `inbound.imap.sent_folder` or, without it, the one the server marks
//!   `\Sent` (RFC 6154 special use, as Exchange, Gmail and Dovecot do);
//! - **processed mail**: everything in `inbound.imap.move_to`; without a
//!   separate processed folder, the messages in the mailbox itself that are
//!   `\Seen` and at or below the ingest mark (what canvass has processed);
//! - **quarantined mail**: everything in `inbound.imap.quarantine`, when it
//!   exists: mail canvass could not read may name a person or quote a link
//!   as well.
//!
//! Which messages go is decided by [`crate::retention::mailbox_selection`]
//! (pure): for retention those received before the cutoff, for `forget`
//! those whose text names the person (`TEXT "address"`). Other mail in the
//! same folders is never touched. Deletion is `\Deleted` plus `UID EXPUNGE`
//! of exactly those UIDs where the server offers UIDPLUS; without it a plain
//! `EXPUNGE` is sent only when no other message of the folder is flagged
//! `\Deleted`, otherwise the messages stay flagged and the report says so.
//! A dry run `EXAMINE`s the folders and only counts.

use std::fmt::Write;

use serde::Serialize;

use super::{
    mailbox_arg, parse_internal_date, quote_inner, same_mailbox, uid_set, uids_from_search,
    ImapSource, Item, Link, SWEEP_CHUNK,
};
use crate::classify::MESSAGE_ID_PREFIX;
use crate::ingest::{MailSource, SourceError};
use crate::retention::{mailbox_selection, MailboxSweep};
use crate::store::IngestMark;

/// What the sweep did, or in a dry run would do, in one folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FolderSweep {
    pub folder: String,
    /// `"sent copies"`, `"processed mail"` or `"quarantined mail"`.
    pub kind: &'static str,
    /// Messages deleted (in a dry run: that would be deleted).
    pub deleted: u64,
}

/// The mailbox part of `canvass purge` / `canvass forget`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MailboxReport {
    pub dry_run: bool,
    pub folders: Vec<FolderSweep>,
    /// What the operator should know: a folder not found, mail left flagged.
    pub notes: Vec<String>,
}

impl MailboxReport {
    /// The lines `canvass purge` and `canvass forget` print.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let verb = if self.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        for f in &self.folders {
            let _ = writeln!(
                s,
                "mailbox: {verb} {} {} in {:?}",
                f.deleted, f.kind, f.folder
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "mailbox: {n}");
        }
        s
    }
}

const SENT: &str = "sent copies";
const PROCESSED: &str = "processed mail";
const QUARANTINED: &str = "quarantined mail";

/// Where to look, and what for.
struct Target {
    /// The name as sent in commands (already encoded and quoted).
    arg: String,
    /// The name as shown.
    shown: String,
    kind: &'static str,
    criteria: String,
}

impl ImapSource {
    /// Sweeps the survey mailbox's sent and processed folders (see the module
    /// documentation). `mark` is the ingest mark the store holds for this
    /// source: it says which messages in the mailbox itself were processed.
    pub async fn sweep_folders(
        &self,
        sweep: &MailboxSweep,
        mark: Option<IngestMark>,
        dry_run: bool,
    ) -> Result<MailboxReport, SourceError> {
        let mut link = self.open().await?;
        let r = self.sweep_on(&mut link, sweep, mark, dry_run).await;
        let _ = link.exec("LOGOUT").await;
        r
    }

    async fn sweep_on(
        &self,
        link: &mut Link,
        sweep: &MailboxSweep,
        mark: Option<IngestMark>,
        dry_run: bool,
    ) -> Result<MailboxReport, SourceError> {
        let mut report = MailboxReport {
            dry_run,
            ..Default::default()
        };
        let person = match sweep {
            MailboxSweep::Person { address } => Some(address.as_str()),
            MailboxSweep::Retention { .. } => None,
        };
        let text = |base: &str| match person {
            Some(a) => format!("{base} TEXT \"{}\"", quote_inner(a))
                .trim()
                .to_string(),
            None => base.trim().to_string(),
        };
        let mut targets = Vec::new();

        // Sent copies.
        match self.sent_folder(link).await? {
            Some((arg, shown)) => targets.push(Target {
                arg,
                shown,
                kind: SENT,
                criteria: text(&format!("HEADER Message-ID \"{MESSAGE_ID_PREFIX}\"")),
            }),
            None => report.notes.push(
                "no sent folder: the server marks none \\Sent and inbound.imap.sent_folder is \
                 not set (set it if the server keeps copies of sent mail)"
                    .to_string(),
            ),
        }

        // Processed mail.
        let cfg = &self.cfg;
        match cfg
            .move_to
            .as_deref()
            .filter(|to| !same_mailbox(to, &cfg.mailbox))
        {
            Some(to) => {
                if self.folder_exists(link, &mailbox_arg(to)).await? {
                    targets.push(Target {
                        arg: mailbox_arg(to),
                        shown: to.to_string(),
                        kind: PROCESSED,
                        criteria: text("ALL"),
                    });
                }
            }
            None => match mark.filter(|m| m.last_uid > 0 && m.uid_validity == link.uid_validity) {
                Some(m) => targets.push(Target {
                    arg: mailbox_arg(&cfg.mailbox),
                    shown: cfg.mailbox.clone(),
                    kind: PROCESSED,
                    criteria: text(&format!("SEEN UID 1:{}", m.last_uid)),
                }),
                None => report.notes.push(format!(
                    "processed mail in {:?} was not swept: no ingest mark of the current \
                     UIDVALIDITY says which messages canvass processed",
                    cfg.mailbox
                )),
            },
        }

        // Quarantined mail, in a folder of its own.
        let q = &cfg.quarantine;
        let own_folder = !same_mailbox(q, &cfg.mailbox)
            && cfg.move_to.as_deref().is_none_or(|to| !same_mailbox(q, to));
        if own_folder && self.folder_exists(link, &mailbox_arg(q)).await? {
            targets.push(Target {
                arg: mailbox_arg(q),
                shown: q.clone(),
                kind: QUARANTINED,
                criteria: text("ALL"),
            });
        }

        for t in targets {
            let (deleted, note) = self.sweep_folder(link, &t, sweep, dry_run).await?;
            report.folders.push(FolderSweep {
                folder: t.shown,
                kind: t.kind,
                deleted,
            });
            report.notes.extend(note);
        }
        Ok(report)
    }

    /// The sent folder: configured, or the one LIST marks `\Sent`.
    async fn sent_folder(&self, link: &mut Link) -> Result<Option<(String, String)>, SourceError> {
        if let Some(name) = &self.cfg.sent_folder {
            let arg = mailbox_arg(name);
            if !self.folder_exists(link, &arg).await? {
                return Err(self.protocol(format!(
                    "inbound.imap.sent_folder {name:?} does not exist on the server"
                )));
            }
            return Ok(Some((arg, name.clone())));
        }
        let reply = self.run(link, "LIST", "LIST \"\" \"*\"").await?;
        Ok(reply.data.into_iter().find_map(|i| match i {
            Item::List { name, sent: true } => Some((format!("\"{}\"", quote_inner(&name)), name)),
            _ => None,
        }))
    }

    async fn folder_exists(&self, link: &mut Link, arg: &str) -> Result<bool, SourceError> {
        let reply = self.run(link, "LIST", &format!("LIST \"\" {arg}")).await?;
        Ok(reply.data.iter().any(|i| matches!(i, Item::List { .. })))
    }

    /// One folder: select, search, decide, delete. Returns how many went and
    /// a note when they could only be flagged.
    async fn sweep_folder(
        &self,
        link: &mut Link,
        t: &Target,
        sweep: &MailboxSweep,
        dry_run: bool,
    ) -> Result<(u64, Option<String>), SourceError> {
        let select = if dry_run { "EXAMINE" } else { "SELECT" };
        self.run(link, select, &format!("{select} {}", t.arg))
            .await?;
        let charset = if t.criteria.is_ascii() {
            ""
        } else {
            "CHARSET UTF-8 "
        };
        let search = format!("UID SEARCH {charset}{}", t.criteria);
        let mut found = uids_from_search(&self.run(link, "UID SEARCH", &search).await?.data);
        found.sort_unstable();
        found.dedup();
        let mut dated = Vec::with_capacity(found.len());
        if matches!(sweep, MailboxSweep::Retention { .. }) {
            for chunk in found.chunks(SWEEP_CHUNK) {
                let cmd = format!("UID FETCH {} (UID INTERNALDATE)", uid_set(chunk));
                for i in self.run(link, "UID FETCH", &cmd).await?.data {
                    if let Item::Fetch(f) = i {
                        let at = f.internal_date.as_deref().and_then(parse_internal_date);
                        dated.push((f.uid, at));
                    }
                }
            }
        } else {
            dated.extend(found.iter().map(|u| (*u, None)));
        }
        let doomed = mailbox_selection(sweep, &dated);
        if dry_run || doomed.is_empty() {
            return Ok((doomed.len() as u64, None));
        }
        for chunk in doomed.chunks(SWEEP_CHUNK) {
            let cmd = format!("UID STORE {} +FLAGS.SILENT (\\Deleted)", uid_set(chunk));
            self.run(link, "UID STORE", &cmd).await?;
        }
        let mut note = None;
        if link.uidplus {
            for chunk in doomed.chunks(SWEEP_CHUNK) {
                let cmd = format!("UID EXPUNGE {}", uid_set(chunk));
                self.run(link, "UID EXPUNGE", &cmd).await?;
            }
        } else {
            let flagged = uids_from_search(
                &self
                    .run(link, "UID SEARCH", "UID SEARCH DELETED")
                    .await?
                    .data,
            );
            if flagged.iter().all(|u| doomed.binary_search(u).is_ok()) {
                self.run(link, "EXPUNGE", "EXPUNGE").await?;
            } else {
                note = Some(format!(
                    "{} message(s) in {:?} are flagged \\Deleted but not expunged: the server \
                     has no UIDPLUS and the folder holds other deleted mail",
                    doomed.len(),
                    t.shown
                ));
            }
        }
        tracing::info!(folder = %t.shown, kind = t.kind, deleted = doomed.len(), "mailbox swept");
        Ok((doomed.len() as u64, note))
    }

    /// Runs a command that must succeed.
    async fn run(
        &self,
        link: &mut Link,
        doing: &str,
        cmd: &str,
    ) -> Result<super::Reply, SourceError> {
        link.run(cmd).await.map_err(|e| self.cmd_error(doing, e))
    }
}

/// The sweep for a configured IMAP mailbox, with the ingest mark from the
/// store (`store` may be `None` when the mark is not available).
pub async fn sweep_mailbox(
    cfg: &crate::config::ImapConfig,
    store: Option<&crate::store::Store>,
    sweep: &MailboxSweep,
    dry_run: bool,
) -> Result<MailboxReport, SourceError> {
    let source = ImapSource::new(cfg);
    let mark = match store {
        Some(s) => s
            .ingest_mark(&source.name())
            .map_err(|e| SourceError::Protocol {
                what: source.name(),
                detail: format!("cannot read the ingest mark from the store: {e}"),
            })?,
        None => None,
    };
    source.sweep_folders(sweep, mark, dry_run).await
}
