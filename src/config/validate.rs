//! The validator: from the file as written ([`super::raw`]) to the typed
//! [`Config`], one function per section, each reporting every problem with
//! the dotted key it belongs to and what to fix. Nothing stops at the first
//! error; [`validate`] returns them all, in the order of the sections.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::{NaiveDate, NaiveTime, Weekday};

use super::raw::*;
use super::*;
use crate::address::{self, Address};
use crate::survey::Survey;
use crate::window::{SendingHours, Window};

/// Validates a parsed file; relative paths are taken from `base` (the
/// config file's folder). Every problem is returned at once.
pub(super) fn validate(raw: RawConfig, base: PathBuf) -> Result<Config, Vec<ConfigError>> {
    let mut v = Validator {
        errors: Vec::new(),
        base,
    };
    match v.config(raw) {
        Some(cfg) if v.errors.is_empty() => Ok(cfg),
        _ => Err(v.errors),
    }
}

/// The longest `retention.erase_addresses_after_days` accepted (ten years).
pub const MAX_RETENTION_DAYS: u32 = 3650;

pub(super) fn toml_error(e: &toml::de::Error, text: &str) -> ConfigError {
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

    /// The whole file, section by section in the order the errors are
    /// reported; `None` when anything is wrong (the errors say what).
    fn config(&mut self, raw: RawConfig) -> Option<Config> {
        let (survey_address, reply_to, base_url, survey) = self.survey(&raw.survey);
        let (start, end, answers_until) = self.window(&raw.window);
        let provider = raw.mailbox.provider;
        let preset = provider.preset();
        let sending = self.sending(&raw.sending, &preset);
        let trust = self.trust(&raw.trust);
        if !trust.outbound_reporting_mta.is_empty()
            && trust.authserv_id.is_none()
            && provider == crate::oauth::Provider::Generic
        {
            // Its reports are believed only when authenticated: without a
            // trust setting, the key would silently do nothing.
            self.err(
                "trust.outbound_reporting_mta",
                "needs trust.authserv_id (or mailbox.provider): a report naming the server is believed only when the server that took it in vouches for its sender",
            );
        }
        if !trust.complaint_senders.is_empty()
            && trust.authserv_id.is_none()
            && provider == crate::oauth::Provider::Generic
        {
            // Anybody can send a complaint naming an invitee: without a
            // trust setting, the key would believe forgeries.
            self.err(
                "trust.complaint_senders",
                "needs trust.authserv_id (or mailbox.provider): a complaint naming only an address is believed only when the server that took it in vouches for its sender",
            );
        }

        let hmac_key_file = self.secret_path(&raw.secrets.hmac_key_file);
        let store_path = self.path(&raw.store.path);
        let control_socket = match &raw.store.control_socket {
            Some(p) => self.path(p),
            None => store_path.with_extension("sock"),
        };

        let mailbox = self.mailbox(&raw.mailbox);
        let oauth = self
            .oauth(
                &raw.auth,
                provider,
                mailbox.tenant_id.as_deref(),
                &raw.survey.address,
            )
            .map(Box::new);
        let password_auth = raw.auth.method == AuthMethod::Password;
        let inbound = self.inbound(raw.inbound, &preset, &oauth, password_auth);
        let outbound = self.outbound(raw.outbound, provider, &preset, &oauth);
        let web = self.web(&raw.web);
        let digest = self.digest(&raw.digest);
        let reminders = self.reminders(&raw.reminders);
        let retention = self.retention(&raw.retention);

        let replies_forward_to = raw
            .replies
            .forward_to
            .as_deref()
            .and_then(|a| self.address("replies.forward_to", a));
        let regions = self.regions(&raw.regions, survey_address.as_ref());

        let public = !base_url_is_loopback(&base_url);
        let survey_en = self.survey_en(&raw.survey, survey.as_ref());
        let texts = self.texts(&raw.survey);
        let privacy = self.privacy(raw.privacy, public, &base_url);
        let accessibility_statement_url =
            self.accessibility_statement(raw.web.accessibility_statement_url, public);
        let web_contact = self.web_contact(
            raw.web.contact.as_deref(),
            &privacy,
            reply_to.as_ref(),
            survey_address.as_ref(),
        );

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
            sending,
            mailbox,
            trust,
            hmac_key_file,
            generate_hmac_key_if_missing: raw.secrets.generate_hmac_key_if_missing,
            store_path,
            control_socket,
            inbound: inbound?,
            outbound: outbound?,
            web_bind: raw.web.bind,
            web,
            replies_forward_to,
            digest: digest?,
            reminders,
            retention,
            regions,
        })
    }

    /// `[survey]`: its address, reply-to, base URL and questionnaire.
    fn survey(
        &mut self,
        raw: &RawSurvey,
    ) -> (Option<Address>, Option<Address>, String, Option<Survey>) {
        let survey_address = self.address("survey.address", &raw.address);
        let reply_to = raw
            .reply_to
            .as_deref()
            .and_then(|r| self.address("survey.reply_to", r));
        let base_url = raw.base_url.trim_end_matches('/').to_string();
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            self.err(
                "survey.base_url",
                format!("{base_url:?} must start with https:// (or http:// for a local demo)"),
            );
        }
        let survey_path = self.path(&raw.definition);
        let survey = match Survey::load(&survey_path) {
            Ok(s) => Some(s),
            Err(e) => {
                self.err("survey.definition", e.to_string());
                None
            }
        };
        (survey_address, reply_to, base_url, survey)
    }

    /// `[window]`: start, end and the last day answers are taken.
    fn window(
        &mut self,
        raw: &RawWindow,
    ) -> (Option<NaiveDate>, Option<NaiveDate>, Option<NaiveDate>) {
        let start = self.date("window.start", &raw.start);
        let end = self.date("window.end", &raw.end);
        let answers_until = match &raw.answers_until {
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
        (start, end, answers_until)
    }

    /// `[sending]`: hours, caps, retries; the provider's limits unless overridden.
    fn sending(&mut self, raw: &RawSending, preset: &crate::oauth::Preset) -> Sending {
        let hours = match &raw.hours {
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
        if raw.max_invitees_per_message == 0 {
            self.err(
                "sending.max_invitees_per_message",
                "must be at least 1 (0 would refuse every trigger)",
            );
        }
        if raw.max_invitees_per_consultant_per_day == 0 {
            self.err(
                "sending.max_invitees_per_consultant_per_day",
                "must be at least 1 (0 would refuse every trigger)",
            );
        }
        if raw.max_retry_minutes == 0 {
            self.err("sending.max_retry_minutes", "must be at least 1");
        }
        let limits = crate::pacing::Limits {
            max_connections: preset.limits.max_connections,
            messages_per_minute: limit(raw.messages_per_minute, preset.limits.messages_per_minute),
            messages_per_day: limit(raw.messages_per_day, preset.limits.messages_per_day),
            recipients_per_day: limit(raw.recipients_per_day, preset.limits.recipients_per_day),
        };
        Sending {
            delay_minutes: raw.delay_minutes,
            hours,
            max_invitees_per_message: raw.max_invitees_per_message,
            max_invitees_per_consultant_per_day: raw.max_invitees_per_consultant_per_day,
            min_retry_seconds: raw.min_retry_seconds.max(1),
            max_retry_minutes: raw.max_retry_minutes,
            limits,
        }
    }

    /// `[trust]`: internal domains, the trusted authserv-id, the outbound MTA.
    fn trust(&mut self, raw: &RawTrust) -> Trust {
        let mut internal_domains = BTreeSet::new();
        for (i, d) in raw.internal_domains.iter().enumerate() {
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
        let mut complaint_senders = Vec::new();
        for (i, c) in raw.complaint_senders.iter().enumerate() {
            // Normalised as `crate::address` normalises a From (IDNA too).
            let c = c.trim();
            let normal = match c.split_once('@') {
                Some(_) => crate::address::parse(c)
                    .ok()
                    .map(|a| a.as_str().to_string()),
                None => crate::address::parse(&format!("postmaster@{c}"))
                    .ok()
                    .map(|a| a.domain().to_string())
                    .filter(|d| d.contains('.')),
            };
            if let Some(normal) = normal {
                complaint_senders.push(normal);
            } else {
                self.err(
                    format!("trust.complaint_senders[{i}]"),
                    format!("{c:?} is neither an address nor a domain"),
                );
            }
        }
        if let Some(id) = &raw.authserv_id {
            if id.trim().is_empty() {
                self.err(
                    "trust.authserv_id",
                    "is empty; remove the key to disable the check",
                );
            }
        }
        Trust {
            authserv_id: raw.authserv_id.as_ref().map(|s| s.trim().to_lowercase()),
            internal_domains,
            outbound_reporting_mta: raw
                .outbound_reporting_mta
                .iter()
                .map(|s| s.trim().trim_end_matches('.').to_ascii_lowercase())
                .collect(),
            complaint_senders,
        }
    }

    /// `[mailbox]`: the provider, and the tenant only Microsoft 365 has.
    fn mailbox(&mut self, raw: &RawMailbox) -> MailboxConfig {
        let provider = raw.provider;

        let tenant_id = raw
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
        MailboxConfig {
            provider,
            tenant_id,
        }
    }

    /// `[inbound.imap]` or `[inbound.maildir]`.
    fn inbound(
        &mut self,
        raw: RawInbound,
        preset: &crate::oauth::Preset,
        oauth: &Option<Box<crate::oauth::OAuthConfig>>,
        password_auth: bool,
    ) -> Option<Inbound> {
        match raw {
            RawInbound::Imap(i) => {
                let (host, tls) = self.host_and_tls(
                    "inbound.imap",
                    i.host,
                    i.tls,
                    preset.imap.map(|(h, _, t)| (h, t)),
                );
                let port = self.port("inbound.imap.port", i.port, tls, 143, 993);
                self.plaintext_only_loopback("inbound.imap.tls", &host, tls);
                let username = match (i.username, oauth) {
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
        }
    }

    /// `[outbound.smtp]` or `[outbound.file]`.
    fn outbound(
        &mut self,
        raw: RawOutbound,
        provider: crate::oauth::Provider,
        preset: &crate::oauth::Preset,
        oauth: &Option<Box<crate::oauth::OAuthConfig>>,
    ) -> Option<Outbound> {
        match raw {
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
        }
    }

    /// `[web]`: the listeners, proxies, timeouts and the connection cap.
    fn web(&mut self, raw: &RawWeb) -> WebSettings {
        if raw.bind.parse::<std::net::SocketAddr>().is_err() {
            self.err(
                "web.bind",
                format!("{:?} is not an address:port like 127.0.0.1:8080", raw.bind),
            );
        }

        let metrics_bind = match raw.metrics_bind.trim() {
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
        for p in &raw.trusted_proxies {
            match p.parse::<crate::client_ip::Cidr>() {
                Ok(c) => trusted_proxies.push(c),
                Err(e) => self.err("web.trusted_proxies", e),
            }
        }
        for (key, v) in [
            ("web.header_timeout_seconds", raw.header_timeout_seconds),
            ("web.body_timeout_seconds", raw.body_timeout_seconds),
            ("web.max_connections", raw.max_connections as u64),
        ] {
            if v == 0 {
                self.err(key, "must be at least 1");
            }
        }
        WebSettings {
            metrics_bind,
            trusted_proxies,
            header_timeout: std::time::Duration::from_secs(raw.header_timeout_seconds.max(1)),
            body_timeout: std::time::Duration::from_secs(raw.body_timeout_seconds.max(1)),
            max_connections: raw.max_connections.max(1),
        }
    }

    /// `[digest]`: its schedule and the managers who get every region.
    fn digest(&mut self, raw: &RawDigest) -> Option<DigestConfig> {
        let schedule = match crate::schedule::Cron::parse(&raw.schedule) {
            Ok(c) => Some(c),
            Err(e) => {
                self.err("digest.schedule", e);
                None
            }
        };
        let mut all_managers = Vec::new();
        for (i, m) in raw.managers.iter().enumerate() {
            if let Some(a) = self.address(&format!("digest.managers[{i}]"), m) {
                all_managers.push(a);
            }
        }
        Some(DigestConfig {
            schedule: schedule?,
            managers: all_managers,
            final_digest: raw.final_digest,
        })
    }

    /// `[reminders]`.
    fn reminders(&mut self, raw: &RawReminders) -> RemindersConfig {
        if raw.after_days > 0 && raw.max == 0 {
            self.err(
                "reminders.max",
                "is 0 while reminders.after_days is set: set max to 1 or more, or after_days to 0",
            );
        }
        RemindersConfig {
            after_days: raw.after_days,
            max: raw.max,
        }
    }

    /// `[retention]`.
    fn retention(&mut self, raw: &RawRetention) -> RetentionConfig {
        if raw.erase_addresses_after_days > MAX_RETENTION_DAYS {
            self.err(
                "retention.erase_addresses_after_days",
                format!(
                    "{} days is more than {MAX_RETENTION_DAYS}: keeping invitees' addresses that long is not a retention rule",
                    raw.erase_addresses_after_days
                ),
            );
        }
        RetentionConfig {
            erase_addresses_after_days: raw.erase_addresses_after_days,
        }
    }

    /// `[[regions]]`: names, consultants (each in one region, never the
    /// survey address) and regional managers.
    fn regions(&mut self, raw: &[RawRegion], survey_address: Option<&Address>) -> Vec<Region> {
        let mut regions = Vec::new();
        let mut seen_consultants: Vec<(Address, String)> = Vec::new();
        if raw.is_empty() {
            self.err(
                "regions",
                "no [[regions]] configured: nobody could trigger an invitation",
            );
        }
        for (i, r) in raw.iter().enumerate() {
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
        if let Some(sa) = survey_address {
            if seen_consultants.iter().any(|(c, _)| c == sa) {
                self.err("survey.address", "is also listed as a consultant");
            }
        }
        regions
    }

    /// `survey.definition_en`: the English questionnaire, with the Danish one's codes.
    fn survey_en(&mut self, raw: &RawSurvey, survey: Option<&Survey>) -> Option<Survey> {
        raw.definition_en.as_deref().and_then(|p| {
            let p = self.path(p);
            match Survey::load(&p) {
                Ok(en) => match survey.map(|da| da.same_codes(&en)) {
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
        })
    }

    /// `survey.templates_dir`: the agency's texts, validated.
    fn texts(&mut self, raw: &RawSurvey) -> crate::texts::Texts {
        match raw.templates_dir.as_deref().map(|d| self.path(d)) {
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
        }
    }

    /// `[privacy]`: what the art. 14 notice names; required when the site is public.
    fn privacy(&mut self, raw: Option<RawPrivacy>, public: bool, base_url: &str) -> Privacy {
        match raw {
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
        }
    }

    /// `web.accessibility_statement_url`: required when the site is public.
    fn accessibility_statement(&mut self, raw: Option<String>, public: bool) -> Option<String> {
        let accessibility_statement_url =
            raw.map(|u| u.trim().to_string()).filter(|u| !u.is_empty());
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
        accessibility_statement_url
    }

    /// `web.contact`: as written, else the privacy contact, the reply-to or the survey address.
    fn web_contact(
        &mut self,
        raw: Option<&str>,
        privacy: &Privacy,
        reply_to: Option<&Address>,
        survey_address: Option<&Address>,
    ) -> String {
        match raw {
            Some(c) => self
                .address("web.contact", c)
                .map(|a| a.to_string())
                .unwrap_or_default(),
            None if privacy.configured => privacy.contact.clone(),
            None => reply_to
                .or(survey_address)
                .map(|a| a.to_string())
                .unwrap_or_default(),
        }
    }
}

/// A sending limit: as written (0: none), else the preset's.
fn limit(written: Option<u32>, preset: Option<u32>) -> Option<u32> {
    match written {
        Some(0) => None,
        Some(n) => Some(n),
        None => preset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// toml refuses 2024-02-30 itself; the validator's own check stays.
    #[test]
    fn a_date_that_is_no_calendar_day() {
        let mut v = Validator {
            errors: Vec::new(),
            base: PathBuf::new(),
        };
        let d = toml::value::Datetime {
            date: Some(toml::value::Date {
                year: 2024,
                month: 2,
                day: 30,
            }),
            time: None,
            offset: None,
        };
        assert_eq!(v.date("window.end", &d), None);
        assert_eq!(
            v.errors,
            [ConfigError {
                key: "window.end".into(),
                message: "not a calendar date".into(),
            }]
        );
    }
}
