//! Making writes durable: group commit, without sled's `flush_async`.
//!
//! sled 0.34's `flush_async` deadlocks when several run at once (sled issue
//! #1308, fixed on sled's main branch but never released): each one blocks a
//! thread of sled's own I/O pool while it waits for a log buffer to be
//! written, and that write is queued on the same pool. 64 concurrent form
//! answers hung the daemon for good (BENCHMARKS.md, target 4).
//!
//! [`FlushGate::flush`] runs one sled `flush` at a time on tokio's blocking
//! pool instead. Every caller takes a ticket *after* its writes; a flush
//! covers every ticket taken before it started, so callers whose ticket a
//! finished flush covers return without another fsync. N answers committed
//! while one flush runs are made durable by the next single flush: the
//! guarantee "durable when `flush` returns" is unchanged, the fsyncs are
//! shared.

use std::sync::atomic::{AtomicU64, Ordering};

/// Serialises flushes and lets waiting callers share them.
#[derive(Debug, Default)]
pub(super) struct FlushGate {
    /// Tickets handed out (one per `flush` call).
    requested: AtomicU64,
    /// The highest ticket known durable; held while a flush runs.
    durable: tokio::sync::Mutex<u64>,
}

impl FlushGate {
    pub(super) async fn flush(&self, db: &sled::Db) -> Result<(), sled::Error> {
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut durable = self.durable.lock().await;
        if *durable >= ticket {
            return Ok(());
        }
        // Every ticket up to here was taken after its writes: this flush
        // covers them all.
        let covers = self.requested.load(Ordering::SeqCst);
        let db = db.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => rt
                .spawn_blocking(move || db.flush())
                .await
                .map_err(|e| sled::Error::Io(std::io::Error::other(e)))??,
            Err(_) => db.flush()?,
        };
        *durable = covers;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sled::transaction::ConflictableTransactionError;
    use sled::Transactional;

    /// Many concurrent transactions and flushes complete (with sled's own
    /// `flush_async` this hangs within a second) and leave everything there.
    #[test]
    fn concurrent_flushes_complete() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let db2 = db.clone();
        // A runtime of its own, so that a deadlock fails the test instead of
        // hanging it.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let gate = std::sync::Arc::new(FlushGate::default());
                let mut tasks = tokio::task::JoinSet::new();
                for i in 0..64u32 {
                    let (db, gate) = (db2.clone(), gate.clone());
                    tasks.spawn(async move {
                        let (t, u) = (db.open_tree("t").unwrap(), db.open_tree("u").unwrap());
                        for j in 0..20u32 {
                            (&t, &u)
                                .transaction(|(t, u)| {
                                    t.insert(&(i * 1000 + j).to_be_bytes(), &[1])?;
                                    u.insert(&i.to_be_bytes(), &j.to_be_bytes())?;
                                    Ok::<_, ConflictableTransactionError<()>>(())
                                })
                                .unwrap();
                            gate.flush(&db).await.unwrap();
                        }
                    });
                }
                while tasks.join_next().await.is_some() {}
            });
            let _ = tx.send(());
        });
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .expect("64 concurrent flushes finish (no deadlock)");
        assert_eq!(db.open_tree("t").unwrap().len(), 64 * 20);
    }
}
