//! The respondent-facing HTTP server (axum), inside the daemon: the personal
//! link `/s/<token>` and `/healthz` for the service manager.
//!
//! Tokens are looked up by hash and never logged; the request log carries
//! neither the path's token nor the client's address.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::pipeline::Pipeline;
use crate::shutdown::Shutdown;
use crate::token::Token;

pub fn router(pipeline: Arc<Pipeline>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/s/{token}", get(survey))
        .with_state(pipeline)
        .layer(axum::middleware::map_response(security_headers))
}

/// Serves until shutdown; requests in flight are finished.
pub async fn run(
    listener: TcpListener,
    pipeline: Arc<Pipeline>,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    axum::serve(listener, router(pipeline))
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await
}

async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
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
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

async fn healthz(State(p): State<Arc<Pipeline>>) -> impl IntoResponse {
    // The store answers: we are alive and can serve links.
    match p.store.invitation(0) {
        Ok(_) => (StatusCode::OK, "ok\n"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n"),
    }
}

async fn metrics(State(p): State<Arc<Pipeline>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        p.metrics.render(),
    )
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"da\">\n<head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title}</title></head>\n<body style=\"font-family: Arial, Helvetica, sans-serif; max-width: 40em; margin: 2em auto; padding: 0 1em; line-height: 1.5; color: #1a1a1a;\">\n<main><h1>{title}</h1>\n{body}\n</main></body></html>\n"
    );
    (status, Html(html)).into_response()
}

async fn survey(State(p): State<Arc<Pipeline>>, Path(token): Path<String>) -> Response {
    let Some(token) = Token::from_url(&token) else {
        return not_found();
    };
    match p.store.invitation_by_token(&token.hash()) {
        Ok(Some(inv)) if inv.answered => page(
            StatusCode::OK,
            "Tak for dit svar",
            "<p>Du har allerede besvaret spørgeskemaet. Tak for hjælpen.</p>",
        ),
        Ok(Some(_)) => {
            let cfg = p.config();
            page(
                StatusCode::OK,
                &html_escape(&cfg.survey.title),
                &format!("<p>{}</p>", html_escape(&cfg.survey.intro)),
            )
        }
        Ok(None) => not_found(),
        Err(e) => {
            tracing::error!(error = %e, "store error on a survey link");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Midlertidig fejl",
                "<p>Spørgeskemaet kan ikke vises lige nu. Prøv igen om lidt.</p>",
            )
        }
    }
}

fn not_found() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Linket findes ikke",
        "<p>Linket er ikke gyldigt. Kontrollér, at hele linket fra mailen er kopieret med.</p>",
    )
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
