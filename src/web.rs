//! The respondent-facing HTTP server (axum), inside the daemon.
//!
//! - `GET /s/<token>`: the survey form, or a polite page for every other state
//!   (already answered, opted out, closed, unknown link), each with its status;
//! - `POST /s/<token>`: validate; re-show with messages, or store the answer
//!   (one transaction, flushed) and thank;
//! - `/healthz` for the service manager, `/metrics` for Prometheus,
//!   `/assets/form.css`.
//!
//! Privacy: tokens are compared by hash and never logged; the request log
//! names the route pattern, never the path or the client's address; the
//! client's address is used only in memory, to rate-limit unknown links so
//! the token space cannot be walked. Bodies are limited in size.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::Utc;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::form::{self, Lang};
use crate::pipeline::Pipeline;
use crate::shutdown::Shutdown;
use crate::store::{Invitation, Link, StoredResponse, SubmitOutcome};
use crate::token::Token;

/// Largest accepted form body.
pub const MAX_BODY: usize = 64 * 1024;
/// Unknown links allowed per client address per [`MISS_WINDOW`].
pub const MAX_MISSES: u32 = 20;
pub const MISS_WINDOW: Duration = Duration::from_secs(600);

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) pipeline: Arc<Pipeline>,
    misses: Arc<Mutex<HashMap<IpAddr, (Instant, u32)>>>,
}

pub fn router(pipeline: Arc<Pipeline>) -> Router {
    let state = AppState {
        pipeline,
        misses: Arc::new(Mutex::new(HashMap::new())),
    };
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/assets/form.css", get(css))
        .route("/s/{token}", get(show).post(submit))
        .route(
            "/u/{token}",
            get(crate::web_pages::unsubscribe_form).post(crate::web_pages::unsubscribe),
        )
        .route(crate::compose::PRIVACY_PATH, get(crate::web_pages::privacy))
        .route(crate::compose::TEST_PATH, get(crate::web_pages::test_page))
        .fallback(fallback)
        .with_state(state)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(log_request))
        .layer(axum::middleware::map_response(security_headers))
}

/// Serves until shutdown; requests in flight are finished.
pub async fn run(
    listener: TcpListener,
    pipeline: Arc<Pipeline>,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(pipeline).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.wait().await })
    .await
}

/// While the store cannot be used (the disk is full; see `daemon.rs`): every
/// page, `/healthz` included, is 503 "Midlertidig fejl", so that nobody is
/// thanked for an answer that was not stored.
pub async fn run_unavailable(listener: TcpListener, shutdown: Shutdown) -> std::io::Result<()> {
    let app = Router::new()
        .fallback(unavailable)
        .layer(axum::middleware::map_response(security_headers));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await
}

async fn unavailable() -> Response {
    let mut r = page(
        None,
        StatusCode::SERVICE_UNAVAILABLE,
        "Midlertidig fejl",
        &["Spørgeskemaet kan ikke vises lige nu. Prøv igen om lidt – dine svar er ikke gemt endnu."],
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
    r
}

async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// Logs the route pattern and the status: never the path (it holds the
/// token) and never the client's address.
async fn log_request(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "(unmatched)".to_string());
    let method = req.method().clone();
    let res = next.run(req).await;
    tracing::debug!(target: "canvass::web", %method, route, status = res.status().as_u16(), "request");
    res
}

async fn healthz(State(s): State<AppState>) -> impl IntoResponse {
    match s.pipeline.store.invitation(0) {
        Ok(_) => (StatusCode::OK, "ok\n"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n"),
    }
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.pipeline.metrics.render(),
    )
}

async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        form::CSS,
    )
}

pub(crate) fn page(
    cfg: Option<&Config>,
    status: StatusCode,
    title: &str,
    paragraphs: &[&str],
) -> Response {
    (status, Html(form::render_page(cfg, title, paragraphs))).into_response()
}

/// One of the page templates (src/texts.rs) in `lang`.
pub(crate) fn named(
    cfg: &Config,
    status: StatusCode,
    name: &str,
    lang: Lang,
    title: &str,
    own: minijinja::Value,
) -> Response {
    (
        status,
        Html(form::render_named(Some(cfg), name, lang, title, own)),
    )
        .into_response()
}

/// The language of a form request: `?lang=` first, then the browser's
/// `Accept-Language`; Danish by default and when no English survey is set.
pub(crate) fn request_lang(
    cfg: &Config,
    query: Option<&str>,
    headers: &axum::http::HeaderMap,
) -> Lang {
    if cfg.survey_en.is_none() {
        return Lang::Da;
    }
    let asked = query.and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "lang")
            .and_then(|(_, v)| Lang::parse(&v))
    });
    asked
        .or_else(|| {
            headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .and_then(Lang::from_accept_language)
        })
        .unwrap_or(Lang::Da)
}

async fn fallback(State(s): State<AppState>) -> Response {
    page(
        Some(&s.pipeline.config()),
        StatusCode::NOT_FOUND,
        "Siden findes ikke",
        &["Adressen er ikke en side i spørgeskemaet."],
    )
}

pub(crate) fn unknown_link(cfg: Option<&Config>) -> Response {
    page(
        cfg,
        StatusCode::NOT_FOUND,
        "Linket findes ikke",
        &["Linket er ikke gyldigt. Kontrollér, at hele linket fra mailen er kommet med, hvis du har kopieret det."],
    )
}

fn too_many() -> Response {
    let mut r = page(
        None,
        StatusCode::TOO_MANY_REQUESTS,
        "For mange forsøg",
        &["Der er prøvet for mange ugyldige links fra din forbindelse. Prøv igen senere."],
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("600"));
    r
}

fn already_answered(cfg: &Config, lang: Lang, status: StatusCode) -> Response {
    named(
        cfg,
        status,
        "answered.html",
        lang,
        if lang == Lang::En {
            "Thank you – you have already answered"
        } else {
            "Tak – du har allerede svaret"
        },
        minijinja::context! {},
    )
}

/// The query that opens the form of an opted-out invitation.
const ANSWER_ANYWAY: &str = "svar=alligevel";

/// Whether the query asks to answer although opted out.
fn answer_anyway(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "svar" && v == "alligevel")
    })
}

/// An opt-out stops the mail, not the answer: a forged or regretted opt-out
/// is not final (issue 14), so the page offers the form anyway (`raw`: the
/// link's token as in the path).
pub(crate) fn opted_out(cfg: &Config, lang: Lang, status: StatusCode, raw: &str) -> Response {
    let answer_url = format!("/s/{raw}?{ANSWER_ANYWAY}&lang={}", lang.code());
    named(
        cfg,
        status,
        "opted_out.html",
        lang,
        if lang == Lang::En {
            "You have opted out"
        } else {
            "Du har frameldt dig"
        },
        minijinja::context! { answer_url => answer_url },
    )
}

fn forgotten(cfg: &Config) -> Response {
    named(
        cfg,
        StatusCode::GONE,
        "forgotten.html",
        Lang::Da,
        "Linket er ikke længere gyldigt",
        minijinja::context! {},
    )
}

fn withdrawn(cfg: &Config) -> Response {
    named(
        cfg,
        StatusCode::GONE,
        "withdrawn.html",
        Lang::Da,
        "Invitationen er trukket tilbage",
        minijinja::context! {},
    )
}

fn closed(cfg: &Config, lang: Lang) -> Response {
    let until = cfg.answers_until;
    let (title, when) = if lang == Lang::En {
        ("The survey is closed", crate::compose::english_date(until))
    } else {
        (
            "Undersøgelsen er lukket",
            crate::compose::danish_date(until),
        )
    };
    named(
        cfg,
        StatusCode::GONE,
        "closed.html",
        lang,
        title,
        minijinja::context! { until => when },
    )
}

pub(crate) fn store_error(e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "store error on a survey link");
    page(
        None,
        StatusCode::SERVICE_UNAVAILABLE,
        "Midlertidig fejl",
        &["Spørgeskemaet kan ikke vises lige nu. Prøv igen om lidt – dine svar er ikke gemt endnu."],
    )
}

fn thanks(cfg: &Config, lang: Lang) -> Response {
    named(
        cfg,
        StatusCode::OK,
        "thanks.html",
        lang,
        if lang == Lang::En {
            "Thank you for your answer"
        } else {
            "Tak for dit svar"
        },
        minijinja::context! {},
    )
}

impl AppState {
    fn blocked(&self, ip: IpAddr) -> bool {
        let misses = self.misses.lock().unwrap_or_else(|p| p.into_inner());
        matches!(misses.get(&ip), Some((since, n)) if since.elapsed() < MISS_WINDOW && *n >= MAX_MISSES)
    }

    fn missed(&self, ip: IpAddr) {
        let mut misses = self.misses.lock().unwrap_or_else(|p| p.into_inner());
        if misses.len() > 10_000 {
            misses.retain(|_, (since, _)| since.elapsed() < MISS_WINDOW);
        }
        let e = misses.entry(ip).or_insert((Instant::now(), 0));
        if e.0.elapsed() >= MISS_WINDOW {
            *e = (Instant::now(), 0);
        }
        e.1 += 1;
    }

    /// Resolves the link to an invitation, or the page to show instead.
    pub(crate) fn lookup(
        &self,
        ip: IpAddr,
        raw: &str,
    ) -> Result<(Token, Invitation), Box<Response>> {
        if self.blocked(ip) {
            return Err(Box::new(too_many()));
        }
        let found = match Token::from_url(raw) {
            Some(t) => match self.pipeline.store.link(&t.hash()) {
                Ok(Link::Invitation(inv)) => Some((t, *inv)),
                Ok(Link::Forgotten) => return Err(Box::new(forgotten(&self.pipeline.config()))),
                Ok(Link::Withdrawn) => return Err(Box::new(withdrawn(&self.pipeline.config()))),
                Ok(Link::Unknown) => None,
                Err(e) => return Err(Box::new(store_error(&e))),
            },
            None => None,
        };
        match found {
            Some(f) => Ok(f),
            None => {
                self.missed(ip);
                Err(Box::new(unknown_link(Some(&self.pipeline.config()))))
            }
        }
    }
}

fn today() -> chrono::NaiveDate {
    Utc::now().with_timezone(&crate::window::TZ).date_naive()
}

fn form_links(raw: &str) -> form::FormLinks {
    form::FormLinks {
        path: format!("/s/{raw}"),
        unsubscribe: format!("/u/{raw}"),
    }
}

async fn show(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(raw): Path<String>,
    RawQuery(query): RawQuery,
    headers: axum::http::HeaderMap,
) -> Response {
    let (_, inv) = match s.lookup(peer.ip(), &raw) {
        Ok(found) => found,
        Err(page) => return *page,
    };
    let cfg = s.pipeline.config();
    let lang = request_lang(&cfg, query.as_deref(), &headers);
    if inv.answered {
        return already_answered(&cfg, lang, StatusCode::OK);
    }
    if inv.opted_out && !answer_anyway(query.as_deref()) {
        return opted_out(&cfg, lang, StatusCode::OK, &raw);
    }
    if today() > cfg.answers_until {
        return closed(&cfg, lang);
    }
    match form::render(&cfg, lang, &form_links(&raw), None) {
        Ok(html) => Html(html).into_response(),
        Err(e) => store_error(&e),
    }
}

async fn submit(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(raw): Path<String>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    debug_assert_eq!(method, Method::POST);
    let (token, inv) = match s.lookup(peer.ip(), &raw) {
        Ok(found) => found,
        Err(page) => return *page,
    };
    let cfg = s.pipeline.config();
    let lang = request_lang(&cfg, query.as_deref(), &headers);
    if inv.answered {
        return already_answered(&cfg, lang, StatusCode::CONFLICT);
    }
    if today() > cfg.answers_until {
        return closed(&cfg, lang);
    }
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.starts_with("application/x-www-form-urlencoded"))
        .unwrap_or(false);
    if !is_form {
        return page(
            Some(&cfg),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Svaret kunne ikke læses",
            &["Svaret skal sendes fra formularen. Gå tilbage og prøv igen."],
        );
    }
    let fields: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let answers = match form::validate_in(&cfg.survey, &fields, lang) {
        Ok(a) => a,
        Err(invalid) => {
            return match form::render(&cfg, lang, &form_links(&raw), Some(&invalid)) {
                Ok(html) => (StatusCode::UNPROCESSABLE_ENTITY, Html(html)).into_response(),
                Err(e) => store_error(&e),
            }
        }
    };
    let response = StoredResponse {
        survey_id: cfg.survey.id.clone(),
        survey_version: cfg.survey.version,
        region: None,
        day: today(),
        answers,
    };
    match s
        .pipeline
        .store
        .submit_response(&token.hash(), response, cfg.region_on_answers)
        .await
    {
        Ok(SubmitOutcome::Stored) => {
            s.pipeline.metrics.answered();
            tracing::info!(target: "canvass::web", "answer stored");
            thanks(&cfg, lang)
        }
        Ok(SubmitOutcome::AlreadyAnswered) => already_answered(&cfg, lang, StatusCode::CONFLICT),
        Ok(SubmitOutcome::OptedOut) => opted_out(&cfg, lang, StatusCode::OK, &raw),
        Ok(SubmitOutcome::UnknownToken) => unknown_link(Some(&cfg)),
        Err(e) => store_error(&e),
    }
}

pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
