//! Files only canvass' own user may read, whatever the umask (issue 14).
//!
//! The store, the sent `.eml` files, backups, exports and reports hold
//! addresses and answers. Under systemd the unit's `UMask=0077` already keeps
//! them private; run by hand with the usual umask 022 they were 0755/0644 and
//! any local user could copy them. So:
//!
//! - the binary sets its umask to 0077 before anything else ([`restrict_umask`]);
//! - folders canvass creates are 0700 ([`create_private_dir`]), files it
//!   writes 0600 (`store::backup::write_private_file`, the file transport);
//! - at start, a store or outbound folder readable by others is repaired to
//!   0700/0600 with a warning ([`repair`]).

use std::path::{Path, PathBuf};

/// Sets the process umask to 0077: every file and folder created from here
/// on (sled's files included) is private to this user.
pub fn restrict_umask() {
    // SAFETY: umask(2) only swaps the process's file mode creation mask; it
    // cannot fail and touches no memory.
    unsafe {
        libc::umask(0o077);
    }
}

/// Creates `path` and its missing parents; the folders created are 0700.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Makes `path` (a file, or a folder and everything in it) private: folders
/// 0700, files 0600, when group or others had any access. Returns what was
/// changed. Symbolic links are not followed.
pub fn repair(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    use std::os::unix::fs::PermissionsExt;
    let mut changed = Vec::new();
    let mut todo = vec![path.to_path_buf()];
    while let Some(p) = todo.pop() {
        let meta = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_dir() {
            for entry in std::fs::read_dir(&p)? {
                todo.push(entry?.path());
            }
        }
        if mode & 0o077 != 0 {
            let private = if meta.is_dir() { 0o700 } else { 0o600 };
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode & private))?;
            changed.push(p);
        }
    }
    Ok(changed)
}

/// [`repair`] with one warning naming `what` when anything was readable by
/// others (someone may have copied it meanwhile).
pub fn repair_and_warn(path: &Path, what: &str) -> std::io::Result<()> {
    let changed = repair(path)?;
    if !changed.is_empty() {
        tracing::warn!(
            path = %path.display(),
            files = changed.len(),
            "{what} was readable by other users; made it private (folders 0700, files 0600). Anyone on this machine may have copied it before"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn repair_makes_a_tree_private() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        std::fs::create_dir_all(store.join("blobs")).unwrap();
        std::fs::write(store.join("db"), b"x").unwrap();
        std::fs::write(store.join("blobs/1"), b"x").unwrap();
        for p in [&store, &store.join("blobs")] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        for p in [store.join("db"), store.join("blobs/1")] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        assert_eq!(repair(&store).unwrap().len(), 4);
        assert_eq!(mode(&store), 0o700);
        assert_eq!(mode(&store.join("blobs")), 0o700);
        assert_eq!(mode(&store.join("db")), 0o600);
        assert_eq!(mode(&store.join("blobs/1")), 0o600);
        assert!(repair(&store).unwrap().is_empty());
        create_private_dir(&dir.path().join("a/b")).unwrap();
        assert_eq!(mode(&dir.path().join("a/b")), 0o700);
    }
}
