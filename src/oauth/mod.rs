//! OAuth 2.0 for an unattended daemon: Microsoft Entra ID (client
//! credentials with a secret or a certificate), Google (a service account
//! with domain-wide delegation) and any other token endpoint, for IMAP and
//! SMTP alike (SASL XOAUTH2 / OAUTHBEARER, RFC 7628).
//!
//! - [`request`]: the token requests, built per the providers' documentation
//!   (pure apart from signing; unit-tested field by field).
//! - [`sasl`]: the SASL initial responses and the error challenge (pure).
//! - [`cache`]: one token cache per configuration, shared by IMAP and SMTP:
//!   refresh before expiry, one request in flight, backoff while the identity
//!   provider is down, one log line per outage.
//!
//! A token or a secret never appears in a log, an error or `Debug` output:
//! [`AccessToken`] and the request bodies redact themselves, and errors carry
//! only the identity provider's error code and description.

pub mod cache;
pub mod request;
pub mod sasl;

use std::fmt;
use std::path::PathBuf;

pub use cache::{AuthState, TokenSource};

/// `[mailbox] provider`: which preset fills in hosts, ports, TLS, the SASL
/// mechanism and the sending limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Exchange Online (Microsoft 365).
    Microsoft365,
    /// Google Workspace (Gmail).
    Google,
    /// Any standard server: nothing is filled in.
    #[default]
    Generic,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Microsoft365 => "microsoft365",
            Provider::Google => "google",
            Provider::Generic => "generic",
        }
    }
}

/// The SASL mechanism used with a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mechanism {
    /// Google's and Microsoft's `XOAUTH2`.
    Xoauth2,
    /// RFC 7628 `OAUTHBEARER`.
    Oauthbearer,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Xoauth2 => "XOAUTH2",
            Mechanism::Oauthbearer => "OAUTHBEARER",
        }
    }
}

/// How canvass proves who it is to the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Credential {
    /// A client secret (Entra ID, or any provider): RFC 6749 §4.4 with the
    /// secret in the form (`client_secret_post`).
    ClientSecret {
        client_id: String,
        secret_file: PathBuf,
    },
    /// A certificate and its private key (Entra ID, recommended): a signed
    /// client assertion (RFC 7523 §2.2) instead of a secret.
    Certificate {
        client_id: String,
        certificate_file: PathBuf,
        private_key_file: PathBuf,
    },
    /// A Google service-account key file (JSON) with domain-wide delegation:
    /// the JWT bearer grant (RFC 7523 §2.1) acting as the mailbox.
    ServiceAccount { key_file: PathBuf },
}

/// Everything needed to get a token and log in with it (validated config).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OAuthConfig {
    pub provider: Provider,
    pub mechanism: Mechanism,
    /// The mailbox logged in to (IMAP and SMTP user; Google's `sub`).
    pub login: String,
    pub token_url: String,
    pub scope: String,
    pub credential: Credential,
}

impl OAuthConfig {
    /// The file(s) holding the secret, with the config key naming each.
    pub fn secret_files(&self) -> Vec<(&'static str, &std::path::Path)> {
        match &self.credential {
            Credential::ClientSecret { secret_file, .. } => {
                vec![("auth.client_secret_file", secret_file.as_path())]
            }
            Credential::Certificate {
                certificate_file,
                private_key_file,
                ..
            } => vec![
                ("auth.certificate_file", certificate_file.as_path()),
                ("auth.private_key_file", private_key_file.as_path()),
            ],
            Credential::ServiceAccount { key_file } => {
                vec![("auth.service_account_file", key_file.as_path())]
            }
        }
    }
}

/// An access token. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    pub fn new(s: String) -> AccessToken {
        AccessToken(s)
    }
    /// The token itself, for the SASL response only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccessToken(<{} bytes redacted>)", self.0.len())
    }
}

/// Why no token could be had. Never contains a token or a secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OAuthError {
    /// The token endpoint could not be reached or answered 5xx: try later.
    #[error("the token endpoint {url} is unreachable: {detail}")]
    Unreachable { url: String, detail: String },
    /// The identity provider refused the request (wrong or revoked client,
    /// missing consent): an operator must act; retried with backoff.
    #[error("the token endpoint {url} refused canvass' credentials: {error}{description}{hint}")]
    Refused {
        url: String,
        /// The OAuth error code (`invalid_client`, `unauthorized_client`, ...).
        error: String,
        /// ": " and the provider's error_description, or empty.
        description: String,
        /// "; " and what to do, or empty.
        hint: String,
    },
    /// A credential file is missing or unusable (nothing was sent).
    #[error("{key} {path}: {detail}")]
    Credentials {
        key: &'static str,
        path: String,
        detail: String,
    },
    /// The endpoint answered something that is not a token response.
    #[error("the token endpoint {url} answered unexpectedly: {detail}")]
    Protocol { url: String, detail: String },
}

impl OAuthError {
    /// Trying again later can help without an operator (network, 5xx).
    pub fn is_transient(&self) -> bool {
        matches!(self, OAuthError::Unreachable { .. })
    }
}

/// What a provider preset fills in. Every value can be overridden in the
/// config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preset {
    pub imap: Option<(&'static str, u16, crate::config::TlsMode)>,
    pub smtp: Option<(&'static str, u16, crate::config::TlsMode)>,
    pub mechanism: Mechanism,
    pub scope: Option<&'static str>,
    pub limits: crate::pacing::Limits,
}

impl Provider {
    /// The preset of this provider, from its documentation:
    /// - Exchange Online: `outlook.office365.com:993` (TLS),
    ///   `smtp.office365.com:587` (STARTTLS), XOAUTH2; SMTP AUTH allows 3
    ///   concurrent connections, 30 messages a minute and 10,000 recipients
    ///   a day per mailbox ("Exchange Online limits", sending limits).
    /// - Google Workspace: `imap.gmail.com:993`, `smtp.gmail.com:465` (both
    ///   TLS), XOAUTH2; 2,000 messages a day per user ("Gmail sending limits
    ///   in Google Workspace").
    pub fn preset(self) -> Preset {
        use crate::config::TlsMode;
        use crate::pacing::Limits;
        match self {
            Provider::Microsoft365 => Preset {
                imap: Some(("outlook.office365.com", 993, TlsMode::Implicit)),
                smtp: Some(("smtp.office365.com", 587, TlsMode::Starttls)),
                mechanism: Mechanism::Xoauth2,
                scope: Some(request::MICROSOFT_SCOPE),
                limits: Limits {
                    max_connections: Some(3),
                    messages_per_minute: Some(30),
                    messages_per_day: None,
                    recipients_per_day: Some(10_000),
                },
            },
            Provider::Google => Preset {
                imap: Some(("imap.gmail.com", 993, TlsMode::Implicit)),
                smtp: Some(("smtp.gmail.com", 465, TlsMode::Implicit)),
                mechanism: Mechanism::Xoauth2,
                scope: Some(request::GOOGLE_SCOPE),
                limits: Limits {
                    max_connections: None,
                    messages_per_minute: None,
                    messages_per_day: Some(2_000),
                    recipients_per_day: None,
                },
            },
            Provider::Generic => Preset {
                imap: None,
                smtp: None,
                mechanism: Mechanism::Oauthbearer,
                scope: None,
                limits: crate::pacing::Limits::default(),
            },
        }
    }
}

#[cfg(test)]
mod config_tests {
    //! `[mailbox]` and `[auth]` as `check-config` reads them.
    use std::path::Path;

    use crate::config::{Config, Inbound, Outbound, TlsMode};

    use super::{Credential, Mechanism, Provider};

    fn parse(mailbox: &str, auth: &str, imap: &str, smtp: &str) -> Result<Config, String> {
        parse_with_sending(mailbox, auth, imap, smtp, "")
    }

    fn parse_with_sending(
        mailbox: &str,
        auth: &str,
        imap: &str,
        smtp: &str,
        sending: &str,
    ) -> Result<Config, String> {
        let survey = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/survey.da.toml");
        let text = format!(
            r#"
[survey]
address = "undersoegelse@siri.dk"
base_url = "https://survey.siri.dk"
definition = "{survey}"
[window]
start = 2024-08-07
end = 2024-09-20
[sending]
{sending}
[secrets]
hmac_key_file = "hmac.key"
[store]
path = "store"
[mailbox]
{mailbox}
[auth]
{auth}
[inbound.imap]
{imap}
[outbound.smtp]
{smtp}
[[regions]]
name = "Sjælland"
consultants = ["anne.hansen@siri.dk"]
[privacy]
controller = "SIRI"
dpo = "dpo@siri.dk"
purpose = "at evaluere ordningen"
legal_basis = "artikel 6, stk. 1, litra e"
contact = "undersoegelse@siri.dk"
[web]
accessibility_statement_url = "https://was.digst.dk/survey-siri-dk"
"#,
            survey = survey.display()
        );
        Config::parse(&text, Path::new("/etc/canvass/canvass.toml")).map_err(|e| e.to_string())
    }

    const MS: &str = "provider = \"microsoft365\"\ntenant_id = \"contoso.onmicrosoft.com\"";
    const MS_AUTH: &str =
        "method = \"oauth2\"\nclient_id = \"app\"\ncertificate_file = \"c.pem\"\nprivate_key_file = \"k.pem\"";

    #[test]
    fn the_microsoft365_preset_fills_hosts_mechanism_token_url_and_limits() {
        let c = parse(MS, MS_AUTH, "", "").unwrap();
        let Inbound::Imap(i) = &c.inbound else {
            panic!()
        };
        let Outbound::Smtp(o) = &c.outbound else {
            panic!()
        };
        assert_eq!(
            (i.host.as_str(), i.port, i.tls),
            ("outlook.office365.com", 993, TlsMode::Implicit)
        );
        assert_eq!(
            (o.host.as_str(), o.port, o.tls),
            ("smtp.office365.com", 587, TlsMode::Starttls)
        );
        assert_eq!(i.username, "undersoegelse@siri.dk");
        assert_eq!(o.pool_size, 3);
        let a = i.oauth.as_ref().unwrap();
        assert_eq!(
            o.oauth.as_ref(),
            Some(a),
            "IMAP and SMTP share one OAuth setting"
        );
        assert_eq!(a.mechanism, Mechanism::Xoauth2);
        assert_eq!(
            a.token_url,
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_eq!(a.scope, "https://outlook.office365.com/.default");
        assert!(matches!(a.credential, Credential::Certificate { .. }));
        let l = c.sending.limits;
        assert_eq!(
            (
                l.max_connections,
                l.messages_per_minute,
                l.recipients_per_day
            ),
            (Some(3), Some(30), Some(10_000))
        );
        assert_eq!(c.mailbox.provider, Provider::Microsoft365);
        assert_eq!(
            c.mailbox.tenant_id.as_deref(),
            Some("contoso.onmicrosoft.com")
        );
    }

    #[test]
    fn a_pool_above_exchanges_three_connections_is_refused() {
        let e = parse(MS, MS_AUTH, "", "pool_size = 4").unwrap_err();
        assert!(
            e.contains("outbound.smtp.pool_size: 4 is above the 3 simultaneous SMTP connections microsoft365 allows per mailbox: set 3 or less"),
            "{e}"
        );
    }

    #[test]
    fn the_google_preset_needs_a_service_account() {
        let c = parse(
            "provider = \"google\"",
            "method = \"oauth2\"\nservice_account_file = \"sa.json\"",
            "",
            "",
        )
        .unwrap();
        let Outbound::Smtp(o) = &c.outbound else {
            panic!()
        };
        assert_eq!(
            (o.host.as_str(), o.port, o.tls),
            ("smtp.gmail.com", 465, TlsMode::Implicit)
        );
        assert_eq!(c.sending.limits.messages_per_day, Some(2_000));
        let a = c.oauth().unwrap();
        assert_eq!(a.token_url, "https://oauth2.googleapis.com/token");
        assert_eq!(a.scope, "https://mail.google.com/");
        let e = parse(
            "provider = \"google\"",
            "method = \"oauth2\"\nclient_id = \"x\"\nclient_secret_file = \"s\"",
            "",
            "",
        )
        .unwrap_err();
        assert!(
            e.contains(
                "auth.service_account_file: Google Workspace needs a service-account key file"
            ),
            "{e}"
        );
    }

    #[test]
    fn limits_can_be_overridden_and_switched_off() {
        let preset = parse(MS, MS_AUTH, "", "").unwrap().sending.limits;
        assert_eq!(preset.messages_per_minute, Some(30));
        let c = parse_with_sending(
            MS,
            MS_AUTH,
            "",
            "",
            "messages_per_minute = 10\nrecipients_per_day = 0\nmessages_per_day = 500",
        )
        .unwrap();
        let l = c.sending.limits;
        assert_eq!(l.messages_per_minute, Some(10));
        assert_eq!(l.recipients_per_day, None, "0 switches the limit off");
        assert_eq!(l.messages_per_day, Some(500));
        assert_eq!(l.max_connections, Some(3));
    }

    #[test]
    fn mistakes_are_named_by_key() {
        // Microsoft without a tenant.
        let e = parse("provider = \"microsoft365\"", MS_AUTH, "", "").unwrap_err();
        assert!(
            e.contains("mailbox.tenant_id: is required for microsoft365"),
            "{e}"
        );
        // Generic without a token URL, and plain http to a remote host.
        let e = parse(
            "",
            "method = \"oauth2\"\nclient_id = \"a\"\nclient_secret_file = \"s\"",
            "host = \"imap.x.dk\"",
            "host = \"smtp.x.dk\"",
        )
        .unwrap_err();
        assert!(
            e.contains("auth.token_url: is required with provider = \"generic\""),
            "{e}"
        );
        let e = parse(
            "",
            "method = \"oauth2\"\nclient_id = \"a\"\nclient_secret_file = \"s\"\ntoken_url = \"http://idp.x.dk/token\"",
            "host = \"imap.x.dk\"",
            "host = \"smtp.x.dk\"",
        )
        .unwrap_err();
        assert!(e.contains("must start with https://"), "{e}");
        // OAuth keys with the password method; a password file with OAuth.
        let e = parse(
            "",
            "client_id = \"a\"",
            "host = \"i\"\nusername = \"u\"\npassword_file = \"p\"",
            "host = \"s\"",
        )
        .unwrap_err();
        assert!(
            e.contains("auth.client_id: is only used with auth.method = \"oauth2\""),
            "{e}"
        );
        let e = parse(MS, MS_AUTH, "password_file = \"p\"", "").unwrap_err();
        assert!(
            e.contains("inbound.imap.password_file: is not used with auth.method = \"oauth2\""),
            "{e}"
        );
        // No host and no preset.
        let e = parse("", "", "username = \"u\"\npassword_file = \"p\"", "").unwrap_err();
        assert!(e.contains("inbound.imap.host: is required"), "{e}");
        // Two credentials.
        let e = parse(MS, "method = \"oauth2\"\nclient_id = \"a\"\nclient_secret_file = \"s\"\nservice_account_file = \"g\"", "", "").unwrap_err();
        assert!(e.contains("auth: set exactly one credential"), "{e}");
    }

    #[test]
    fn password_configs_are_unchanged() {
        let c = parse(
            "",
            "",
            "host = \"imap.siri.dk\"\nusername = \"u\"\npassword_file = \"p\"",
            "host = \"smtp.siri.dk\"",
        )
        .unwrap();
        assert!(c.oauth().is_none());
        assert_eq!(c.mailbox.provider, Provider::Generic);
        let Outbound::Smtp(o) = &c.outbound else {
            panic!()
        };
        assert_eq!(o.pool_size, 4);
        assert_eq!(c.sending.limits, crate::pacing::Limits::default());
    }
}
