//! Secrets: the files that hold passwords, keys and the HMAC key are named
//! in the config, never written in it. Relative names are looked up in
//! systemd's `$CREDENTIALS_DIRECTORY` (`LoadCredential=`) first; a secret is
//! read only when used, and its content never reaches an error or a log.

use std::path::{Path, PathBuf};

use super::{Config, ConfigError, Inbound, Outbound};

/// Resolves a secret file path: relative paths are looked up in
/// `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`) when it is set and the
/// file is there, else next to the config file.
pub fn secret_path(p: &Path, base: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let candidate = Path::new(&dir).join(p);
        if candidate.exists() {
            return candidate;
        }
    }
    base.join(p)
}

/// Reads a secret file, trimming a trailing newline.
pub fn read_secret(path: &Path) -> std::io::Result<String> {
    let s = std::fs::read_to_string(path)?;
    Ok(s.trim_end_matches(['\r', '\n']).to_string())
}

impl Config {
    /// Checks the files the config names (secrets, CA certificates): what
    /// `canvass check-config` and the daemon's start report besides syntax.
    pub fn check_files(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut err = |key: &str, message: String| {
            errors.push(ConfigError {
                key: key.to_string(),
                message,
            })
        };
        if !self.generate_hmac_key_if_missing || self.hmac_key_file.exists() {
            if let Err(e) = crate::address::HmacKey::load(&self.hmac_key_file) {
                err("secrets.hmac_key_file", e.to_string());
            }
        }
        let mut readable = |key: &str, p: &Path| {
            if let Err(e) = std::fs::File::open(p) {
                err(key, format!("cannot read {}: {e}", p.display()));
            }
        };
        match &self.inbound {
            Inbound::Imap(i) => {
                if i.oauth.is_none() {
                    readable("inbound.imap.password_file", &i.password_file);
                }
                if let Some(ca) = &i.ca_file {
                    readable("inbound.imap.ca_file", ca);
                }
            }
            Inbound::Maildir(_) => {}
        }
        if let Some(o) = self.oauth() {
            for (key, path) in o.secret_files() {
                readable(key, path);
            }
        }
        if let Outbound::Smtp(o) = &self.outbound {
            if let Some(p) = &o.password_file {
                readable("outbound.smtp.password_file", p);
            }
            if let Some(ca) = &o.ca_file {
                readable("outbound.smtp.ca_file", ca);
            }
        }
        errors
    }
}
