//! The pages a public agency must show besides the form (routes registered
//! in `web.rs`):
//!
//! - `GET /privatliv`: the privacy notice (GDPR art. 14) from `[privacy]`;
//! - `GET /u/<token>`: a page with one button; a mail scanner or link
//!   preview that follows the link opts nobody out;
//! - `POST /u/<token>` with `List-Unsubscribe=One-Click`: opts out (RFC 8058,
//!   as Gmail, Yahoo and Outlook.com send it, and the button does);
//! - `GET /proeve`: where the link of a `canvass send-test` mail leads.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use minijinja::context;

use crate::form::Lang;
use crate::store::OptOutOutcome;
use crate::web::{
    named, opted_out, page, request_lang, store_error, unknown_link, AppState, Notice,
};

pub(crate) async fn privacy(
    State(s): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let cfg = s.pipeline.config();
    let lang = request_lang(&cfg, query.as_deref(), &headers);
    named(
        &cfg,
        StatusCode::OK,
        "privacy.html",
        lang,
        match lang {
            Lang::En => "How we handle your information",
            Lang::Da => "Sådan behandler vi dine oplysninger",
        },
        context! { privacy => crate::compose::privacy_context(&cfg) },
    )
}

pub(crate) async fn test_page(State(s): State<AppState>) -> Response {
    let cfg = s.pipeline.config();
    named(
        &cfg,
        StatusCode::OK,
        "test_link.html",
        Lang::Da,
        "Prøve: linket virker",
        context! {},
    )
}

/// GET: the button, never the opt-out itself.
pub(crate) async fn unsubscribe_form(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(raw): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (_, inv) = match s.lookup(peer, &headers, &raw) {
        Ok(found) => found,
        Err(page) => return *page,
    };
    let cfg = s.pipeline.config();
    let lang = request_lang(&cfg, query.as_deref(), &headers);
    if inv.opted_out {
        return opted_out(&cfg, lang, StatusCode::OK, &raw);
    }
    named(
        &cfg,
        StatusCode::OK,
        "unsubscribe.html",
        lang,
        if lang == Lang::En {
            "Opt out of the survey"
        } else {
            "Meld fra til undersøgelsen"
        },
        context! { action => format!("/u/{raw}?lang={}", lang.code()) },
    )
}

/// Whether a POST body is RFC 8058's `List-Unsubscribe=One-Click` (form
/// encoded, or a multipart/form-data part of that name and value).
pub fn is_one_click(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    form_urlencoded::parse(body).any(|(k, v)| k == "List-Unsubscribe" && v == "One-Click")
        || (text.contains("name=\"List-Unsubscribe\"") && text.contains("One-Click"))
}

/// POST: opts out, answered by a page that says so (200, also when it was
/// done before, so a retrying mail provider sees success).
pub(crate) async fn unsubscribe(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(raw): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (token, _) = match s.lookup(peer, &headers, &raw) {
        Ok(found) => found,
        Err(page) => return *page,
    };
    let cfg = s.pipeline.config();
    let lang = request_lang(&cfg, query.as_deref(), &headers);
    if !is_one_click(&body) {
        return page(Some(&cfg), lang, Notice::UnsubscribeNotReceived);
    }
    match s.pipeline.store.opt_out_by_token(&token).await {
        Ok(OptOutOutcome::OptedOut) => {
            tracing::info!(target: "canvass::web", "one-click opt-out");
            opted_out(&cfg, lang, StatusCode::OK, &raw)
        }
        Ok(OptOutOutcome::AlreadyOptedOut) => opted_out(&cfg, lang, StatusCode::OK, &raw),
        Ok(OptOutOutcome::Unknown) => unknown_link(Some(&cfg)),
        Err(e) => store_error(&cfg, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_click_bodies() {
        assert!(is_one_click(b"List-Unsubscribe=One-Click"));
        assert!(is_one_click(
            b"--b\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--b--\r\n"
        ));
        assert!(!is_one_click(b""));
        assert!(!is_one_click(b"List-Unsubscribe=Maybe"));
    }
}
