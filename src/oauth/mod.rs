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
