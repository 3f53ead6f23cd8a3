//! One token cache per OAuth configuration, shared by the IMAP source and the
//! SMTP transport ([`TokenSource::shared`]).
//!
//! - A token is reused until a quarter of its lifetime (at most 5 minutes)
//!   is left, then a new one is requested (client credentials bring no
//!   refresh token: the grant is simply made again).
//! - One request is in flight at a time: callers wait on the same lock and
//!   then find the fresh token.
//! - While the identity provider is down or refuses, requests are spaced by
//!   an exponential backoff (1 s … 5 min); a still-valid token keeps being
//!   served meanwhile, and the outage is logged once (`Outage`).
//! - A server that refuses a token ([`TokenSource::rejected`]) makes the next
//!   call ask for a new one at once (the session was ended for an expired
//!   token, or the clocks disagree).
//! - [`TokenSource::state`] says how things stand, for `status` and
//!   `check-mail`: the expiry of the current token and the last error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::request::{self, ErrorResponse, TokenResponse};
use super::{AccessToken, OAuthConfig, OAuthError};
use crate::backoff::{Backoff, Outage};

/// Refresh when this much of the lifetime is left, at most [`MAX_MARGIN`].
const MARGIN_FRACTION: u32 = 4;
const MAX_MARGIN: Duration = Duration::from_secs(300);
/// When the endpoint gives no `expires_in`: assume an hour (RFC 6749 says
/// the server should document it; Entra and Google say 3599).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// One HTTP request to the token endpoint, at most.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How the login stands, for `status` and `check-mail`. No token in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthState {
    /// When the current token expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// The last failure to get a token, if the last attempt failed.
    pub last_error: Option<String>,
}

struct Cached {
    token: AccessToken,
    expires: Instant,
    refresh: Instant,
}

struct Inner {
    cached: Option<Cached>,
    backoff: Backoff,
    /// No request before this (backoff after a failure).
    not_before: Option<Instant>,
    last_error: Option<OAuthError>,
    outage: Outage,
}

pub struct TokenSource {
    cfg: OAuthConfig,
    http: reqwest::Client,
    inner: tokio::sync::Mutex<Inner>,
    state: Mutex<AuthState>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("provider", &self.cfg.provider)
            .field("token_url", &self.cfg.token_url)
            .finish_non_exhaustive()
    }
}

type Registry = Mutex<HashMap<OAuthConfig, Weak<TokenSource>>>;

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(Default::default)
}

impl TokenSource {
    pub fn new(cfg: OAuthConfig) -> Result<TokenSource, OAuthError> {
        let tls = crate::tls::client_config(None, "auth.token_url").map_err(|detail| {
            OAuthError::Unreachable {
                url: cfg.token_url.clone(),
                detail,
            }
        })?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("canvass/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OAuthError::Unreachable {
                url: cfg.token_url.clone(),
                detail: e.to_string(),
            })?;
        Ok(TokenSource {
            cfg,
            http,
            inner: tokio::sync::Mutex::new(Inner {
                cached: None,
                backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(300)),
                not_before: None,
                last_error: None,
                outage: Outage::new("token endpoint"),
            }),
            state: Mutex::new(AuthState::default()),
        })
    }

    /// The one source for `cfg` in this process (IMAP and SMTP share it).
    pub fn shared(cfg: &OAuthConfig) -> Result<Arc<TokenSource>, OAuthError> {
        let mut reg = registry().lock().unwrap_or_else(|p| p.into_inner());
        reg.retain(|_, w| w.strong_count() > 0);
        if let Some(s) = reg.get(cfg).and_then(Weak::upgrade) {
            return Ok(s);
        }
        let s = Arc::new(TokenSource::new(cfg.clone())?);
        reg.insert(cfg.clone(), Arc::downgrade(&s));
        Ok(s)
    }

    pub fn config(&self) -> &OAuthConfig {
        &self.cfg
    }

    /// How things stand (no token in it).
    pub fn state(&self) -> AuthState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The process-wide state of every live source (for `status`).
    pub fn all_states() -> Vec<AuthState> {
        let reg = registry().lock().unwrap_or_else(|p| p.into_inner());
        reg.values()
            .filter_map(Weak::upgrade)
            .map(|s| s.state())
            .collect()
    }

    fn set_state(&self, f: impl FnOnce(&mut AuthState)) {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// A token valid now: the cached one, or a new one.
    pub async fn token(&self) -> Result<AccessToken, OAuthError> {
        let mut inner = self.inner.lock().await;
        let now = Instant::now();
        if let Some(c) = &inner.cached {
            if now < c.refresh {
                return Ok(c.token.clone());
            }
        }
        let waiting = inner.not_before.is_some_and(|t| now < t);
        if waiting {
            // Backing off: serve a token that is still valid, else the error.
            if let Some(c) = inner.cached.as_ref().filter(|c| now < c.expires) {
                return Ok(c.token.clone());
            }
            return Err(inner
                .last_error
                .clone()
                .unwrap_or_else(|| OAuthError::Unreachable {
                    url: self.cfg.token_url.clone(),
                    detail: "backing off".into(),
                }));
        }
        match self.fetch().await {
            Ok((token, lifetime)) => {
                let now = Instant::now();
                let margin = refresh_margin(lifetime);
                let expires_at = Utc::now()
                    + chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::zero());
                inner.cached = Some(Cached {
                    token: token.clone(),
                    expires: now + lifetime,
                    refresh: now + lifetime - margin,
                });
                inner.backoff.reset();
                inner.not_before = None;
                inner.last_error = None;
                inner.outage.ok();
                tracing::debug!(expires_at = %expires_at, "new access token");
                self.set_state(|s| {
                    s.expires_at = Some(expires_at);
                    s.last_error = None;
                });
                Ok(token)
            }
            Err(e) => {
                let delay = inner.backoff.next_delay();
                inner.not_before = Some(Instant::now() + delay);
                inner.outage.failed(&e);
                inner.last_error = Some(e.clone());
                self.set_state(|s| s.last_error = Some(e.to_string()));
                if let Some(c) = inner.cached.as_ref().filter(|c| now < c.expires) {
                    return Ok(c.token.clone());
                }
                Err(e)
            }
        }
    }

    /// A server refused `token` (expired, revoked): the next [`Self::token`]
    /// asks for a new one (still subject to the backoff).
    pub async fn rejected(&self, token: &AccessToken) {
        let mut inner = self.inner.lock().await;
        if inner.cached.as_ref().is_some_and(|c| &c.token == token) {
            inner.cached = None;
        }
    }

    /// A server said the current token expired (`AccessTokenExpired`): the
    /// next [`Self::token`] asks for a new one.
    pub async fn expire(&self) {
        self.inner.lock().await.cached = None;
    }

    async fn fetch(&self) -> Result<(AccessToken, Duration), OAuthError> {
        let url = &self.cfg.token_url;
        let req = request::build(&self.cfg, Utc::now().timestamp())?;
        let unreachable = |detail: String| OAuthError::Unreachable {
            url: url.clone(),
            detail,
        };
        let resp = self
            .http
            .post(&req.url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(req.body())
            .send()
            .await
            // reqwest's error text names the URL, never the body.
            .map_err(|e| unreachable(error_chain(&e)))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| unreachable(error_chain(&e)))?;
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(unreachable(format!("HTTP {status}")));
        }
        if !status.is_success() {
            return Err(match serde_json::from_slice::<ErrorResponse>(&bytes) {
                Ok(e) => {
                    let description = e
                        .error_description
                        .as_deref()
                        .map(|d| first_line(d, 300))
                        .unwrap_or_default();
                    let hint = request::hint(self.cfg.provider, &e.error, &description);
                    OAuthError::Refused {
                        url: url.clone(),
                        error: first_line(&e.error, 60),
                        description: if description.is_empty() {
                            String::new()
                        } else {
                            format!(": {description}")
                        },
                        hint: if hint.is_empty() {
                            String::new()
                        } else {
                            format!("; {hint}")
                        },
                    }
                }
                Err(_) => OAuthError::Protocol {
                    url: url.clone(),
                    detail: format!("HTTP {status} without an OAuth error object"),
                },
            });
        }
        let t: TokenResponse =
            serde_json::from_slice(&bytes).map_err(|e| OAuthError::Protocol {
                url: url.clone(),
                // serde's message names the field, not the value.
                detail: format!("not a token response: {e}"),
            })?;
        if t.access_token.is_empty() || t.access_token.bytes().any(|b| !(0x21..=0x7e).contains(&b))
        {
            return Err(OAuthError::Protocol {
                url: url.clone(),
                detail: "the access token is empty or not printable ASCII".into(),
            });
        }
        let lifetime = t
            .lifetime_seconds()
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_LIFETIME)
            .max(Duration::from_secs(10));
        Ok((AccessToken::new(t.access_token), lifetime))
    }
}

/// How long before expiry a token is replaced: a quarter of its lifetime, at
/// most 5 minutes (an hour's token at 55 minutes, a 2-minute one at 90 s).
fn refresh_margin(lifetime: Duration) -> Duration {
    (lifetime / MARGIN_FRACTION).min(MAX_MARGIN)
}

/// For `canvass status` in the daemon: how the OAuth 2.0 login stands, as a
/// text line and as JSON (`None` without OAuth 2.0).
pub fn login_status() -> Option<(String, serde_json::Value)> {
    let states = TokenSource::all_states();
    let state = states.first()?;
    let expires = state.expires_at.map(|t| t.to_rfc3339());
    let line = match (&state.last_error, &state.expires_at) {
        (Some(e), _) => format!("mail login: FAILING: {e}\n"),
        (None, Some(t)) => format!(
            "mail login: OAuth 2.0 token valid until {}\n",
            t.format("%Y-%m-%d %H:%M:%S UTC")
        ),
        (None, None) => "mail login: OAuth 2.0, no token yet\n".to_string(),
    };
    let json = serde_json::json!({
        "ok": state.last_error.is_none(),
        "error": state.last_error,
        "token_expires_at": expires,
    });
    Some((line, json))
}

fn first_line(s: &str, max: usize) -> String {
    s.lines()
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(max)
        .collect()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_replaced_well_before_they_expire() {
        let m = |s| refresh_margin(Duration::from_secs(s)).as_secs();
        assert_eq!(m(3599), 300);
        assert_eq!(m(5400), 300);
        assert_eq!(m(120), 30);
        assert_eq!(m(12), 3);
    }
}
