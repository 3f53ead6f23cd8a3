//! Where outgoing mail goes, behind one small trait: SMTP in production,
//! `.eml` files for the demo and for inspection. The outbox loop only sees
//! [`Transport`]; errors say whether trying again can help.

use std::future::Future;
use std::pin::Pin;

pub mod file;
pub mod smtp;

/// A send that did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    permanent: bool,
    throttled: bool,
    pub message: String,
}

impl SendError {
    pub fn transient(message: impl Into<String>) -> SendError {
        SendError {
            permanent: false,
            throttled: false,
            message: message.into(),
        }
    }

    /// The server asked to slow down (`pacing::is_throttling`): retry later,
    /// and pause sending meanwhile. Never a failure or a bounce.
    pub fn throttled(message: impl Into<String>) -> SendError {
        SendError {
            permanent: false,
            throttled: true,
            message: message.into(),
        }
    }

    pub fn is_throttled(&self) -> bool {
        self.throttled
    }

    pub fn permanent(message: impl Into<String>) -> SendError {
        SendError {
            permanent: true,
            throttled: false,
            message: message.into(),
        }
    }

    /// Worth trying again later (4xx, connection refused, time-out).
    pub fn is_transient(&self) -> bool {
        !self.permanent
    }

    /// The server refused for good (5xx): trying again will not help.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }
}

pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>>;

/// Delivers one already-rendered message to its envelope recipients.
pub trait Transport: Send + Sync {
    fn send<'a>(&'a self, from: &'a str, to: &'a [String], raw: &'a [u8]) -> SendFuture<'a>;

    /// Checks that the destination is reachable (at start, for READY).
    fn check(&self) -> SendFuture<'_>;

    /// A short description for logs ("smtp 127.0.0.1:25").
    fn describe(&self) -> String;
}

/// Builds the configured transport.
pub fn from_config(cfg: &crate::config::Outbound) -> anyhow::Result<Box<dyn Transport>> {
    Ok(match cfg {
        crate::config::Outbound::Smtp(s) => Box::new(smtp::SmtpTransport::new(s)?),
        crate::config::Outbound::File(dir) => Box::new(file::FileTransport::new(dir)?),
    })
}

fn envelope(from: &str, to: &[String]) -> Result<lettre::address::Envelope, SendError> {
    let from = from
        .parse()
        .map_err(|e| SendError::permanent(format!("envelope sender {from:?}: {e}")))?;
    let to = to
        .iter()
        .map(|t| {
            t.parse()
                .map_err(|e| SendError::permanent(format!("envelope recipient {t:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    lettre::address::Envelope::new(Some(from), to)
        .map_err(|e| SendError::permanent(format!("envelope: {e}")))
}
