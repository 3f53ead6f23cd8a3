//! The survey mailbox over IMAP (being written: see the helper's task).

use super::{Incoming, MailSource, SourceError};
use crate::config::ImapConfig;
use crate::shutdown::Shutdown;
use crate::store::Store;

pub struct ImapSource {
    cfg: ImapConfig,
}

impl ImapSource {
    pub fn new(cfg: &ImapConfig) -> ImapSource {
        ImapSource { cfg: cfg.clone() }
    }
}

impl MailSource for ImapSource {
    fn name(&self) -> String {
        format!(
            "imap:{}@{}/{}",
            self.cfg.username, self.cfg.host, self.cfg.mailbox
        )
    }

    async fn connect(&mut self) -> Result<(), SourceError> {
        Err(SourceError::Connect {
            what: self.name(),
            detail: "IMAP is not implemented yet".into(),
        })
    }

    async fn fetch(&mut self, _store: &Store, _limit: usize) -> Result<Vec<Incoming>, SourceError> {
        Ok(Vec::new())
    }

    async fn mark_processed(&mut self, _done: &[Incoming]) -> Result<(), SourceError> {
        Ok(())
    }

    async fn wait_for_mail(&mut self, shutdown: &Shutdown) -> Result<(), SourceError> {
        shutdown.wait().await;
        Ok(())
    }
}
