//! The configuration file: one TOML document, unknown keys are errors.
//!
//! [`Config::load`] parses and then validates the whole file, collecting *every*
//! problem with the key it belongs to ([`ConfigErrors`]), so an operator fixes a
//! config in one round. Secrets (IMAP/SMTP passwords, the HMAC key) are never
//! written in the file itself: the file names other files, which systemd's
//! `LoadCredential=` can provide (relative secret paths are looked up in
//! `$CREDENTIALS_DIRECTORY` when it is set).
//!
//! What lives where (raw flags apart from validated ones, as ripgrep's
//! `lowargs`/`hiargs`):
//! - `raw.rs`: the serde shapes of the file, key for key, with their defaults;
//! - `validate.rs`: raw → typed, one validator per section, every error with its key;
//! - `secrets.rs`: where secret files are found (`$CREDENTIALS_DIRECTORY`),
//!   reading them, and checking the files the config names;
//! - this file: the typed, validated [`Config`] and its queries.

mod raw;
mod secrets;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::Deserialize;

use crate::address::Address;
use crate::survey::Survey;
use crate::window::{SendingHours, Window};

pub use secrets::{read_secret, secret_path};
pub use validate::MAX_RETENTION_DAYS;

/// Where the config is read from when no `--config` is given.
pub const DEFAULT_PATH: &str = "/etc/canvass/canvass.toml";

/// One problem in a config file, with the dotted key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found in a config file.
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors {
    pub path: PathBuf,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} error(s) in the configuration",
            self.path.display(),
            self.errors.len()
        )?;
        for e in &self.errors {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The validated config.
// ---------------------------------------------------------------------------

/// How to talk TLS to a mail server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS from the first byte (IMAPS 993, SMTPS 465).
    #[default]
    Implicit,
    /// Plain connection upgraded with STARTTLS (IMAP 143, submission 587).
    Starttls,
    /// No TLS at all: only allowed to a loopback host.
    None,
}

/// `[web]` beyond `bind` (src/web.rs, src/client_ip.rs).
#[derive(Debug, Clone, PartialEq)]
pub struct WebSettings {
    /// `/metrics` listens here only (never on `bind`); `None` = no metrics.
    pub metrics_bind: Option<String>,
    /// Peers whose `Forwarded` / `X-Forwarded-For` name the client.
    pub trusted_proxies: Vec<crate::client_ip::Cidr>,
    /// The request head must arrive within this; also the longest a
    /// kept-alive connection may sit idle, and a silent one stay open.
    pub header_timeout: std::time::Duration,
    /// The whole request body must arrive within this.
    pub body_timeout: std::time::Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for WebSettings {
    fn default() -> Self {
        WebSettings {
            metrics_bind: None,
            trusted_proxies: Vec::new(),
            header_timeout: std::time::Duration::from_secs(raw::default_header_timeout()),
            body_timeout: std::time::Duration::from_secs(raw::default_body_timeout()),
            max_connections: raw::default_max_connections(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from.
    pub path: PathBuf,
    pub survey_address: Address,
    pub from_name: String,
    pub agency: String,
    pub reply_to: Option<Address>,
    pub base_url: String,
    pub survey: Survey,
    /// Keep the invitation's region on the answer (the agency reports per region).
    pub region_on_answers: bool,
    pub window: Window,
    /// The last day (inclusive) the form accepts answers.
    pub answers_until: NaiveDate,
    pub sending: Sending,
    pub trust: Trust,
    pub mailbox: MailboxConfig,
    pub hmac_key_file: PathBuf,
    /// Demo convenience: create the key at start when it does not exist.
    pub generate_hmac_key_if_missing: bool,
    pub store_path: PathBuf,
    /// The daemon's control socket (`canvass status`/`invite` talk to it).
    pub control_socket: PathBuf,
    pub inbound: Inbound,
    pub outbound: Outbound,
    pub web_bind: String,
    /// `[web]`: the metrics listener, proxies, timeouts and the connection cap.
    pub web: WebSettings,
    /// Where human replies go when no consultant can be found for them.
    pub replies_forward_to: Option<Address>,
    pub digest: DigestConfig,
    /// Reminders: after this many days without an answer (0 = none), at most `max`.
    pub reminders: RemindersConfig,
    /// When invitees' plain addresses are erased (src/retention.rs).
    pub retention: RetentionConfig,
    pub regions: Vec<Region>,
    /// The questionnaire in English, when configured (same codes as `survey`).
    pub survey_en: Option<Survey>,
    /// Every text, the agency's overrides included (validated at load).
    pub texts: crate::texts::Texts,
    pub privacy: Privacy,
    pub accessibility_statement_url: Option<String>,
    /// The agency's contact address in every page's footer.
    pub web_contact: String,
}

/// `[privacy]`, for the art. 14 notice; `configured` is false in the demo
/// (loopback base_url) when the section is left out.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Privacy {
    pub controller: String,
    pub dpo: String,
    pub purpose: String,
    pub legal_basis: String,
    pub contact: String,
    pub configured: bool,
}

#[derive(Debug, Clone)]
pub struct Sending {
    pub delay_minutes: u32,
    pub hours: Option<SendingHours>,
    pub max_invitees_per_message: usize,
    pub max_invitees_per_consultant_per_day: u32,
    pub min_retry_seconds: u32,
    pub max_retry_minutes: u32,
    /// What the provider enforces (preset, overridden by `[sending]`).
    pub limits: crate::pacing::Limits,
}

/// `[mailbox]`: the provider of the survey mailbox (presets; sender trust
/// may read it too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxConfig {
    pub provider: crate::oauth::Provider,
    /// Microsoft 365 only: the Entra ID tenant (directory id or domain).
    pub tenant_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Trust {
    pub authserv_id: Option<String>,
    /// Lower-case domains whose addresses are colleagues, never invited.
    pub internal_domains: BTreeSet<String>,
    /// Lower-case host names of canvass' own outbound mail server as it
    /// writes them in `Reporting-MTA`: its delivery reports are acted on even
    /// without a canvass Message-ID (every other bounce needs one).
    pub outbound_reporting_mta: Vec<String>,
    /// Lower-case feedback-loop senders (`fbl@provider.example`, or a domain
    /// meaning any address at it): their spam complaints, authenticated by
    /// the trust setting, count even when they name only the invitee's
    /// address (every other complaint needs a canvass Message-ID).
    pub complaint_senders: Vec<String>,
}

impl Trust {
    /// Whether `from` is one of `complaint_senders`: that address, or any
    /// address at a listed domain.
    pub fn is_complaint_sender(&self, from: &crate::address::Address) -> bool {
        self.complaint_senders
            .iter()
            .any(|s| s == from.as_str() || s == from.domain())
    }
}

#[derive(Debug, Clone)]
pub enum Inbound {
    Imap(ImapConfig),
    Maildir(MaildirConfig),
}

#[derive(Debug, Clone)]
pub struct ImapConfig {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: String,
    /// With OAuth 2.0 (`oauth` set) this is empty and never read.
    pub password_file: PathBuf,
    /// Log in with a token (SASL) instead of the password.
    pub oauth: Option<Box<crate::oauth::OAuthConfig>>,
    pub mailbox: String,
    pub move_to: Option<String>,
    /// Where the server keeps copies of mail canvass sent (swept by the
    /// retention purge and `forget`); `None`: the folder marked `\Sent`.
    pub sent_folder: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub max_message_bytes: u64,
    /// Where unreadable messages are moved (created if missing).
    pub quarantine: String,
}

#[derive(Debug, Clone)]
pub struct MaildirConfig {
    pub path: PathBuf,
    pub poll_interval_ms: u64,
    pub max_message_bytes: u64,
    /// A file is read once it has not changed for this long (a file copied
    /// into new/ rather than renamed there may still be being written).
    pub settle_ms: u64,
}

#[derive(Debug, Clone)]
pub enum Outbound {
    Smtp(SmtpConfig),
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub pool_size: u32,
    pub timeout_seconds: u64,
    /// Authenticate with a token (SASL) instead of a password.
    pub oauth: Option<Box<crate::oauth::OAuthConfig>>,
}

#[derive(Debug, Clone)]
pub struct DigestConfig {
    pub schedule: crate::schedule::Cron,
    /// Managers who get every region (regional managers are under [[regions]]).
    pub managers: Vec<Address>,
    pub final_digest: bool,
}

/// `[retention]`: invitees' plain addresses and link nonces are erased this
/// many days after the collection window closed (0: as soon as it closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionConfig {
    pub erase_addresses_after_days: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemindersConfig {
    pub after_days: u32,
    pub max: u32,
}

impl Config {
    /// Every manager with the regions they get (empty: all regions).
    pub fn managers(&self) -> Vec<(Address, Vec<String>)> {
        let mut out: Vec<(Address, Vec<String>)> = self
            .digest
            .managers
            .iter()
            .map(|m| (m.clone(), Vec::new()))
            .collect();
        for r in &self.regions {
            for m in &r.managers {
                match out.iter_mut().find(|(a, _)| a == m) {
                    Some((_, regions)) if regions.is_empty() => {} // already gets all
                    Some((_, regions)) => regions.push(r.name.clone()),
                    None => out.push((m.clone(), vec![r.name.clone()])),
                }
            }
        }
        out
    }
}

#[derive(Debug, Clone)]
pub struct Region {
    pub name: String,
    pub consultants: Vec<Address>,
    pub managers: Vec<Address>,
}

impl Config {
    /// Reads, parses and validates `path`. Every problem is reported at once.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let fail = |key: &str, message: String| ConfigErrors {
            path: path.to_path_buf(),
            errors: vec![ConfigError {
                key: key.to_string(),
                message,
            }],
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| fail("(file)", format!("cannot read the config file: {e}")))?;
        Config::parse(&text, path)
    }

    /// Parses and validates config text; `path` locates relative paths and names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
        let raw: raw::RawConfig = toml::from_str(text).map_err(|e| ConfigErrors {
            path: path.to_path_buf(),
            errors: vec![validate::toml_error(&e, text)],
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        match validate::validate(raw, base) {
            Ok(mut cfg) => {
                cfg.path = path.to_path_buf();
                Ok(cfg)
            }
            Err(errors) => Err(ConfigErrors {
                path: path.to_path_buf(),
                errors,
            }),
        }
    }

    /// The region a consultant belongs to, if the address is a configured consultant.
    pub fn consultant_region(&self, addr: &Address) -> Option<&Region> {
        self.regions
            .iter()
            .find(|r| r.consultants.iter().any(|c| c == addr))
    }

    pub fn is_consultant(&self, addr: &Address) -> bool {
        self.consultant_region(addr).is_some()
    }

    pub fn region(&self, name: &str) -> Option<&Region> {
        self.regions
            .iter()
            .find(|r| r.name.eq_ignore_ascii_case(name) || r.name == name)
    }

    pub fn region_names(&self) -> Vec<&str> {
        self.regions.iter().map(|r| r.name.as_str()).collect()
    }

    /// Whether `addr` is a colleague's: a configured internal domain or one of
    /// its subdomains (`region.siri.dk` under `siri.dk`).
    pub fn is_internal(&self, addr: &Address) -> bool {
        let d = addr.domain();
        self.trust.internal_domains.iter().any(|i| {
            d == i
                || (d.len() > i.len()
                    && d.ends_with(i.as_str())
                    && d[..d.len() - i.len()].ends_with('.'))
        })
    }

    /// The OAuth 2.0 settings when `auth.method = "oauth2"` (IMAP and SMTP
    /// share them).
    pub fn oauth(&self) -> Option<&crate::oauth::OAuthConfig> {
        match (&self.inbound, &self.outbound) {
            (Inbound::Imap(i), _) if i.oauth.is_some() => i.oauth.as_deref(),
            (_, Outbound::Smtp(o)) => o.oauth.as_deref(),
            _ => None,
        }
    }

    /// A short human summary, printed by `canvass check-config`.
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "config {} is valid", self.path.display());
        let _ = writeln!(s, "  survey address  {}", self.survey_address);
        let _ = writeln!(
            s,
            "  survey          {} ({} questions, version {})",
            self.survey.title,
            self.survey.questions.len(),
            self.survey.version
        );
        let _ = writeln!(
            s,
            "  window          {} to {} inclusive (Europe/Copenhagen)",
            self.window.start, self.window.end
        );
        let inbound = match &self.inbound {
            Inbound::Imap(i) => format!(
                "IMAP {}@{}:{} ({:?}), mailbox {}",
                i.username, i.host, i.port, i.tls, i.mailbox
            ),
            Inbound::Maildir(m) => format!("Maildir {}", m.path.display()),
        };
        let outbound = match &self.outbound {
            Outbound::Smtp(o) => format!("SMTP {}:{} ({:?})", o.host, o.port, o.tls),
            Outbound::File(p) => format!(".eml files in {}", p.display()),
        };
        let _ = writeln!(s, "  provider        {}", self.mailbox.provider.name());
        let _ = writeln!(s, "  sender trust    {}", self.sender_trust());
        if let Some(o) = self.oauth() {
            let _ = writeln!(
                s,
                "  login           OAuth 2.0 ({}) as {}, tokens from {}",
                o.mechanism.name(),
                o.login,
                o.token_url
            );
        }
        let _ = writeln!(s, "  inbound         {inbound}");
        let _ = writeln!(s, "  outbound        {outbound}");
        let _ = writeln!(s, "  store           {}", self.store_path.display());
        let _ = writeln!(s, "  web             {}", self.web_bind);
        let _ = writeln!(
            s,
            "  templates       {}",
            if self.texts.overridden.is_empty() {
                "built-in".to_string()
            } else {
                format!("built-in, overridden: {}", self.texts.overridden.join(", "))
            }
        );
        let _ = writeln!(
            s,
            "  languages       {}",
            if self.survey_en.is_some() {
                "da, en"
            } else {
                "da"
            }
        );
        for r in &self.regions {
            let _ = writeln!(
                s,
                "  region {:<12} {} consultant(s), {} manager(s)",
                r.name,
                r.consultants.len(),
                r.managers.len()
            );
        }
        s
    }
}

impl Config {
    /// What vouches for a consultant's mail, in the words `check-config`
    /// prints: the provider's own headers, `trust.authserv_id`'s results, or
    /// nothing; and what keeps a Microsoft 365 tenant from being recognised.
    pub fn sender_trust(&self) -> String {
        use crate::oauth::Provider;
        let exchange = "Exchange Online's Authentication-Results (dmarc=pass or compauth=pass)";
        let provider = match self.mailbox.provider {
            Provider::Microsoft365 => Some(match self.mailbox.tenant_id.as_deref() {
                Some(t) if is_guid(t) => format!(
                    "Microsoft 365: mail inside tenant {t} (X-MS-Exchange-Organization-AuthAs: Internal), or {exchange}"
                ),
                Some(t) => format!(
                    "Microsoft 365: {exchange} only; mailbox.tenant_id {t:?} is not the Directory (tenant) ID, a GUID, so mail inside the tenant is not recognised by its headers"
                ),
                None => format!(
                    "Microsoft 365: {exchange} only; set mailbox.tenant_id (the Directory (tenant) ID) to recognise mail inside the tenant"
                ),
            }),
            Provider::Google => Some(
                "Google: mx.google.com's ARC-Authentication-Results or Authentication-Results (dkim=pass or dmarc=pass)"
                    .to_string(),
            ),
            Provider::Generic => None,
        };
        let authserv = self
            .trust
            .authserv_id
            .as_deref()
            .map(|id| format!("Authentication-Results from {id} (dkim=pass or dmarc=pass)"));
        match (provider, authserv) {
            (Some(p), Some(a)) => format!("{p}; else {a}"),
            (Some(p), None) => p,
            (None, Some(a)) => a,
            (None, None) => "NONE: any mail with a consultant's From invites; set [mailbox] provider or [trust] authserv_id".to_string(),
        }
    }
}

/// Whether `s` is a GUID (`8-4-4-4-12` hexadecimal digits), as Entra ID's
/// Directory (tenant) ID and `X-MS-Exchange-CrossTenant-Id` are.
fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Whether the links of `base_url` (`scheme://host[:port][/path]`) lead to
/// this machine only: the demo, where nobody real is surveyed.
pub fn base_url_is_loopback(base_url: &str) -> bool {
    let rest = base_url.split_once("://").map_or(base_url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    let host = if authority.starts_with('[') {
        authority
            .split(']')
            .next()
            .map(|h| format!("{h}]"))
            .unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default().to_string()
    };
    is_loopback_host(&host)
}

pub fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}
