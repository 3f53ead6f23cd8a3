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

/// Writes `raw` to a new file `dir/<random hex>.eml`, mode 0600. The message
/// is written and synced under a hidden temporary name (`.<hex>.tmp`) and
/// then renamed into place, as a Maildir delivery is: whoever lists the
/// folder sees each `.eml` whole or not at all, and a message counts as
/// sent only once it is on disk.
async fn write_eml(dir: &Path, raw: &[u8]) -> std::io::Result<()> {
    use rand::RngCore;
    use tokio::io::AsyncWriteExt;
    let mut id = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut id);
    let name = hex::encode(id);
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(format!("{name}.eml"));
    let mut f = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .await?;
    let written = async {
        f.write_all(raw).await?;
        f.sync_all().await?;
        drop(f);
        tokio::fs::rename(&tmp, &path).await
    }
    .await;
    if written.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    written
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A sent message is one whole, private `.eml` file, and nothing of its
    /// temporary name is left behind.
    #[tokio::test]
    async fn a_message_lands_whole_under_its_final_name() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("sent");
        let t = FileTransport::new(&out).unwrap();
        let raw = b"From: a@siri.dk\r\nTo: b@firma.dk\r\nSubject: x\r\n\r\nbody\r\n".repeat(100);
        t.send("a@siri.dk", &["b@firma.dk".to_string()], &raw)
            .await
            .unwrap();
        let names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].ends_with(".eml") && !names[0].starts_with('.'));
        let path = out.join(&names[0]);
        assert_eq!(std::fs::read(&path).unwrap(), raw);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
