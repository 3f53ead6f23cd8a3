//! Probes for the unit tests of the loops over the store (`ingest::run`,
//! `Outbox::work`): what is written but not yet durable, and a corrupt
//! record to make a transaction fail. Compiled for tests only.

use super::{Store, StoreError};

impl Store {
    /// Flushes, returning how many bytes were written but not yet durable:
    /// 0 means everything written so far had been flushed already.
    pub(crate) fn unflushed_bytes(&self) -> usize {
        self.db.flush().expect("flush in a test")
    }

    /// Overwrites invitation `id` with a record of an unknown version, so
    /// that every transaction reading it fails (a store that refuses).
    pub(crate) fn corrupt_invitation(&self, id: u64) -> Result<(), StoreError> {
        self.invitations
            .insert(id.to_be_bytes(), &[0xEE, 0xEE][..])?;
        Ok(())
    }
}
