//! Writes each message as an `.eml` file (`<random>.eml`, like lettre's file
//! transport): the demo's outbound, and a way to look at exactly what would
//! have been sent. The folder is 0700 and every file 0600 whatever the umask:
//! an invitation holds its personal link (src/private.rs).

use std::path::{Path, PathBuf};

use super::{envelope, SendError, SendFuture, Transport};

pub struct FileTransport {
    dir: PathBuf,
}

impl FileTransport {
    pub fn new(dir: &Path) -> anyhow::Result<FileTransport> {
        crate::private::create_private_dir(dir).map_err(|e| {
            anyhow::anyhow!("cannot create the outbound folder {}: {e}", dir.display())
        })?;
        Ok(FileTransport {
            dir: dir.to_path_buf(),
        })
    }
}

/// Writes `raw` to a new file `dir/<random hex>.eml`, mode 0600.
async fn write_eml(dir: &Path, raw: &[u8]) -> std::io::Result<()> {
    use rand::RngCore;
    use tokio::io::AsyncWriteExt;
    let mut id = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut id);
    let path = dir.join(format!("{}.eml", hex::encode(id)));
    let mut f = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .await?;
    f.write_all(raw).await?;
    f.flush().await
}

impl Transport for FileTransport {
    fn send<'a>(&'a self, from: &'a str, to: &'a [String], raw: &'a [u8]) -> SendFuture<'a> {
        Box::pin(async move {
            envelope(from, to)?;
            write_eml(&self.dir, raw).await.map_err(|e| {
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
