//! Writes each message as an `.eml` file (lettre's file transport): the demo's
//! outbound, and a way to look at exactly what would have been sent.

use std::path::{Path, PathBuf};

use lettre::AsyncFileTransport;
use lettre::AsyncTransport;

use super::{envelope, SendError, SendFuture, Transport};

pub struct FileTransport {
    dir: PathBuf,
    inner: AsyncFileTransport<lettre::Tokio1Executor>,
}

impl FileTransport {
    pub fn new(dir: &Path) -> anyhow::Result<FileTransport> {
        std::fs::create_dir_all(dir).map_err(|e| {
            anyhow::anyhow!("cannot create the outbound folder {}: {e}", dir.display())
        })?;
        Ok(FileTransport {
            dir: dir.to_path_buf(),
            inner: AsyncFileTransport::new(dir),
        })
    }
}

impl Transport for FileTransport {
    fn send<'a>(&'a self, from: &'a str, to: &'a [String], raw: &'a [u8]) -> SendFuture<'a> {
        Box::pin(async move {
            let env = envelope(from, to)?;
            self.inner
                .send_raw(&env, raw)
                .await
                .map(|_| ())
                .map_err(|e| {
                    SendError::transient(format!("writing to {}: {e}", self.dir.display()))
                })
        })
    }

    fn check(&self) -> SendFuture<'_> {
        Box::pin(async move {
            if self.dir.is_dir() {
                Ok(())
            } else {
                Err(SendError::transient(format!(
                    "{} is not a folder",
                    self.dir.display()
                )))
            }
        })
    }

    fn describe(&self) -> String {
        format!(".eml files in {}", self.dir.display())
    }
}
