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
        let cached = inner.cached.as_ref().map(|c| (c.refresh, c.expires));
        match step(now, cached, inner.not_before) {
            Step::Serve | Step::ServeWhileBackingOff => {
                if let Some(c) = &inner.cached {
                    return Ok(c.token.clone());
                }
            }
            Step::Fail => {
                return Err(inner
                    .last_error
                    .clone()
                    .unwrap_or_else(|| OAuthError::Unreachable {
                        url: self.cfg.token_url.clone(),
                        detail: "backing off".into(),
                    }))
            }
            Step::Fetch => {}
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

/// What [`TokenSource::token`] does (pure): the callers hold the lock, so
/// at most one [`Step::Fetch`] is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The cached token is not yet due for replacement.
    Serve,
    /// Due for replacement, but the identity provider failed a moment ago:
    /// the still-valid token is served until the backoff has passed.
    ServeWhileBackingOff,
    /// No valid token, and backing off: the last error, no request.
    Fail,
    /// Ask the token endpoint.
    Fetch,
}

/// `cached`: when the cached token is due for replacement and when it
/// expires; `not_before`: no request before then (backoff).
fn step(now: Instant, cached: Option<(Instant, Instant)>, not_before: Option<Instant>) -> Step {
    if cached.is_some_and(|(refresh, _)| now < refresh) {
        return Step::Serve;
    }
    if not_before.is_some_and(|t| now < t) {
        if cached.is_some_and(|(_, expires)| now < expires) {
            return Step::ServeWhileBackingOff;
        }
        return Step::Fail;
    }
    Step::Fetch
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

    #[test]
    fn a_token_is_reused_then_replaced_and_served_while_the_provider_is_down() {
        let t0 = Instant::now();
        let s = |secs: u64| t0 + Duration::from_secs(secs);
        // An hour's token: replaced from 55 minutes on, expires at 60.
        let cached = Some((s(3300), s(3600)));
        assert_eq!(step(s(10), cached, None), Step::Serve);
        assert_eq!(step(s(3300), cached, None), Step::Fetch);
        // The endpoint failed at 55 min: no request during the backoff, the
        // still-valid token is served meanwhile; then it is asked again.
        assert_eq!(
            step(s(3301), cached, Some(s(3302))),
            Step::ServeWhileBackingOff
        );
        assert_eq!(step(s(3302), cached, Some(s(3302))), Step::Fetch);
        // Expired and backing off: the error, no request.
        assert_eq!(step(s(3600), cached, Some(s(3700))), Step::Fail);
        assert_eq!(step(s(0), None, Some(s(1))), Step::Fail);
        assert_eq!(step(s(1), None, Some(s(1))), Step::Fetch);
        assert_eq!(step(s(0), None, None), Step::Fetch);
    }

    /// A token endpoint answering `answer`, and a configuration using it.
    async fn endpoint(
        answer: impl Fn(usize) -> (u16, String) + Send + Sync + 'static,
    ) -> (
        tempfile::TempDir,
        crate::test_support::TokenEndpoint,
        OAuthConfig,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let idp = crate::test_support::token_endpoint(answer).await;
        let cfg = idp.config(
            dir.path(),
            "survey@example.org",
            super::super::Mechanism::Xoauth2,
        );
        (dir, idp, cfg)
    }

    #[tokio::test]
    async fn callers_at_once_cause_one_request_and_share_its_token() {
        let (_dir, idp, cfg) = endpoint(crate::test_support::token_number).await;
        let source = std::sync::Arc::new(TokenSource::new(cfg).expect("source"));
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let source = source.clone();
                tokio::spawn(async move { source.token().await })
            })
            .collect();
        for c in calls {
            let t = c.await.expect("task").expect("a token");
            assert_eq!(t.expose(), "tok-1");
        }
        assert_eq!(idp.requests(), 1, "one request in flight, then the cache");
        assert!(source.state().expires_at.is_some());
        // A refused token is dropped: the next caller asks again.
        source.rejected(&AccessToken::new("tok-1".into())).await;
        assert_eq!(source.token().await.expect("a token").expose(), "tok-2");
        assert_eq!(idp.requests(), 2);
    }

    #[tokio::test]
    async fn imap_and_smtp_share_one_source_per_configuration() {
        let (_dir, idp, cfg) = endpoint(crate::test_support::token_number).await;
        let imap = TokenSource::shared(&cfg).expect("source");
        let smtp = TokenSource::shared(&cfg).expect("source");
        assert!(std::sync::Arc::ptr_eq(&imap, &smtp));
        imap.token().await.expect("a token");
        assert_eq!(smtp.token().await.expect("a token").expose(), "tok-1");
        assert_eq!(idp.requests(), 1);
        let mut other = cfg.clone();
        other.login = "other@example.org".into();
        let other = TokenSource::shared(&other).expect("source");
        assert!(!std::sync::Arc::ptr_eq(&imap, &other));
    }

    #[tokio::test]
    async fn a_failing_provider_is_not_asked_again_during_the_backoff() {
        let (_dir, idp, cfg) = endpoint(|n| match n {
            1 => (503, "{}".into()),
            2 => (
                400,
                r#"{"error":"invalid_client","error_description":"unknown client"}"#.into(),
            ),
            n => crate::test_support::token_number(n),
        })
        .await;
        let source = TokenSource::new(cfg).expect("source");
        let e = source.token().await.expect_err("503");
        assert!(e.is_transient(), "{e}");
        // At once again: the backoff holds the request back.
        let again = source.token().await.expect_err("backing off");
        assert_eq!(again.to_string(), e.to_string());
        assert_eq!(idp.requests(), 1);
        assert!(source.state().last_error.is_some());
        // Once the backoff has passed: asked again; a refusal carries the
        // provider's code and words, never the secret.
        let refused = loop {
            match source.token().await {
                Err(e) if idp.requests() >= 2 => break e,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                Ok(_) => panic!("the second answer is a refusal"),
            }
        };
        let text = refused.to_string();
        assert!(!refused.is_transient());
        assert!(text.contains("invalid_client: unknown client"), "{text}");
        assert!(!text.contains("unit-test-client-secret"), "{text}");
        assert!(!format!("{refused:?}").contains("unit-test-client-secret"));
        assert_eq!(source.state().last_error.as_deref(), Some(text.as_str()));
        // Then it recovers, and the state says so.
        let t = loop {
            match source.token().await {
                Ok(t) => break t,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        assert_eq!(t.expose(), "tok-3");
        assert_eq!(source.state().last_error, None);
    }
}
