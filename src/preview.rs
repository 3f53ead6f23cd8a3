//! `canvass preview invitation|reminder|confirmation|digest|form`: a text as
//! the configured templates (built-in or the agency's) render it, with
//! sample data, so the agency sees a change before anyone gets it.
//! `canvass send-test ADDRESS` sends the sample invitation for real
//! ([`crate::compose::test_invitation`]).

use chrono::{Duration, Utc};

use crate::compose::{self, ComposeError, ConfirmationFacts};
use crate::config::Config;
use crate::form::{self, FormLinks, Lang};
use crate::store::InviteOutcome;
use crate::token::Token;

/// What can be previewed.
pub const WHAT: [&str; 5] = ["invitation", "reminder", "confirmation", "digest", "form"];

/// A rendered preview: the plain text (what a terminal shows) and, for the
/// mails with an HTML part and the form, the HTML.
#[derive(Debug)]
pub struct Preview {
    pub text: String,
    pub html: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error(
        "cannot preview {0:?}: choose one of invitation, reminder, confirmation, digest, form"
    )]
    Unknown(String),
    #[error(transparent)]
    Compose(#[from] ComposeError),
    #[error("template error: {0}")]
    Template(#[from] minijinja::Error),
}

/// The sample invitee.
pub const SAMPLE_ADDRESS: &str = "modtager@eksempel.dk";

fn parts(raw: &[u8]) -> (String, Option<String>) {
    let Some(msg) = mail_parser::MessageParser::default().parse(raw) else {
        return (String::from_utf8_lossy(raw).into_owned(), None);
    };
    let mut text = String::new();
    for (name, value) in [
        (
            "From",
            msg.from().and_then(|a| a.first()).and_then(|a| a.address()),
        ),
        (
            "To",
            msg.to().and_then(|a| a.first()).and_then(|a| a.address()),
        ),
        ("Subject", msg.subject()),
    ] {
        text.push_str(&format!("{name}: {}\n", value.unwrap_or_default()));
    }
    for h in ["List-Unsubscribe", "List-Unsubscribe-Post"] {
        if let Some(v) = msg.header_raw(h) {
            text.push_str(&format!("{h}:{}\n", v.trim_end().replace("\r\n", "")));
        }
    }
    text.push('\n');
    text.push_str(msg.body_text(0).unwrap_or_default().trim_end());
    text.push('\n');
    let html = msg.body_html(0).map(|h| h.into_owned());
    (text, html)
}

/// Renders `what` with sample data.
pub fn preview(cfg: &Config, what: &str) -> Result<Preview, PreviewError> {
    let to = crate::address::parse(SAMPLE_ADDRESS).map_err(|e| {
        PreviewError::Compose(ComposeError::Address {
            address: SAMPLE_ADDRESS.to_string(),
            reason: e.to_string(),
        })
    })?;
    let now = Utc::now();
    let token = Token::generate();
    let (text, html) = match what {
        "invitation" => parts(&compose::invitation(cfg, &to, &token, now)?.raw),
        "reminder" => {
            parts(&compose::reminder(cfg, &to, &token, compose::new_message_id(cfg), now)?.raw)
        }
        "confirmation" => {
            let consultant = cfg
                .regions
                .iter()
                .flat_map(|r| r.consultants.first())
                .next()
                .cloned()
                .unwrap_or_else(|| cfg.survey_address.clone());
            let facts = ConfirmationFacts {
                consultant: Some(consultant),
                subject: Some("Telefonkontakter".to_string()),
                in_reply_to: None,
                skipped: vec![crate::compose::NotInvited {
                    address: "kollega@siri.dk".to_string(),
                    reason: crate::classify::SkipReason::InternalDomain.key(),
                    detail: None,
                }],
                invalid: vec![crate::classify::InvalidLine {
                    line: "ikke en adresse".to_string(),
                    error: "mangler @".to_string(),
                }],
                ..Default::default()
            };
            let outcomes = [InviteOutcome::Invited(to.clone())];
            match compose::confirmation(cfg, &facts, &outcomes, now)? {
                Some(m) => parts(&m.raw),
                None => (String::new(), None),
            }
        }
        "digest" => {
            let names = cfg.region_names();
            let mut counters = Vec::new();
            for (i, r) in names.iter().enumerate() {
                let invited = 20 + 7 * i as u64;
                for (name, v) in [
                    ("invited", invited),
                    ("sent", invited),
                    ("bounced", 1),
                    ("opted_out", (i % 2) as u64),
                    ("answered", invited / 2),
                    ("triggers", invited),
                ] {
                    counters.push((r.to_string(), name.to_string(), v));
                }
                let week = crate::store::counter::invited_week(now - Duration::days(7));
                counters.push((r.to_string(), week, invited));
            }
            let status = crate::analysis::status::compute(&names, &counters, 0);
            let today = now.with_timezone(&crate::window::TZ).date_naive();
            let d = crate::analysis::digest::compute(
                &status,
                &counters,
                None,
                &cfg.window,
                today,
                &[],
                false,
            );
            let (text, html) = crate::scheduler::digest_bodies(cfg, &d, None)
                .map_err(|e| PreviewError::Compose(ComposeError::Build(e.to_string())))?;
            (text, Some(html))
        }
        "form" => {
            let links = FormLinks {
                path: format!("/s/{}", token.as_str()),
                unsubscribe: format!("/u/{}", token.as_str()),
            };
            let html = form::render(cfg, Lang::Da, &links, None)?;
            (
                "The form is a web page: write it to a file with --html FILE and open that in a browser (its stylesheet is served by the daemon at /assets/form.css).\n".to_string(),
                Some(html),
            )
        }
        other => return Err(PreviewError::Unknown(other.to_string())),
    };
    Ok(Preview { text, html })
}
