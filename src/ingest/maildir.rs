//! A Maildir as the survey mailbox (the demo, or a local delivery agent):
//! new messages are files in `new/` (and unseen ones in `cur/`); processed ones
//! are moved to `cur/` with the Seen flag. The file's modification time is the
//! time of receipt. The folder is polled.

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
}

impl MaildirSource {
    pub fn new(cfg: &MaildirConfig) -> MaildirSource {
        MaildirSource {
            root: cfg.path.clone(),
            poll: Duration::from_millis(cfg.poll_interval_ms),
            max_bytes: cfg.max_message_bytes,
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

fn read_capped(path: &Path, max: u64) -> std::io::Result<(Vec<u8>, bool)> {
    let len = std::fs::metadata(path)?.len();
    if len <= max {
        return Ok((std::fs::read(path)?, false));
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
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(self.root.join(sub))
                .map_err(|e| self.io("cannot create", e))?;
        }
        Ok(())
    }

    async fn fetch(&mut self, _store: &Store, limit: usize) -> Result<Vec<Incoming>, SourceError> {
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
                if !meta.is_file() {
                    continue;
                }
                let mtime: DateTime<Utc> = meta
                    .modified()
                    .map(DateTime::from)
                    .unwrap_or_else(|_| Utc::now());
                found.push((mtime, format!("{sub}/{name}"), entry.path()));
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
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {} // moved meanwhile
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

    async fn wait_for_mail(&mut self, shutdown: &Shutdown) -> Result<(), SourceError> {
        shutdown.sleep(self.poll).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_flag() {
        assert!(is_seen("123.abc:2,S"));
        assert!(is_seen("123.abc:2,FS"));
        assert!(!is_seen("123.abc:2,"));
        assert!(!is_seen("123.abc"));
    }
}
