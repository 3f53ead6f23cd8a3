//! The file as written: the serde shapes of the TOML document, key for key,
//! with their defaults. Nothing here is checked beyond what serde does
//! (unknown keys are errors); [`super::validate`] turns these into the typed
//! [`super::Config`].

use std::path::PathBuf;

use serde::Deserialize;

use super::TlsMode;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) survey: RawSurvey,
    pub(super) window: RawWindow,
    #[serde(default)]
    pub(super) sending: RawSending,
    #[serde(default)]
    pub(super) trust: RawTrust,
    pub(super) secrets: RawSecrets,
    #[serde(default)]
    pub(super) mailbox: RawMailbox,
    #[serde(default)]
    pub(super) auth: RawAuth,
    pub(super) store: RawStore,
    pub(super) inbound: RawInbound,
    pub(super) outbound: RawOutbound,
    #[serde(default)]
    pub(super) web: RawWeb,
    #[serde(default)]
    pub(super) replies: RawReplies,
    #[serde(default)]
    pub(super) digest: RawDigest,
    #[serde(default)]
    pub(super) reminders: RawReminders,
    #[serde(default)]
    pub(super) retention: RawRetention,
    #[serde(default)]
    pub(super) regions: Vec<RawRegion>,
    #[serde(default)]
    pub(super) privacy: Option<RawPrivacy>,
}

/// `[privacy]`: what GDPR art. 14 requires the invitation and the privacy
/// page to say (src/texts.rs, `privacy.html`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPrivacy {
    pub(super) controller: String,
    pub(super) dpo: String,
    pub(super) purpose: String,
    pub(super) legal_basis: String,
    pub(super) contact: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSurvey {
    pub(super) address: String,
    #[serde(default = "default_from_name")]
    pub(super) from_name: String,
    #[serde(default = "default_agency")]
    pub(super) agency: String,
    pub(super) base_url: String,
    pub(super) definition: PathBuf,
    #[serde(default)]
    pub(super) reply_to: Option<String>,
    #[serde(default = "default_true")]
    pub(super) region_on_answers: bool,
    /// The questionnaire in English (same codes), offered beside the Danish one.
    #[serde(default)]
    pub(super) definition_en: Option<PathBuf>,
    /// The agency's texts: files here override the built-in templates.
    #[serde(default)]
    pub(super) templates_dir: Option<PathBuf>,
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
pub(super) struct RawWindow {
    pub(super) start: toml::value::Datetime,
    pub(super) end: toml::value::Datetime,
    #[serde(default)]
    pub(super) answers_until: Option<toml::value::Datetime>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSending {
    #[serde(default)]
    pub(super) delay_minutes: u32,
    #[serde(default)]
    pub(super) hours: Option<RawHours>,
    #[serde(default = "default_max_per_message")]
    pub(super) max_invitees_per_message: usize,
    #[serde(default = "default_max_per_day")]
    pub(super) max_invitees_per_consultant_per_day: u32,
    #[serde(default = "default_retry_seconds")]
    pub(super) min_retry_seconds: u32,
    #[serde(default = "default_retry_minutes")]
    pub(super) max_retry_minutes: u32,
    /// Sending limits; unset: the provider preset's (0: no limit).
    #[serde(default)]
    pub(super) messages_per_minute: Option<u32>,
    #[serde(default)]
    pub(super) messages_per_day: Option<u32>,
    #[serde(default)]
    pub(super) recipients_per_day: Option<u32>,
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
pub(super) struct RawHours {
    pub(super) start: String,
    pub(super) end: String,
    #[serde(default = "default_weekdays")]
    pub(super) days: Vec<String>,
}

fn default_weekdays() -> Vec<String> {
    ["mon", "tue", "wed", "thu", "fri"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrust {
    #[serde(default)]
    pub(super) authserv_id: Option<String>,
    #[serde(default)]
    pub(super) internal_domains: Vec<String>,
    #[serde(default)]
    pub(super) outbound_reporting_mta: Vec<String>,
    #[serde(default)]
    pub(super) complaint_senders: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSecrets {
    pub(super) hmac_key_file: PathBuf,
    #[serde(default)]
    pub(super) generate_hmac_key_if_missing: bool,
}

/// `[mailbox]`: whose mail service the survey mailbox lives at. Issue 12
/// (sender trust) reads `provider` and `tenant_id` too.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMailbox {
    #[serde(default)]
    pub(super) provider: crate::oauth::Provider,
    #[serde(default)]
    pub(super) tenant_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum AuthMethod {
    #[default]
    Password,
    Oauth2,
}

/// `[auth]`: how canvass logs in to IMAP and SMTP.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    #[serde(default)]
    pub(super) method: AuthMethod,
    #[serde(default)]
    pub(super) mechanism: Option<crate::oauth::Mechanism>,
    #[serde(default)]
    pub(super) login: Option<String>,
    #[serde(default)]
    pub(super) client_id: Option<String>,
    #[serde(default)]
    pub(super) client_secret_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) certificate_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) private_key_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) service_account_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) token_url: Option<String>,
    #[serde(default)]
    pub(super) scope: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    pub(super) path: PathBuf,
    #[serde(default)]
    pub(super) control_socket: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub(super) enum RawInbound {
    Imap(RawImap),
    Maildir(RawMaildir),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawImap {
    #[serde(default)]
    pub(super) host: Option<String>,
    pub(super) port: Option<u16>,
    #[serde(default)]
    pub(super) tls: Option<TlsMode>,
    #[serde(default)]
    pub(super) username: Option<String>,
    #[serde(default)]
    pub(super) password_file: Option<PathBuf>,
    #[serde(default = "default_mailbox")]
    pub(super) mailbox: String,
    #[serde(default)]
    pub(super) move_to: Option<String>,
    #[serde(default)]
    pub(super) sent_folder: Option<String>,
    #[serde(default)]
    pub(super) ca_file: Option<PathBuf>,
    #[serde(default = "default_max_message_bytes")]
    pub(super) max_message_bytes: u64,
    #[serde(default = "default_quarantine")]
    pub(super) quarantine: String,
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
pub(super) struct RawMaildir {
    pub(super) path: PathBuf,
    #[serde(default = "default_poll_ms")]
    pub(super) poll_interval_ms: u64,
    #[serde(default = "default_max_message_bytes")]
    pub(super) max_message_bytes: u64,
    #[serde(default = "default_settle_ms")]
    pub(super) settle_ms: u64,
}

fn default_poll_ms() -> u64 {
    500
}

fn default_settle_ms() -> u64 {
    1000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub(super) enum RawOutbound {
    Smtp(RawSmtp),
    File(RawFile),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSmtp {
    #[serde(default)]
    pub(super) host: Option<String>,
    pub(super) port: Option<u16>,
    #[serde(default)]
    pub(super) tls: Option<TlsMode>,
    #[serde(default)]
    pub(super) username: Option<String>,
    #[serde(default)]
    pub(super) password_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) ca_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) pool_size: Option<u32>,
    #[serde(default = "default_timeout")]
    pub(super) timeout_seconds: u64,
}

pub(super) fn default_pool() -> u32 {
    4
}
fn default_timeout() -> u64 {
    30
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) path: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWeb {
    #[serde(default = "default_bind")]
    pub(super) bind: String,
    #[serde(default = "default_metrics_bind")]
    pub(super) metrics_bind: String,
    #[serde(default)]
    pub(super) trusted_proxies: Vec<String>,
    #[serde(default = "default_header_timeout")]
    pub(super) header_timeout_seconds: u64,
    #[serde(default = "default_body_timeout")]
    pub(super) body_timeout_seconds: u64,
    #[serde(default = "default_max_connections")]
    pub(super) max_connections: usize,
    /// The accessibility statement (WAS-Tool), linked from every page.
    #[serde(default)]
    pub(super) accessibility_statement_url: Option<String>,
    /// The agency's contact in every page's footer (default: [privacy] contact).
    #[serde(default)]
    pub(super) contact: Option<String>,
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

pub(super) fn default_header_timeout() -> u64 {
    10
}

pub(super) fn default_body_timeout() -> u64 {
    20
}

pub(super) fn default_max_connections() -> usize {
    512
}

fn default_bind() -> String {
    "127.0.0.1:8080".to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDigest {
    #[serde(default = "default_digest_schedule")]
    pub(super) schedule: String,
    #[serde(default)]
    pub(super) managers: Vec<String>,
    #[serde(default = "default_true")]
    pub(super) final_digest: bool,
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
pub(super) struct RawReminders {
    #[serde(default)]
    pub(super) after_days: u32,
    #[serde(default = "default_reminders_max")]
    pub(super) max: u32,
}

fn default_reminders_max() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetention {
    #[serde(default = "default_erase_after_days")]
    pub(super) erase_addresses_after_days: u32,
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReplies {
    #[serde(default)]
    pub(super) forward_to: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRegion {
    pub(super) name: String,
    #[serde(default)]
    pub(super) consultants: Vec<String>,
    #[serde(default)]
    pub(super) managers: Vec<String>,
}
