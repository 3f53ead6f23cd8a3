//! The shutdown signal. Every loop holds a [`Shutdown`] and checks it only
//! *between* units of work (a fetched batch, an outbox item), never in the middle
//! of one: a unit that started is finished, stored and marked before the loop
//! exits. Waiting for work, on the other hand, is interrupted at once.

use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Asks every holder to stop taking new work.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once shutdown was asked for.
    pub async fn wait(&self) {
        self.token.cancelled().await
    }

    /// Sleeps for `d`, or less if shutdown comes first. Returns true on shutdown.
    pub async fn sleep(&self, d: std::time::Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => false,
            _ = self.wait() => true,
        }
    }
}
