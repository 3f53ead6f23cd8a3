//! The configuration file: one TOML document, unknown keys are errors.
//!
//! [`Config::load`] parses and then validates the whole file, collecting *every*
//! problem with the key it belongs to ([`ConfigErrors`]), so an operator fixes a
//! config in one round. Secrets (IMAP/SMTP passwords, the HMAC key) are never
//! written in the file itself: the file names other files, which systemd's
//! `LoadCredential=` can provide (relative secret paths are looked up in
//! `$CREDENTIALS_DIRECTORY` when it is set).

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{NaiveDate, NaiveTime, Weekday};
use serde::Deserialize;

use crate::address::{self, Address};
use crate::survey::Survey;
use crate::window::{SendingHours, Window};

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
// The file as written (raw, deserialised by serde).
// ---------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    survey: RawSurvey,
    window: RawWindow,
    #[serde(default)]
    sending: RawSending,
    #[serde(default)]
    trust: RawTrust,
    secrets: RawSecrets,
    #[serde(default)]
    mailbox: RawMailbox,
    #[serde(default)]
    auth: RawAuth,
    store: RawStore,
    inbound: RawInbound,
    outbound: RawOutbound,
    #[serde(default)]
    web: RawWeb,
    #[serde(default)]
    replies: RawReplies,
    #[serde(default)]
    digest: RawDigest,
    #[serde(default)]
    reminders: RawReminders,
    #[serde(default)]
    retention: RawRetention,
    #[serde(default)]
    regions: Vec<RawRegion>,
    #[serde(default)]
    privacy: Option<RawPrivacy>,
}

/// `[privacy]`: what GDPR art. 14 requires the invitation and the privacy
/// page to say (src/texts.rs, `privacy.html`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrivacy {
    controller: String,
    dpo: String,
    purpose: String,
    legal_basis: String,
    contact: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSurvey {
    address: String,
    #[serde(default = "default_from_name")]
    from_name: String,
    #[serde(default = "default_agency")]
    agency: String,
    base_url: String,
    definition: PathBuf,
    #[serde(default)]
    reply_to: Option<String>,
    #[serde(default = "default_true")]
    region_on_answers: bool,
    /// The questionnaire in English (same codes), offered beside the Danish one.
    #[serde(default)]
    definition_en: Option<PathBuf>,
    /// The agency's texts: files here override the built-in templates.
    #[serde(default)]
    templates_dir: Option<PathBuf>,
}

fn default_true() -> bool {
    true
}

fn default_agency() -> String {
    "SIRI".to_string()
}

fn default_from_name() -> String {
    "Spørgeskemaundersøgelse".to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    start: toml::value::Datetime,
    end: toml::value::Datetime,
    #[serde(default)]
    answers_until: Option<toml::value::Datetime>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSending {
    #[serde(default)]
    delay_minutes: u32,
    #[serde(default)]
    hours: Option<RawHours>,
    #[serde(default = "default_max_per_message")]
    max_invitees_per_message: usize,
    #[serde(default = "default_max_per_day")]
    max_invitees_per_consultant_per_day: u32,
    #[serde(default = "default_retry_seconds")]
    min_retry_seconds: u32,
    #[serde(default = "default_retry_minutes")]
    max_retry_minutes: u32,
    /// Sending limits; unset: the provider preset's (0: no limit).
    #[serde(default)]
    messages_per_minute: Option<u32>,
    #[serde(default)]
    messages_per_day: Option<u32>,
    #[serde(default)]
    recipients_per_day: Option<u32>,
}

impl Default for RawSending {
    fn default() -> Self {
        RawSending {
            delay_minutes: 0,
            hours: None,
            max_invitees_per_message: default_max_per_message(),
            max_invitees_per_consultant_per_day: default_max_per_day(),
            min_retry_seconds: default_retry_seconds(),
            max_retry_minutes: default_retry_minutes(),
            messages_per_minute: None,
            messages_per_day: None,
            recipients_per_day: None,
        }
    }
}

fn default_max_per_message() -> usize {
    20
}
fn default_max_per_day() -> u32 {
    100
}
fn default_retry_seconds() -> u32 {
    30
}
fn default_retry_minutes() -> u32 {
    60
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHours {
    start: String,
    end: String,
    #[serde(default = "default_weekdays")]
    days: Vec<String>,
}

fn default_weekdays() -> Vec<String> {
    ["mon", "tue", "wed", "thu", "fri"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrust {
    #[serde(default)]
    authserv_id: Option<String>,
    #[serde(default)]
    internal_domains: Vec<String>,
    #[serde(default)]
    outbound_reporting_mta: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecrets {
    hmac_key_file: PathBuf,
    #[serde(default)]
    generate_hmac_key_if_missing: bool,
}

/// `[mailbox]`: whose mail service the survey mailbox lives at. Issue 12
/// (sender trust) reads `provider` and `tenant_id` too.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMailbox {
    #[serde(default)]
    provider: crate::oauth::Provider,
    #[serde(default)]
    tenant_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum AuthMethod {
    #[default]
    Password,
    Oauth2,
}

/// `[auth]`: how canvass logs in to IMAP and SMTP.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    #[serde(default)]
    method: AuthMethod,
    #[serde(default)]
    mechanism: Option<crate::oauth::Mechanism>,
    #[serde(default)]
    login: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret_file: Option<PathBuf>,
    #[serde(default)]
    certificate_file: Option<PathBuf>,
    #[serde(default)]
    private_key_file: Option<PathBuf>,
    #[serde(default)]
    service_account_file: Option<PathBuf>,
    #[serde(default)]
    token_url: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    path: PathBuf,
    #[serde(default)]
    control_socket: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum RawInbound {
    Imap(RawImap),
    Maildir(RawMaildir),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImap {
    #[serde(default)]
    host: Option<String>,
    port: Option<u16>,
    #[serde(default)]
    tls: Option<TlsMode>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password_file: Option<PathBuf>,
    #[serde(default = "default_mailbox")]
    mailbox: String,
    #[serde(default)]
    move_to: Option<String>,
    #[serde(default)]
    sent_folder: Option<String>,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default = "default_max_message_bytes")]
    max_message_bytes: u64,
    #[serde(default = "default_quarantine")]
    quarantine: String,
}

fn default_quarantine() -> String {
    "Quarantine".to_string()
}

fn default_mailbox() -> String {
    "INBOX".to_string()
}
fn default_max_message_bytes() -> u64 {
    25 * 1024 * 1024
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMaildir {
    path: PathBuf,
    #[serde(default = "default_poll_ms")]
    poll_interval_ms: u64,
    #[serde(default = "default_max_message_bytes")]
    max_message_bytes: u64,
    #[serde(default = "default_settle_ms")]
    settle_ms: u64,
}

fn default_poll_ms() -> u64 {
    500
}

fn default_settle_ms() -> u64 {
    1000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum RawOutbound {
    Smtp(RawSmtp),
    File(RawFile),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    #[serde(default)]
    host: Option<String>,
    port: Option<u16>,
    #[serde(default)]
    tls: Option<TlsMode>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password_file: Option<PathBuf>,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    pool_size: Option<u32>,
    #[serde(default = "default_timeout")]
    timeout_seconds: u64,
}

/// A sending limit: as written (0: none), else the preset's.
fn limit(written: Option<u32>, preset: Option<u32>) -> Option<u32> {
    match written {
        Some(0) => None,
        Some(n) => Some(n),
        None => preset,
    }
}

fn default_pool() -> u32 {
    4
}
fn default_timeout() -> u64 {
    30
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    path: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    #[serde(default = "default_bind")]
    bind: String,
    #[serde(default = "default_metrics_bind")]
    metrics_bind: String,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    #[serde(default = "default_header_timeout")]
    header_timeout_seconds: u64,
    #[serde(default = "default_body_timeout")]
    body_timeout_seconds: u64,
    #[serde(default = "default_max_connections")]
    max_connections: usize,
    /// The accessibility statement (WAS-Tool), linked from every page.
    #[serde(default)]
    accessibility_statement_url: Option<String>,
    /// The agency's contact in every page's footer (default: [privacy] contact).
    #[serde(default)]
    contact: Option<String>,
}

impl Default for RawWeb {
    fn default() -> Self {
        RawWeb {
            bind: default_bind(),
            metrics_bind: default_metrics_bind(),
            trusted_proxies: Vec::new(),
            header_timeout_seconds: default_header_timeout(),
            body_timeout_seconds: default_body_timeout(),
            max_connections: default_max_connections(),
            accessibility_statement_url: None,
            contact: None,
        }
    }
}

fn default_metrics_bind() -> String {
    "127.0.0.1:9464".to_string()
}

fn default_header_timeout() -> u64 {
    10
}

fn default_body_timeout() -> u64 {
    20
}

fn default_max_connections() -> usize {
    512
}

fn default_bind() -> String {
    "127.0.0.1:8080".to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDigest {
    #[serde(default = "default_digest_schedule")]
    schedule: String,
    #[serde(default)]
    managers: Vec<String>,
    #[serde(default = "default_true")]
    final_digest: bool,
}

impl Default for RawDigest {
    fn default() -> Self {
        RawDigest {
            schedule: default_digest_schedule(),
            managers: Vec::new(),
            final_digest: true,
        }
    }
}

fn default_digest_schedule() -> String {
    "0 0 8 * * Mon".to_string()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReminders {
    #[serde(default)]
    after_days: u32,
    #[serde(default = "default_reminders_max")]
    max: u32,
}

fn default_reminders_max() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    #[serde(default = "default_erase_after_days")]
    erase_addresses_after_days: u32,
}

impl Default for RawRetention {
    fn default() -> Self {
        RawRetention {
            erase_addresses_after_days: default_erase_after_days(),
        }
    }
}

fn default_erase_after_days() -> u32 {
    30
}

/// The longest `retention.erase_addresses_after_days` accepted (ten years).
pub const MAX_RETENTION_DAYS: u32 = 3650;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReplies {
    #[serde(default)]
    forward_to: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegion {
    name: String,
    #[serde(default)]
    consultants: Vec<String>,
    #[serde(default)]
    managers: Vec<String>,
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
            header_timeout: std::time::Duration::from_secs(default_header_timeout()),
            body_timeout: std::time::Duration::from_secs(default_body_timeout()),
            max_connections: default_max_connections(),
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
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigErrors {
            path: path.to_path_buf(),
            errors: vec![toml_error(&e, text)],
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let mut v = Validator {
            errors: Vec::new(),
            base,
        };
        let cfg = v.config(raw);
        match cfg {
            Some(mut cfg) if v.errors.is_empty() => {
                cfg.path = path.to_path_buf();
                Ok(cfg)
            }
            _ => Err(ConfigErrors {
                path: path.to_path_buf(),
                errors: v.errors,
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

fn toml_error(e: &toml::de::Error, text: &str) -> ConfigError {
    // toml's message names the key and shows the offending line.
    let key = match e.span() {
        Some(span) => format!(
            "line {}",
            text[..span.start.min(text.len())].matches('\n').count() + 1
        ),
        None => "(file)".to_string(),
    };
    ConfigError {
        key,
        message: e.message().trim_end().to_string(),
    }
}

struct Validator {
    errors: Vec<ConfigError>,
    base: PathBuf,
}

impl Validator {
    fn err(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            key: key.into(),
            message: message.into(),
        });
    }

    fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// Secret files: relative paths are looked up in `$CREDENTIALS_DIRECTORY` first.
    fn secret_path(&self, p: &Path) -> PathBuf {
        secret_path(p, &self.base)
    }

    fn address(&mut self, key: &str, s: &str) -> Option<Address> {
        match address::parse(s) {
            Ok(a) => Some(a),
            Err(e) => {
                self.err(key, format!("{s:?} is not a valid address: {e}"));
                None
            }
        }
    }

    fn date(&mut self, key: &str, d: &toml::value::Datetime) -> Option<NaiveDate> {
        match (&d.date, &d.time) {
            (Some(date), None) if d.offset.is_none() => {
                NaiveDate::from_ymd_opt(date.year as i32, date.month as u32, date.day as u32)
                    .or_else(|| {
                        self.err(key, "not a calendar date");
                        None
                    })
            }
            _ => {
                self.err(
                    key,
                    "must be a plain date like 2024-08-07 (no time, no offset)",
                );
                None
            }
        }
    }

    fn time(&mut self, key: &str, s: &str) -> Option<NaiveTime> {
        match NaiveTime::parse_from_str(s, "%H:%M") {
            Ok(t) => Some(t),
            Err(_) => {
                self.err(key, format!("{s:?} is not a time like \"08:00\""));
                None
            }
        }
    }

    fn port(
        &mut self,
        key: &str,
        port: Option<u16>,
        tls: TlsMode,
        plain: u16,
        implicit: u16,
    ) -> u16 {
        match port {
            Some(0) => {
                self.err(key, "port 0 is not a port");
                0
            }
            Some(p) => p,
            None if tls == TlsMode::Implicit => implicit,
            None => plain,
        }
    }

    /// The host and TLS mode: as written, else the provider preset's.
    fn host_and_tls(
        &mut self,
        section: &str,
        host: Option<String>,
        tls: Option<TlsMode>,
        preset: Option<(&'static str, TlsMode)>,
    ) -> (String, TlsMode) {
        let host = match (host, preset) {
            (Some(h), _) => h,
            (None, Some((h, _))) => h.to_string(),
            (None, None) => {
                self.err(
                    format!("{section}.host"),
                    "is required (or set mailbox.provider = \"microsoft365\" or \"google\")",
                );
                String::new()
            }
        };
        let tls = tls.or(preset.map(|(_, t)| t)).unwrap_or_default();
        (host, tls)
    }

    /// `[auth]` with `method = "oauth2"`: the token request and the login.
    fn oauth(
        &mut self,
        raw: &RawAuth,
        provider: crate::oauth::Provider,
        tenant_id: Option<&str>,
        survey_address: &str,
    ) -> Option<crate::oauth::OAuthConfig> {
        use crate::oauth::{request, Credential, OAuthConfig, Provider};
        if raw.method == AuthMethod::Password {
            let set = [
                ("auth.mechanism", raw.mechanism.is_some()),
                ("auth.login", raw.login.is_some()),
                ("auth.client_id", raw.client_id.is_some()),
                ("auth.client_secret_file", raw.client_secret_file.is_some()),
                ("auth.certificate_file", raw.certificate_file.is_some()),
                ("auth.private_key_file", raw.private_key_file.is_some()),
                (
                    "auth.service_account_file",
                    raw.service_account_file.is_some(),
                ),
                ("auth.token_url", raw.token_url.is_some()),
                ("auth.scope", raw.scope.is_some()),
            ];
            for (key, _) in set.iter().filter(|(_, on)| *on) {
                self.err(*key, "is only used with auth.method = \"oauth2\"");
            }
            return None;
        }
        let preset = provider.preset();
        let login = raw
            .login
            .clone()
            .unwrap_or_else(|| survey_address.trim().to_string());
        if login.is_empty() || login.contains(['\r', '\n', '\x01', ',']) {
            self.err("auth.login", format!("{login:?} cannot be a login name"));
        }
        let token_url = match (&raw.token_url, provider) {
            (Some(u), _) => u.trim().to_string(),
            (None, Provider::Microsoft365) => match tenant_id {
                Some(t) => request::microsoft_token_url(t),
                None => {
                    self.err(
                        "mailbox.tenant_id",
                        "is required for microsoft365 with OAuth 2.0: the Directory (tenant) ID on the app registration's Overview page",
                    );
                    String::new()
                }
            },
            (None, Provider::Google) => request::GOOGLE_TOKEN_URL.to_string(),
            (None, Provider::Generic) => {
                self.err("auth.token_url", "is required with provider = \"generic\"");
                String::new()
            }
        };
        if !token_url.is_empty() {
            let host = token_url
                .strip_prefix("http://")
                .map(|rest| rest.split(['/', '?']).next().unwrap_or(""))
                .map(|hp| match hp.rsplit_once(':') {
                    Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
                    _ => hp,
                });
            let ok = token_url.starts_with("https://") || host.is_some_and(is_loopback_host);
            if !ok {
                self.err(
                    "auth.token_url",
                    format!(
                        "{token_url:?} must start with https:// (http:// only to a loopback host)"
                    ),
                );
            }
        }
        let scope = raw
            .scope
            .clone()
            .or(preset.scope.map(str::to_string))
            .unwrap_or_default();
        let client_id = raw.client_id.clone().filter(|c| !c.trim().is_empty());
        let need_client_id = |v: &mut Validator| {
            if client_id.is_none() {
                v.err(
                    "auth.client_id",
                    "is required: the application (client) id of the registered app",
                );
            }
            client_id.clone().unwrap_or_default()
        };
        let credential = match (
            &raw.service_account_file,
            &raw.certificate_file,
            &raw.private_key_file,
            &raw.client_secret_file,
        ) {
            (Some(f), None, None, None) => Some(Credential::ServiceAccount {
                key_file: self.secret_path(f),
            }),
            (None, Some(c), Some(k), None) => Some(Credential::Certificate {
                client_id: need_client_id(self),
                certificate_file: self.secret_path(c),
                private_key_file: self.secret_path(k),
            }),
            (None, None, None, Some(f)) => Some(Credential::ClientSecret {
                client_id: need_client_id(self),
                secret_file: self.secret_path(f),
            }),
            (None, Some(_), None, None) | (None, None, Some(_), None) => {
                self.err(
                    "auth.private_key_file",
                    "certificate_file and private_key_file go together",
                );
                None
            }
            _ => {
                self.err(
                    "auth",
                    "set exactly one credential: client_secret_file, certificate_file + private_key_file (microsoft365), or service_account_file (google)",
                );
                None
            }
        };
        if provider == Provider::Google
            && !matches!(credential, Some(Credential::ServiceAccount { .. }) | None)
        {
            self.err(
                "auth.service_account_file",
                "Google Workspace needs a service-account key file with domain-wide delegation",
            );
        }
        Some(OAuthConfig {
            provider,
            mechanism: raw.mechanism.unwrap_or(preset.mechanism),
            login,
            token_url,
            scope,
            credential: credential?,
        })
    }

    fn plaintext_only_loopback(&mut self, key: &str, host: &str, tls: TlsMode) {
        if tls == TlsMode::None && !is_loopback_host(host) {
            self.err(
                key,
                format!(
                    "tls = \"none\" is only allowed to a loopback host (127.0.0.1, ::1, localhost), not {host:?}; use \"implicit\" or \"starttls\""
                ),
            );
        }
    }

    fn config(&mut self, raw: RawConfig) -> Option<Config> {
        let survey_address = self.address("survey.address", &raw.survey.address);
        let reply_to = raw
            .survey
            .reply_to
            .as_deref()
            .and_then(|r| self.address("survey.reply_to", r));
        let base_url = raw.survey.base_url.trim_end_matches('/').to_string();
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            self.err(
                "survey.base_url",
                format!("{base_url:?} must start with https:// (or http:// for a local demo)"),
            );
        }
        let survey_path = self.path(&raw.survey.definition);
        let survey = match Survey::load(&survey_path) {
            Ok(s) => Some(s),
            Err(e) => {
                self.err("survey.definition", e.to_string());
                None
            }
        };

        let start = self.date("window.start", &raw.window.start);
        let end = self.date("window.end", &raw.window.end);
        let answers_until = match &raw.window.answers_until {
            Some(d) => self.date("window.answers_until", d),
            None => end.map(|e| e + chrono::Duration::days(14)),
        };
        if let (Some(e), Some(a)) = (end, answers_until) {
            if a < e {
                self.err("window.answers_until", format!("{a} is before window.end {e}: invitations sent on the last day could not be answered"));
            }
        }
        if let (Some(s), Some(e)) = (start, end) {
            if e < s {
                self.err("window.end", format!("{e} is before window.start {s}"));
            }
        }

        let hours = match &raw.sending.hours {
            None => None,
            Some(h) => {
                let start = self.time("sending.hours.start", &h.start);
                let end = self.time("sending.hours.end", &h.end);
                let mut days = Vec::new();
                for (i, d) in h.days.iter().enumerate() {
                    match d.parse::<Weekday>() {
                        Ok(w) => days.push(w),
                        Err(_) => self.err(
                            format!("sending.hours.days[{i}]"),
                            format!("{d:?} is not a weekday (mon, tue, wed, thu, fri, sat, sun)"),
                        ),
                    }
                }
                if days.is_empty() {
                    self.err(
                        "sending.hours.days",
                        "names no day: nothing would ever be sent",
                    );
                }
                match (start, end) {
                    (Some(s), Some(e)) if s < e => Some(SendingHours {
                        start: s,
                        end: e,
                        days,
                    }),
                    (Some(_), Some(_)) => {
                        self.err(
                            "sending.hours.end",
                            "must be later than sending.hours.start",
                        );
                        None
                    }
                    _ => None,
                }
            }
        };
        if raw.sending.max_invitees_per_message == 0 {
            self.err(
                "sending.max_invitees_per_message",
                "must be at least 1 (0 would refuse every trigger)",
            );
        }
        if raw.sending.max_invitees_per_consultant_per_day == 0 {
            self.err(
                "sending.max_invitees_per_consultant_per_day",
                "must be at least 1 (0 would refuse every trigger)",
            );
        }
        if raw.sending.max_retry_minutes == 0 {
            self.err("sending.max_retry_minutes", "must be at least 1");
        }

        let mut internal_domains = BTreeSet::new();
        for (i, d) in raw.trust.internal_domains.iter().enumerate() {
            let d = d.trim().trim_start_matches('@').to_lowercase();
            // Compared with addresses, whose domains are in IDNA form.
            let d = if d.is_ascii() {
                d
            } else {
                idna::domain_to_ascii(&d).unwrap_or(d)
            };
            if d.is_empty() || !d.contains('.') && d != "localhost" {
                self.err(
                    format!("trust.internal_domains[{i}]"),
                    format!("{d:?} is not a domain"),
                );
            } else {
                internal_domains.insert(d);
            }
        }
        if let Some(id) = &raw.trust.authserv_id {
            if id.trim().is_empty() {
                self.err(
                    "trust.authserv_id",
                    "is empty; remove the key to disable the check",
                );
            }
        }

        let hmac_key_file = self.secret_path(&raw.secrets.hmac_key_file);
        let store_path = self.path(&raw.store.path);
        let control_socket = match &raw.store.control_socket {
            Some(p) => self.path(p),
            None => store_path.with_extension("sock"),
        };

        let provider = raw.mailbox.provider;
        let preset = provider.preset();
        let tenant_id = raw
            .mailbox
            .tenant_id
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if tenant_id.is_some() && provider != crate::oauth::Provider::Microsoft365 {
            self.err(
                "mailbox.tenant_id",
                "is only used with provider = \"microsoft365\"",
            );
        }
        let oauth = self
            .oauth(
                &raw.auth,
                provider,
                tenant_id.as_deref(),
                &raw.survey.address,
            )
            .map(Box::new);
        let limits = crate::pacing::Limits {
            max_connections: preset.limits.max_connections,
            messages_per_minute: limit(
                raw.sending.messages_per_minute,
                preset.limits.messages_per_minute,
            ),
            messages_per_day: limit(raw.sending.messages_per_day, preset.limits.messages_per_day),
            recipients_per_day: limit(
                raw.sending.recipients_per_day,
                preset.limits.recipients_per_day,
            ),
        };
        let password_auth = raw.auth.method == AuthMethod::Password;

        let inbound = match raw.inbound {
            RawInbound::Imap(i) => {
                let (host, tls) = self.host_and_tls(
                    "inbound.imap",
                    i.host,
                    i.tls,
                    preset.imap.map(|(h, _, t)| (h, t)),
                );
                let port = self.port("inbound.imap.port", i.port, tls, 143, 993);
                self.plaintext_only_loopback("inbound.imap.tls", &host, tls);
                let username = match (i.username, &oauth) {
                    (Some(u), _) => u,
                    (None, Some(o)) => o.login.clone(),
                    (None, None) => {
                        if password_auth {
                            self.err(
                                "inbound.imap.username",
                                "is required with auth.method = \"password\"",
                            );
                        }
                        String::new()
                    }
                };
                if username.is_empty() && i.password_file.is_some() {
                    self.err("inbound.imap.username", "is empty");
                }
                let password_file = match (&i.password_file, password_auth) {
                    (Some(p), true) => self.secret_path(p),
                    (None, true) => {
                        self.err(
                            "inbound.imap.password_file",
                            "is required with auth.method = \"password\" (or set auth.method = \"oauth2\")",
                        );
                        PathBuf::new()
                    }
                    (Some(_), false) => {
                        self.err(
                            "inbound.imap.password_file",
                            "is not used with auth.method = \"oauth2\": remove it",
                        );
                        PathBuf::new()
                    }
                    (None, false) => PathBuf::new(),
                };
                Some(Inbound::Imap(ImapConfig {
                    port,
                    tls,
                    password_file,
                    oauth: oauth.clone(),
                    ca_file: i.ca_file.as_deref().map(|p| self.path(p)),
                    host,
                    username,
                    mailbox: i.mailbox,
                    move_to: i.move_to,
                    sent_folder: i.sent_folder,
                    max_message_bytes: i.max_message_bytes,
                    quarantine: i.quarantine,
                }))
            }
            RawInbound::Maildir(m) => Some(Inbound::Maildir(MaildirConfig {
                path: self.path(&m.path),
                poll_interval_ms: m.poll_interval_ms.max(50),
                max_message_bytes: m.max_message_bytes,
                settle_ms: m.settle_ms,
            })),
        };

        let outbound = match raw.outbound {
            RawOutbound::Smtp(o) => {
                let (host, tls) = self.host_and_tls(
                    "outbound.smtp",
                    o.host,
                    o.tls,
                    preset.smtp.map(|(h, _, t)| (h, t)),
                );
                let port = self.port("outbound.smtp.port", o.port, tls, 25, 465);
                let port = match (o.port, preset.smtp) {
                    (None, Some((_, p, t))) if t == tls => p,
                    _ => port,
                };
                self.plaintext_only_loopback("outbound.smtp.tls", &host, tls);
                let username = if oauth.is_some() {
                    if o.password_file.is_some() {
                        self.err(
                            "outbound.smtp.password_file",
                            "is not used with auth.method = \"oauth2\": remove it",
                        );
                    }
                    o.username
                        .clone()
                        .or_else(|| oauth.as_ref().map(|a| a.login.clone()))
                } else {
                    if o.username.is_some() != o.password_file.is_some() {
                        self.err(
                            "outbound.smtp.password_file",
                            "username and password_file go together: set both or neither",
                        );
                    }
                    o.username.clone()
                };
                let max = preset.limits.max_connections;
                let pool_size = o
                    .pool_size
                    .unwrap_or_else(|| max.map_or(default_pool(), |m| m.min(default_pool())));
                if pool_size == 0 {
                    self.err("outbound.smtp.pool_size", "must be at least 1");
                }
                if let Some(m) = max {
                    if pool_size > m {
                        self.err(
                            "outbound.smtp.pool_size",
                            format!(
                                "{pool_size} is above the {m} simultaneous SMTP connections {} allows per mailbox: set {m} or less",
                                provider.name()
                            ),
                        );
                    }
                }
                Some(Outbound::Smtp(SmtpConfig {
                    port,
                    tls,
                    password_file: if oauth.is_some() {
                        None
                    } else {
                        o.password_file.as_deref().map(|p| self.secret_path(p))
                    },
                    ca_file: o.ca_file.as_deref().map(|p| self.path(p)),
                    host,
                    username,
                    pool_size,
                    timeout_seconds: o.timeout_seconds.max(1),
                    oauth: oauth.clone(),
                }))
            }
            RawOutbound::File(f) => Some(Outbound::File(self.path(&f.path))),
        };

        if raw.web.bind.parse::<std::net::SocketAddr>().is_err() {
            self.err(
                "web.bind",
                format!(
                    "{:?} is not an address:port like 127.0.0.1:8080",
                    raw.web.bind
                ),
            );
        }

        let metrics_bind = match raw.web.metrics_bind.trim() {
            "" | "off" => None,
            b => {
                let unix = b
                    .strip_prefix("unix:")
                    .is_some_and(|p| Path::new(p).is_absolute());
                if !unix && b.parse::<std::net::SocketAddr>().is_err() {
                    self.err(
                        "web.metrics_bind",
                        format!("{b:?} is not an address:port like 127.0.0.1:9464, a Unix socket like unix:/run/canvass/metrics.sock, or \"off\""),
                    );
                }
                Some(b.to_string())
            }
        };
        let mut trusted_proxies = Vec::new();
        for p in &raw.web.trusted_proxies {
            match p.parse::<crate::client_ip::Cidr>() {
                Ok(c) => trusted_proxies.push(c),
                Err(e) => self.err("web.trusted_proxies", e),
            }
        }
        for (key, v) in [
            ("web.header_timeout_seconds", raw.web.header_timeout_seconds),
            ("web.body_timeout_seconds", raw.web.body_timeout_seconds),
            ("web.max_connections", raw.web.max_connections as u64),
        ] {
            if v == 0 {
                self.err(key, "must be at least 1");
            }
        }
        let web = WebSettings {
            metrics_bind,
            trusted_proxies,
            header_timeout: std::time::Duration::from_secs(raw.web.header_timeout_seconds.max(1)),
            body_timeout: std::time::Duration::from_secs(raw.web.body_timeout_seconds.max(1)),
            max_connections: raw.web.max_connections.max(1),
        };

        let schedule = match crate::schedule::Cron::parse(&raw.digest.schedule) {
            Ok(c) => Some(c),
            Err(e) => {
                self.err("digest.schedule", e);
                None
            }
        };
        let mut all_managers = Vec::new();
        for (i, m) in raw.digest.managers.iter().enumerate() {
            if let Some(a) = self.address(&format!("digest.managers[{i}]"), m) {
                all_managers.push(a);
            }
        }
        if raw.reminders.after_days > 0 && raw.reminders.max == 0 {
            self.err(
                "reminders.max",
                "is 0 while reminders.after_days is set: set max to 1 or more, or after_days to 0",
            );
        }
        if raw.retention.erase_addresses_after_days > MAX_RETENTION_DAYS {
            self.err(
                "retention.erase_addresses_after_days",
                format!(
                    "{} days is more than {MAX_RETENTION_DAYS}: keeping invitees' addresses that long is not a retention rule",
                    raw.retention.erase_addresses_after_days
                ),
            );
        }
        let replies_forward_to = raw
            .replies
            .forward_to
            .as_deref()
            .and_then(|a| self.address("replies.forward_to", a));
        let mut regions = Vec::new();
        let mut seen_consultants: Vec<(Address, String)> = Vec::new();
        if raw.regions.is_empty() {
            self.err(
                "regions",
                "no [[regions]] configured: nobody could trigger an invitation",
            );
        }
        for (i, r) in raw.regions.iter().enumerate() {
            let name = r.name.trim().to_string();
            if name.is_empty() {
                self.err(format!("regions[{i}].name"), "is empty");
            }
            if regions.iter().any(|x: &Region| x.name == name) {
                self.err(
                    format!("regions[{i}].name"),
                    format!("region {name:?} is configured twice"),
                );
            }
            let mut consultants = Vec::new();
            for (j, c) in r.consultants.iter().enumerate() {
                let key = format!("regions[{i}].consultants[{j}]");
                if let Some(a) = self.address(&key, c) {
                    if let Some((_, other)) = seen_consultants.iter().find(|(x, _)| *x == a) {
                        self.err(
                            &key,
                            format!("{a} is already a consultant of region {other:?}; a consultant belongs to one region"),
                        );
                    } else {
                        seen_consultants.push((a.clone(), name.clone()));
                        consultants.push(a);
                    }
                }
            }
            let mut managers = Vec::new();
            for (j, m) in r.managers.iter().enumerate() {
                if let Some(a) = self.address(&format!("regions[{i}].managers[{j}]"), m) {
                    managers.push(a);
                }
            }
            regions.push(Region {
                name,
                consultants,
                managers,
            });
        }
        if let Some(sa) = &survey_address {
            if seen_consultants.iter().any(|(c, _)| c == sa) {
                self.err("survey.address", "is also listed as a consultant");
            }
        }

        let public = !base_url_is_loopback(&base_url);
        let survey_en = raw.survey.definition_en.as_deref().and_then(|p| {
            let p = self.path(p);
            match Survey::load(&p) {
                Ok(en) => match survey.as_ref().map(|da| da.same_codes(&en)) {
                    Some(Err(why)) => {
                        self.err("survey.definition_en", format!("{}: {why}", p.display()));
                        None
                    }
                    _ => Some(en),
                },
                Err(e) => {
                    self.err("survey.definition_en", e.to_string());
                    None
                }
            }
        });
        let texts = match raw.survey.templates_dir.as_deref().map(|d| self.path(d)) {
            None => crate::texts::Texts::builtin(),
            Some(dir) => match crate::texts::Texts::load(&dir) {
                Ok(t) => t,
                Err(problems) => {
                    for p in problems {
                        self.err("survey.templates_dir", p.to_string());
                    }
                    crate::texts::Texts::builtin()
                }
            },
        };
        let privacy = match raw.privacy {
            Some(p) => {
                for (key, v) in [
                    ("privacy.controller", &p.controller),
                    ("privacy.dpo", &p.dpo),
                    ("privacy.purpose", &p.purpose),
                    ("privacy.legal_basis", &p.legal_basis),
                ] {
                    if v.trim().is_empty() {
                        self.err(key, "is empty: the invitation must say it (GDPR art. 14)");
                    }
                }
                self.address("privacy.contact", &p.contact);
                Privacy {
                    controller: p.controller.trim().to_string(),
                    dpo: p.dpo.trim().to_string(),
                    purpose: p.purpose.trim().to_string(),
                    legal_basis: p.legal_basis.trim().to_string(),
                    contact: p.contact.trim().to_string(),
                    configured: true,
                }
            }
            None => {
                if public {
                    self.err(
                        "privacy",
                        format!("the [privacy] section is missing: with a public base_url ({base_url}) real people are invited, and GDPR art. 14 requires the invitation to name the controller, the DPO, the purpose and the legal basis (keys controller, dpo, purpose, legal_basis, contact)"),
                    );
                }
                let missing = "(ikke angivet: [privacy] mangler i konfigurationen)".to_string();
                Privacy {
                    controller: missing.clone(),
                    dpo: missing.clone(),
                    purpose: missing.clone(),
                    legal_basis: missing.clone(),
                    contact: missing,
                    configured: false,
                }
            }
        };
        let accessibility_statement_url = raw
            .web
            .accessibility_statement_url
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty());
        match &accessibility_statement_url {
            Some(u) if !u.starts_with("https://") && !u.starts_with("http://") => self.err(
                "web.accessibility_statement_url",
                format!("{u:?} is not a web address (https://…)"),
            ),
            None if public => self.err(
                "web.accessibility_statement_url",
                "is missing: a public site of a Danish authority must link to its accessibility statement (webtilgængelighedsloven); give the statement's address from the WAS-Tool",
            ),
            _ => {}
        }
        let web_contact = match raw.web.contact.as_deref() {
            Some(c) => self
                .address("web.contact", c)
                .map(|a| a.to_string())
                .unwrap_or_default(),
            None if privacy.configured => privacy.contact.clone(),
            None => reply_to
                .as_ref()
                .or(survey_address.as_ref())
                .map(|a| a.to_string())
                .unwrap_or_default(),
        };

        Some(Config {
            survey_en,
            texts,
            privacy,
            accessibility_statement_url,
            web_contact,
            path: PathBuf::new(),
            survey_address: survey_address?,
            from_name: raw.survey.from_name,
            agency: raw.survey.agency,
            reply_to,
            base_url,
            survey: survey?,
            region_on_answers: raw.survey.region_on_answers,
            window: Window::new(start?, end?),
            answers_until: answers_until?,
            sending: Sending {
                delay_minutes: raw.sending.delay_minutes,
                hours,
                max_invitees_per_message: raw.sending.max_invitees_per_message,
                max_invitees_per_consultant_per_day: raw
                    .sending
                    .max_invitees_per_consultant_per_day,
                min_retry_seconds: raw.sending.min_retry_seconds.max(1),
                max_retry_minutes: raw.sending.max_retry_minutes,
                limits,
            },
            mailbox: MailboxConfig {
                provider,
                tenant_id,
            },
            trust: Trust {
                authserv_id: raw.trust.authserv_id.map(|s| s.trim().to_lowercase()),
                internal_domains,
                outbound_reporting_mta: raw
                    .trust
                    .outbound_reporting_mta
                    .iter()
                    .map(|s| s.trim().trim_end_matches('.').to_ascii_lowercase())
                    .collect(),
            },
            hmac_key_file,
            generate_hmac_key_if_missing: raw.secrets.generate_hmac_key_if_missing,
            store_path,
            control_socket,
            inbound: inbound?,
            outbound: outbound?,
            web_bind: raw.web.bind,
            web,
            replies_forward_to,
            digest: DigestConfig {
                schedule: schedule?,
                managers: all_managers,
                final_digest: raw.digest.final_digest,
            },
            reminders: RemindersConfig {
                after_days: raw.reminders.after_days,
                max: raw.reminders.max,
            },
            retention: RetentionConfig {
                erase_addresses_after_days: raw.retention.erase_addresses_after_days,
            },
            regions,
        })
    }
}

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

/// Reads a secret file, trimming a trailing newline.
pub fn read_secret(path: &Path) -> std::io::Result<String> {
    let s = std::fs::read_to_string(path)?;
    Ok(s.trim_end_matches(['\r', '\n']).to_string())
}

#[cfg(test)]
mod idn_tests {
    use super::*;

    /// Internal domains are compared in the IDNA form addresses have.
    #[test]
    fn internal_domains_match_in_idna_form() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/classify/config.toml");
        let text = std::fs::read_to_string(&path).unwrap().replace(
            r#"internal_domains = ["siri.dk"]"#,
            r#"internal_domains = ["siri.dk", "Bølle.dk"]"#,
        );
        let cfg = Config::parse(&text, &path).unwrap();
        let a = crate::address::parse("kollega@bølle.dk").unwrap();
        assert!(cfg.is_internal(&a));
        assert!(cfg.is_internal(&crate::address::parse("x@afd.xn--blle-gra.dk").unwrap()));
    }
}
