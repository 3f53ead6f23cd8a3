//! Logging through tracing: human text or JSON lines on stderr, or the systemd
//! journal with structured fields.
//!
//! `--log-format auto` (the default) picks the journal when systemd connected
//! stderr to it (`$JOURNAL_STREAM` names stderr's device and inode), text
//! otherwise. In the journal every field of an event is a journal field named
//! `CANVASS_<FIELD>` (`CANVASS_MESSAGE_ID`, `CANVASS_ERROR`, …), the level is
//! `PRIORITY`, and `SYSLOG_IDENTIFIER=canvass`:
//! `journalctl -u canvass CANVASS_MESSAGE_ID=<…>` finds one message's story.
//! If the journal socket cannot be reached, logging falls back to text on
//! stderr and says so.
//!
//! Tokens, answers and passwords are never logged (the events carry message
//! IDs, counts and reasons only), whatever the format.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// journald when stderr is connected to the journal, else text.
    Auto,
    Text,
    Json,
    /// The systemd journal, with structured fields (text on stderr if the
    /// journal is unreachable).
    Journald,
}

/// The prefix of canvass' own fields in the journal.
pub const JOURNAL_FIELD_PREFIX: &str = "CANVASS";

fn filter() -> EnvFilter {
    let base = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,canvass=info".to_string());
    // The IMAP and SMTP libraries trace whole commands and responses (mail
    // bodies, personal links): never below warn, whatever RUST_LOG says.
    let privacy = "async_imap=warn,imap_proto=warn,lettre=warn";
    EnvFilter::try_new(format!("{base},{privacy}"))
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,canvass=info,{privacy}")))
}

/// Installs the global subscriber. `RUST_LOG` overrides the default level
/// (`info` for canvass, `warn` for libraries).
pub fn init(format: LogFormat) {
    let format = resolve(format, stderr_is_journal());
    if format == LogFormat::Journald {
        match tracing_journald::layer() {
            Ok(layer) => {
                let layer = layer
                    .with_syslog_identifier("canvass".to_string())
                    .with_field_prefix(Some(JOURNAL_FIELD_PREFIX.to_string()));
                let _ = tracing_subscriber::registry()
                    .with(filter())
                    .with(layer)
                    .try_init();
                return;
            }
            Err(e) => {
                init_stderr(LogFormat::Text);
                tracing::warn!(error = %e, "the systemd journal is unreachable; logging to stderr as text");
                return;
            }
        }
    }
    init_stderr(format);
}

fn init_stderr(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        _ => builder.try_init(),
    };
}

/// `auto` → journald or text; an explicit format stays.
pub fn resolve(format: LogFormat, stderr_is_journal: bool) -> LogFormat {
    match format {
        LogFormat::Auto if stderr_is_journal => LogFormat::Journald,
        LogFormat::Auto => LogFormat::Text,
        f => f,
    }
}

/// True when `$JOURNAL_STREAM` names our stderr: systemd connected it to the
/// journal. Compared by device and inode, as sd_journal_stream_fd(3) advises,
/// so a child whose stderr was redirected does not inherit the decision.
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some(value) = value.to_str() else {
        return false;
    };
    match stderr_dev_ino() {
        Some((dev, ino)) => journal_stream_matches(value, dev, ino),
        None => false,
    }
}

fn stderr_dev_ino() -> Option<(u64, u64)> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

/// `$JOURNAL_STREAM` is `DEVICE:INODE`, both decimal.
pub fn journal_stream_matches(value: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = value.trim().split_once(':') else {
        return false;
    };
    d.parse::<u64>().ok() == Some(dev) && i.parse::<u64>().ok() == Some(ino)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_is_device_and_inode() {
        assert!(journal_stream_matches("8:12345", 8, 12345));
        assert!(!journal_stream_matches("8:12345", 8, 1));
        assert!(!journal_stream_matches("9:12345", 8, 12345));
        assert!(!journal_stream_matches("", 8, 12345));
        assert!(!journal_stream_matches("8-12345", 8, 12345));
    }

    #[test]
    fn auto_picks_the_journal_only_when_stderr_is_it() {
        assert_eq!(resolve(LogFormat::Auto, true), LogFormat::Journald);
        assert_eq!(resolve(LogFormat::Auto, false), LogFormat::Text);
        assert_eq!(resolve(LogFormat::Json, true), LogFormat::Json);
        assert_eq!(resolve(LogFormat::Journald, false), LogFormat::Journald);
    }
}
