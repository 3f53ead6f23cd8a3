//! The respondent-facing HTTP server (axum on hyper), inside the daemon.
//!
//! - `GET /s/<token>`: the survey form, or a polite page for every other state
//!   (already answered, opted out, closed, unknown link), each with its status;
//! - `POST /s/<token>`: validate; re-show with messages, or store the answer
//!   (one transaction, flushed) and thank;
//! - `/healthz` for the service manager, `/assets/form.css`;
//! - `/metrics` for Prometheus only on its own listener (`[web] metrics_bind`,
//!   loopback by default), never on the form's.
//!
//! Abuse: the accept loop ([`serve`]) is ours, not `axum::serve`, so that the
//! request head has a deadline (also the idle time of a kept-alive or silent
//! connection), the body has one, and at most `max_connections` are served at
//! once (more wait in the kernel's backlog, holding no descriptor of ours).
//! A valid link is looked up first and never rate-limited; unknown links are
//! counted per client ([`crate::client_ip`]: behind `trusted_proxies`, per /64
//! for IPv6) and under a global ceiling.
//!
//! Privacy: tokens are compared by hash and never logged; the request log
//! names the route pattern, never the path or the client's address; the
//! client's address is used only in memory, to rate-limit unknown links so
//! the token space cannot be walked. Bodies are limited in size.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::Utc;
use tokio::net::TcpListener;

use crate::config::{Config, WebSettings};
use crate::form::{self, Lang};
use crate::pipeline::Pipeline;
use crate::shutdown::Shutdown;
use crate::store::{Invitation, Link, StoredResponse, SubmitOutcome};
use crate::token::Token;

/// Largest accepted form body.
pub const MAX_BODY: usize = 64 * 1024;
/// Unknown links allowed per client (IPv4 address or IPv6 /64) per [`MISS_WINDOW`].
pub const MAX_MISSES: u32 = 20;
/// Unknown links allowed from everybody together per [`MISS_WINDOW`]; past
/// it every unknown link is answered 429 (valid links are not affected).
pub const MAX_MISSES_GLOBAL: u32 = 2_000;
pub const MISS_WINDOW: Duration = Duration::from_secs(600);

/// Unknown links counted per client key and for everybody, per [`MISS_WINDOW`].
#[derive(Default)]
struct Misses {
    per_client: HashMap<IpAddr, (Instant, u32)>,
    global: Option<(Instant, u32)>,
}

impl Misses {
    /// Counts an unknown link from `key` (a [`crate::client_ip::limit_key`])
    /// at `now`; true when it is over its own limit or everybody's together.
    /// Memory stays bounded whatever the number of addresses an attacker
    /// rotates through: past the global ceiling every unknown link is over
    /// anyway, so no client is added then, and expired entries are dropped
    /// once there are many.
    fn miss(&mut self, key: IpAddr, now: Instant) -> bool {
        let bump = |e: &mut (Instant, u32)| {
            if now.saturating_duration_since(e.0) >= MISS_WINDOW {
                *e = (now, 0);
            }
            e.1 = e.1.saturating_add(1);
            e.1
        };
        if bump(self.global.get_or_insert((now, 0))) > MAX_MISSES_GLOBAL {
            return true;
        }
        if self.per_client.len() > 10_000 {
            self.per_client
                .retain(|_, (since, _)| now.saturating_duration_since(*since) < MISS_WINDOW);
        }
        bump(self.per_client.entry(key).or_insert((now, 0))) > MAX_MISSES
    }
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) pipeline: Arc<Pipeline>,
    misses: Arc<Mutex<Misses>>,
    thanks: Arc<Mutex<ThanksPages>>,
}

/// The thank-you page, rendered once per configuration and language: it
/// holds nothing of the request or the answer, and rendering it on every
/// stored answer was a tenth of the daemon's CPU per POST (BENCHMARKS.md,
/// target 4d). A reload (SIGHUP) brings a new `Config`, and the pages are
/// rendered again from it.
#[derive(Default)]
struct ThanksPages {
    /// The configuration they were rendered from, and the Danish and English page.
    from: Option<Arc<Config>>,
    pages: [Option<Arc<str>>; 2],
}

impl ThanksPages {
    fn get(&mut self, cfg: &Arc<Config>, lang: Lang) -> Arc<str> {
        if !self.from.as_ref().is_some_and(|c| Arc::ptr_eq(c, cfg)) {
            *self = ThanksPages {
                from: Some(cfg.clone()),
                pages: [None, None],
            };
        }
        let slot = &mut self.pages[usize::from(lang == Lang::En)];
        slot.get_or_insert_with(|| {
            let title = if lang == Lang::En {
                "Thank you for your answer"
            } else {
                "Tak for dit svar"
            };
            form::render_named(
                Some(cfg),
                "thanks.html",
                lang,
                title,
                minijinja::context! {},
            )
            .into()
        })
        .clone()
    }
}

pub fn router(pipeline: Arc<Pipeline>) -> Router {
    let pages = PageConfig::Pipeline(pipeline.clone());
    let state = AppState {
        pipeline: pipeline.clone(),
        misses: Arc::default(),
        thanks: Arc::default(),
    };
    Router::new()
        .route("/healthz", get(healthz))
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
        .layer(axum::middleware::from_fn_with_state(pages, read_body))
        .layer(axum::middleware::from_fn(log_request))
        .layer(axum::middleware::map_response(security_headers))
}

/// Serves the form until shutdown; requests in flight are finished.
pub async fn run(
    listener: TcpListener,
    pipeline: Arc<Pipeline>,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let limits = pipeline.config().web.clone();
    serve(listener, router(pipeline), &limits, shutdown).await
}

/// Serves `/metrics` (and `/healthz`) on the metrics listener (TCP or a
/// Unix socket) until shutdown.
pub async fn run_metrics<L: Accept>(
    listener: L,
    pipeline: Arc<Pipeline>,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let limits = pipeline.config().web.clone();
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(AppState {
            pipeline,
            misses: Arc::default(),
            thanks: Arc::default(),
        });
    serve(listener, app, &limits, shutdown).await
}

/// While the store cannot be used (the disk is full; see `daemon.rs`): every
/// page, `/healthz` included, is 503 "Midlertidig fejl", so that nobody is
/// thanked for an answer that was not stored.
pub async fn run_unavailable(
    listener: TcpListener,
    cfg: Arc<Config>,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let limits = cfg.web.clone();
    let app = Router::new()
        .fallback(unavailable)
        .with_state(cfg.clone())
        .layer(axum::middleware::from_fn_with_state(
            PageConfig::Fixed(cfg),
            read_body,
        ))
        .layer(axum::middleware::map_response(security_headers));
    serve(listener, app, &limits, shutdown).await
}

/// The accept loop: HTTP/1.1 with a header-read deadline (hyper starts it
/// when the connection opens and again whenever it waits for the next
/// request, so it bounds slow heads, idle keep-alives and silent connections
/// alike) and at most `max_connections` at once. At shutdown it stops
/// accepting, lets requests in flight finish and closes idle connections.
pub async fn serve<L: Accept>(
    listener: L,
    app: Router,
    limits: &WebSettings,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower_service::Service;

    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(64 * 1024);
    let mut refused = crate::backoff::Outage::new("web accept");
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.wait() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors (EMFILE) and the like: wait a
                    // little rather than spin; the mail loops go on.
                    refused.failed(&e);
                    if shutdown.sleep(Duration::from_millis(100)).await {
                        break;
                    }
                    continue;
                }
            },
            _ = shutdown.wait() => break,
        };
        refused.ok();
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let mut app = app.clone();
            async move { app.call(req.map(Body::new)).await }
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(target: "canvass::web", error = %e, "connection closed");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// What [`serve`] accepts connections from: TCP (the form, metrics) or a
/// Unix socket (metrics). A Unix peer has no address: it is given as
/// 0.0.0.0:0 (only the form's limits look at addresses).
pub trait Accept: Send + 'static {
    type Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static;
    fn accept(
        &self,
    ) -> impl std::future::Future<Output = std::io::Result<(Self::Io, SocketAddr)>> + Send;
}

impl Accept for TcpListener {
    type Io = tokio::net::TcpStream;
    async fn accept(&self) -> std::io::Result<(Self::Io, SocketAddr)> {
        let (s, peer) = TcpListener::accept(self).await?;
        let _ = s.set_nodelay(true);
        Ok((s, peer))
    }
}

impl Accept for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    async fn accept(&self) -> std::io::Result<(Self::Io, SocketAddr)> {
        let (s, _) = tokio::net::UnixListener::accept(self).await?;
        Ok((s, SocketAddr::from(([0, 0, 0, 0], 0))))
    }
}

/// Reads the whole body before any handler runs, within `body_timeout` and
/// [`MAX_BODY`]: a slow or endless body is cut off with 408 / 413 and the
/// connection closed.
async fn read_body(State(pages): State<PageConfig>, req: Request, next: Next) -> Response {
    // The config in force: a reload's `body_timeout` applies from the next
    // request on.
    let cfg = pages.current();
    let deadline = cfg.web.body_timeout;
    let (parts, body) = req.into_parts();
    match tokio::time::timeout(deadline, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(_)) => closing(page(Some(&cfg), Lang::Da, Notice::TooLarge)),
        Err(_) => closing(page(Some(&cfg), Lang::Da, Notice::TooSlow)),
    }
}

fn closing(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

async fn unavailable(State(cfg): State<Arc<Config>>) -> Response {
    page(Some(&cfg), Lang::Da, Notice::Unavailable)
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

/// The status pages (`error.html`, one `kind` each): what went wrong and
/// what to do, in the agency's words when it has its own template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Notice {
    NotFound,
    UnknownLink,
    TooMany,
    Unavailable,
    TooLarge,
    TooSlow,
    Unreadable,
    UnsubscribeNotReceived,
}

impl Notice {
    /// Every kind, for the templates' checks.
    #[cfg(test)]
    pub(crate) const ALL: [Notice; 8] = [
        Notice::NotFound,
        Notice::UnknownLink,
        Notice::TooMany,
        Notice::Unavailable,
        Notice::TooLarge,
        Notice::TooSlow,
        Notice::Unreadable,
        Notice::UnsubscribeNotReceived,
    ];

    /// The `kind` the template gets.
    pub(crate) fn kind(self) -> &'static str {
        match self {
            Notice::NotFound => "not_found",
            Notice::UnknownLink => "unknown_link",
            Notice::TooMany => "too_many",
            Notice::Unavailable => "unavailable",
            Notice::TooLarge => "too_large",
            Notice::TooSlow => "too_slow",
            Notice::Unreadable => "unreadable",
            Notice::UnsubscribeNotReceived => "unsubscribe_not_received",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Notice::NotFound | Notice::UnknownLink => StatusCode::NOT_FOUND,
            Notice::TooMany => StatusCode::TOO_MANY_REQUESTS,
            Notice::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Notice::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Notice::TooSlow => StatusCode::REQUEST_TIMEOUT,
            Notice::Unreadable => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Notice::UnsubscribeNotReceived => StatusCode::BAD_REQUEST,
        }
    }

    /// When to come back, for the pages that say "later".
    fn retry_after(self) -> Option<&'static str> {
        match self {
            Notice::TooMany => Some("600"),
            Notice::Unavailable => Some("60"),
            _ => None,
        }
    }
}

/// Where the body-reading middleware finds the config in force (its
/// `body_timeout`, the agency's texts for its status pages): the pipeline's,
/// or the one the daemon started with while the store is unavailable.
#[derive(Clone)]
pub(crate) enum PageConfig {
    Pipeline(Arc<Pipeline>),
    Fixed(Arc<Config>),
}

impl PageConfig {
    fn current(&self) -> Arc<Config> {
        match self {
            PageConfig::Pipeline(p) => p.config(),
            PageConfig::Fixed(c) => c.clone(),
        }
    }
}

pub(crate) fn page(cfg: Option<&Config>, lang: Lang, notice: Notice) -> Response {
    let status = notice.status();
    let fallback = status.canonical_reason().unwrap_or("Fejl");
    let html = form::render_notice(cfg, lang, notice.kind(), fallback);
    let mut r = (status, Html(html)).into_response();
    if let Some(secs) = notice.retry_after() {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static(secs));
    }
    r
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
    page(Some(&s.pipeline.config()), Lang::Da, Notice::NotFound)
}

pub(crate) fn unknown_link(cfg: Option<&Config>) -> Response {
    page(cfg, Lang::Da, Notice::UnknownLink)
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

pub(crate) fn store_error(cfg: &Config, e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "store error on a survey link");
    page(Some(cfg), Lang::Da, Notice::Unavailable)
}

fn thanks(s: &AppState, cfg: &Arc<Config>, lang: Lang) -> Response {
    let page = match s.thanks.lock() {
        Ok(mut pages) => pages.get(cfg, lang),
        Err(poisoned) => poisoned.into_inner().get(cfg, lang),
    };
    (StatusCode::OK, Html(page.to_string())).into_response()
}

impl AppState {
    /// Counts an unknown link from `client`; true when it is over its own
    /// limit or everybody's together.
    fn missed(&self, client: IpAddr) -> bool {
        let key = crate::client_ip::limit_key(client);
        self.misses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .miss(key, Instant::now())
    }

    /// Resolves the link to an invitation, or the page to show instead. A
    /// valid link is found before any limit is looked at: nobody else's
    /// guessing can lock a respondent out.
    pub(crate) fn lookup(
        &self,
        peer: SocketAddr,
        headers: &axum::http::HeaderMap,
        raw: &str,
    ) -> Result<(Token, Invitation), Box<Response>> {
        if let Some(t) = Token::from_url(raw) {
            match self.pipeline.store.link(&t) {
                Ok(Link::Invitation(inv)) => return Ok((t, *inv)),
                Ok(Link::Forgotten) => return Err(Box::new(forgotten(&self.pipeline.config()))),
                Ok(Link::Withdrawn) => return Err(Box::new(withdrawn(&self.pipeline.config()))),
                Ok(Link::Unknown) => {}
                Err(e) => return Err(Box::new(store_error(&self.pipeline.config(), &e))),
            }
        }
        let trusted = &self.pipeline.config().web.trusted_proxies;
        let client = crate::client_ip::client_address(peer.ip(), headers, trusted);
        if self.missed(client) {
            Err(Box::new(page(
                Some(&self.pipeline.config()),
                Lang::Da,
                Notice::TooMany,
            )))
        } else {
            Err(Box::new(unknown_link(Some(&self.pipeline.config()))))
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
    let (_, inv) = match s.lookup(peer, &headers, &raw) {
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
        Err(e) => store_error(&cfg, &e),
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
    let (token, inv) = match s.lookup(peer, &headers, &raw) {
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
    if !is_form_media_type(headers.get(header::CONTENT_TYPE)) {
        return page(Some(&cfg), lang, Notice::Unreadable);
    }
    let fields: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let answers = match form::validate(&cfg.survey, &fields) {
        Ok(a) => a,
        Err(invalid) => {
            return match form::render(&cfg, lang, &form_links(&raw), Some(&invalid)) {
                Ok(html) => (StatusCode::UNPROCESSABLE_ENTITY, Html(html)).into_response(),
                Err(e) => store_error(&cfg, &e),
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
        .submit_response(&token, response, cfg.region_on_answers)
        .await
    {
        Ok(SubmitOutcome::Stored) => {
            tracing::info!(target: "canvass::web", "answer stored");
            thanks(&s, &cfg, lang)
        }
        Ok(SubmitOutcome::AlreadyAnswered) => already_answered(&cfg, lang, StatusCode::CONFLICT),
        Ok(SubmitOutcome::OptedOut) => opted_out(&cfg, lang, StatusCode::OK, &raw),
        Ok(SubmitOutcome::UnknownToken) => unknown_link(Some(&cfg)),
        Err(e) => store_error(&cfg, &e),
    }
}

/// Exactly `application/x-www-form-urlencoded`, in any case, with or
/// without parameters (`; charset=UTF-8`): not a longer type that merely
/// starts with it.
pub fn is_form_media_type(v: Option<&HeaderValue>) -> bool {
    let Some(v) = v.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = v.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/x-www-form-urlencoded")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The thank-you page is rendered once per configuration and language,
    /// the same bytes as rendering it each time, and again for a new
    /// configuration (a reload).
    #[test]
    fn the_thank_you_page_is_rendered_once_per_configuration_and_language() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::test_support::demo_pipeline(dir.path(), "").config();
        let mut pages = ThanksPages::default();
        let da = pages.get(&cfg, Lang::Da);
        let fresh = form::render_named(
            Some(&cfg),
            "thanks.html",
            Lang::Da,
            "Tak for dit svar",
            minijinja::context! {},
        );
        assert_eq!(&*da, fresh.as_str());
        assert!(da.contains("lang=\"da\""), "{da}");
        assert!(
            Arc::ptr_eq(&da, &pages.get(&cfg, Lang::Da)),
            "not rendered again"
        );
        let en = pages.get(&cfg, Lang::En);
        assert!(en.contains("Thank you for your answer"), "{en}");
        let reloaded = Arc::new((*cfg).clone());
        let again = pages.get(&reloaded, Lang::Da);
        assert!(
            !Arc::ptr_eq(&da, &again),
            "a new configuration renders anew"
        );
        assert_eq!(da, again);
    }

    /// Per client (a /64 for IPv6) and for everybody; an attacker rotating
    /// through addresses past the global ceiling adds no entries.
    #[test]
    fn unknown_links_are_counted_per_client_under_a_bounded_ceiling() {
        let mut m = Misses::default();
        let t = Instant::now();
        let ip = |i: u32| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        assert!((0..MAX_MISSES).all(|_| !m.miss(ip(1), t)));
        assert!(m.miss(ip(1), t), "the guesser is over its own limit");
        assert!(!m.miss(ip(2), t), "another client is not");
        assert!(!m.miss(ip(1), t + MISS_WINDOW), "a new window");
        let mut m = Misses::default();
        let over: Vec<bool> = (0..MAX_MISSES_GLOBAL + 5_000)
            .map(|i| m.miss(ip(i), t))
            .collect();
        assert!(over[..MAX_MISSES_GLOBAL as usize].iter().all(|o| !o));
        assert!(over[MAX_MISSES_GLOBAL as usize..].iter().all(|o| *o));
        assert_eq!(m.per_client.len(), MAX_MISSES_GLOBAL as usize);
        assert!(
            !m.miss(ip(7), t + MISS_WINDOW),
            "everybody's window ends too"
        );
    }

    /// Every status page has its heading and its sentence, in both languages.
    #[test]
    fn every_notice_has_its_own_words() {
        let mut seen = std::collections::BTreeSet::new();
        for lang in [Lang::Da, Lang::En] {
            for n in Notice::ALL {
                let html = form::render_notice(None, lang, n.kind(), "fallback");
                let h1 = html
                    .split("<h1>")
                    .nth(1)
                    .and_then(|r| r.split("</h1>").next())
                    .unwrap_or_else(|| panic!("{n:?} {lang:?}: no heading in {html}"));
                assert!(!h1.is_empty() && h1 != "fallback", "{n:?} {lang:?}: {html}");
                assert!(html.contains(&format!("<title>{h1}</title>")), "{html}");
                assert!(seen.insert(h1.to_string()), "{h1} twice");
            }
        }
    }
}
