//! A Maildir as the survey mailbox (the demo, or a local delivery agent):
//! new messages are files in `new/` (and unseen ones in `cur/`); processed ones
//! are moved to `cur/` with the Seen flag. The file's modification time is the
//! time of receipt. The folder is polled.
//!
//! Only complete files are read. A delivery agent writes into `tmp/` and
//! renames into `new/`; a file copied straight into `new/` may still be being
//! written, so a file is read only once it has not changed (size, mtime,
//! ctime) for `settle_ms`, and its length read must equal its length before.
//! Messages canvass cannot read go to `quarantine/` beside `new/` and `cur/`,
//! under the same file name.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Incoming, MailSource, SourceError};
use crate::config::MaildirConfig;
use crate::shutdown::Shutdown;
use crate::store::Store;

pub struct MaildirSource {
    root: PathBuf,
    poll: Duration,
    max_bytes: u64,
    settle: Duration,
}

impl MaildirSource {
    pub fn new(cfg: &MaildirConfig) -> MaildirSource {
        MaildirSource {
            root: cfg.path.clone(),
            poll: Duration::from_millis(cfg.poll_interval_ms),
            max_bytes: cfg.max_message_bytes,
            settle: Duration::from_millis(cfg.settle_ms),
        }
    }

    fn io(&self, what: &str, source: std::io::Error) -> SourceError {
        SourceError::Io {
            what: format!("maildir {}: {what}", self.root.display()),
            source,
        }
    }
}

/// Whether a file name in cur/ carries the Seen flag (`:2,S`).
fn is_seen(name: &str) -> bool {
    name.rsplit_once(":2,")
        .map(|(_, flags)| flags.contains('S'))
        .unwrap_or(false)
}

/// The last time a file changed: its content (mtime) or its inode (ctime:
/// a rename into `new/`, or `cp -p` setting an old mtime after writing).
fn last_change(meta: &std::fs::Metadata) -> std::time::SystemTime {
    use std::os::unix::fs::MetadataExt;
    let ctime = std::time::UNIX_EPOCH
        + Duration::new(
            u64::try_from(meta.ctime()).unwrap_or(0),
            u32::try_from(meta.ctime_nsec()).unwrap_or(0),
        );
    meta.modified().map(|m| m.max(ctime)).unwrap_or(ctime)
}

/// Whether a file has been left alone for `settle`: `None` when it is still
/// being written (or its clock is ahead of ours, which is the same to us).
fn settled(meta: &std::fs::Metadata, settle: Duration) -> bool {
    std::time::SystemTime::now()
        .duration_since(last_change(meta))
        .is_ok_and(|age| age >= settle)
}

fn read_capped(path: &Path, max: u64) -> std::io::Result<(Vec<u8>, bool)> {
    let len = std::fs::metadata(path)?.len();
    if len <= max {
        let raw = std::fs::read(path)?;
        // Grew or shrank while read: being written after all; next round.
        if raw.len() as u64 != len || std::fs::metadata(path)?.len() != len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                "the file changed while it was read",
            ));
        }
        return Ok((raw, false));
    }
    // Too large: read the whole header (a trigger is decided on headers; a
    // CC past any fixed cap would be dropped silently), but never more than
    // `max` bytes of it.
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut head = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        let from = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&head[from..]) {
            head.truncate(from + end);
            break;
        }
        if head.len() as u64 >= max {
            break;
        }
    }
    Ok((head, true))
}

/// Where the header ends (after its blank line) in `buf`, if it does.
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl MailSource for MaildirSource {
    fn name(&self) -> String {
        format!("maildir:{}", self.root.display())
    }

    async fn connect(&mut self) -> Result<(), SourceError> {
        for sub in ["new", "cur", "tmp", "quarantine"] {
            std::fs::create_dir_all(self.root.join(sub))
                .map_err(|e| self.io("cannot create", e))?;
        }
        Ok(())
    }

    async fn fetch(
        &mut self,
        _store: &Store,
        limit: usize,
        in_flight: &[Incoming],
    ) -> Result<Vec<Incoming>, SourceError> {
        let mut found: Vec<(DateTime<Utc>, String, PathBuf)> = Vec::new();
        for sub in ["new", "cur"] {
            let dir = self.root.join(sub);
            let entries = std::fs::read_dir(&dir).map_err(|e| self.io("cannot list", e))?;
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || (sub == "cur" && is_seen(&name)) {
                    continue;
                }
                let Ok(meta) = entry.metadata() else { continue };
                if !meta.is_file() || !settled(&meta, self.settle) {
                    continue;
                }
                let mtime: DateTime<Utc> = meta
                    .modified()
                    .map(DateTime::from)
                    .unwrap_or_else(|_| Utc::now());
                let id = format!("{sub}/{name}");
                if in_flight.iter().any(|m| m.id == id) {
                    continue;
                }
                found.push((mtime, id, entry.path()));
            }
        }
        found.sort();
        let mut out = Vec::new();
        for (received, id, path) in found.into_iter().take(limit) {
            match read_capped(&path, self.max_bytes) {
                Ok((raw, headers_only)) => out.push(Incoming {
                    id,
                    raw,
                    received,
                    mark: None,
                    headers_only,
                }),
                // Moved meanwhile, or still being written.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::WouldBlock
                    ) => {}
                Err(e) => return Err(self.io(&format!("cannot read {id}"), e)),
            }
        }
        Ok(out)
    }

    async fn mark_processed(&mut self, done: &[Incoming]) -> Result<(), SourceError> {
        for m in done {
            let from = self.root.join(&m.id);
            let base = m.id.rsplit('/').next().unwrap_or(&m.id);
            let (unique, flags) = base.rsplit_once(":2,").unwrap_or((base, ""));
            let mut flags: Vec<char> = flags.chars().collect();
            if !flags.contains(&'S') {
                flags.push('S');
                flags.sort_unstable();
            }
            let to = self.root.join("cur").join(format!(
                "{unique}:2,{}",
                flags.into_iter().collect::<String>()
            ));
            if let Err(e) = std::fs::rename(&from, &to) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(self.io(&format!("cannot move {} to cur/", m.id), e));
                }
            }
        }
        Ok(())
    }

    async fn quarantine(&mut self, unreadable: &[Incoming]) -> Result<(), SourceError> {
        let dir = self.root.join("quarantine");
        std::fs::create_dir_all(&dir).map_err(|e| self.io("cannot create quarantine/", e))?;
        for m in unreadable {
            let base = m.id.rsplit('/').next().unwrap_or(&m.id);
            if let Err(e) = std::fs::rename(self.root.join(&m.id), dir.join(base)) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(self.io(&format!("cannot move {} to quarantine/", m.id), e));
                }
            }
        }
        Ok(())
    }

    async fn wait_for_mail(&mut self, shutdown: &Shutdown) -> Result<(), SourceError> {
        shutdown.sleep(self.poll).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_read_only_once_it_settled() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("m");
        std::fs::write(&path, b"Subject: x\r\n\r\n").expect("written");
        let meta = std::fs::metadata(&path).expect("metadata");
        assert!(settled(&meta, Duration::ZERO));
        assert!(!settled(&meta, Duration::from_secs(3600)));
    }

    #[test]
    fn seen_flag() {
        assert!(is_seen("123.abc:2,S"));
        assert!(is_seen("123.abc:2,FS"));
        assert!(!is_seen("123.abc:2,"));
        assert!(!is_seen("123.abc"));
    }
}
