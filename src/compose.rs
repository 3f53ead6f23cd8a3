//! The mail canvass writes, rendered to RFC 5322 bytes for the outbox: the
//! Danish invitation (plain text beside HTML) and the confirmation reply to a
//! consultant's phone-contact mail. Every message carries a Message-ID of
//! canvass' own shape and `Auto-Submitted: auto-generated` (RFC 3834).

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::Message;
use minijinja::{context, Environment};
use rand::RngCore;

use crate::address::Address;
use crate::classify::{InvalidLine, MESSAGE_ID_PREFIX};
use crate::config::Config;
use crate::store::{InviteOutcome, Outgoing};
use crate::token::Token;

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("{address} cannot be written into a mail header: {reason}")]
    Address { address: String, reason: String },
    #[error("cannot build the message: {0}")]
    Build(String),
    #[error("template error: {0}")]
    Template(#[from] minijinja::Error),
}

/// The mail templates, parsed once.
fn templates() -> &'static Environment<'static> {
    static ENV: std::sync::OnceLock<Environment<'static>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // Names ending in .html are auto-escaped.
        for (name, src) in [
            ("invitation.txt", include_str!("templates/invitation.txt")),
            ("invitation.html", include_str!("templates/invitation.html")),
            (
                "confirmation.txt",
                include_str!("templates/confirmation.txt"),
            ),
            ("reminder.txt", include_str!("templates/reminder.txt")),
        ] {
            env.add_template(name, src)
                .unwrap_or_else(|e| unreachable!("built-in template {name} is invalid: {e}"));
        }
        env
    })
}

/// A fresh Message-ID (without angle brackets) in canvass' own shape.
pub fn new_message_id(cfg: &Config) -> String {
    let mut b = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!(
        "{MESSAGE_ID_PREFIX}{}@{}",
        hex::encode(b),
        cfg.survey_address.domain()
    )
}

/// The personal link in an invitation.
pub fn survey_link(cfg: &Config, token: &Token) -> String {
    format!("{}/s/{}", cfg.base_url, token.as_str())
}

const MONTHS: [&str; 12] = [
    "januar",
    "februar",
    "marts",
    "april",
    "maj",
    "juni",
    "juli",
    "august",
    "september",
    "oktober",
    "november",
    "december",
];

/// "20. september 2024".
pub fn danish_date(d: NaiveDate) -> String {
    format!("{}. {} {}", d.day(), MONTHS[d.month0() as usize], d.year())
}

fn mailbox(name: Option<&str>, addr: &str) -> Result<Mailbox, ComposeError> {
    let parsed =
        addr.parse()
            .map_err(|e: lettre::address::AddressError| ComposeError::Address {
                address: addr.to_string(),
                reason: e.to_string(),
            })?;
    Ok(Mailbox::new(name.map(str::to_string), parsed))
}

fn raw_header(name: &'static str, value: String) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value)
}

fn base(
    cfg: &Config,
    to: &Mailbox,
    subject: &str,
    message_id: &str,
) -> Result<lettre::message::MessageBuilder, ComposeError> {
    let from = mailbox(Some(&cfg.from_name), cfg.survey_address.as_str())?;
    let mut b = Message::builder()
        .from(from)
        .to(to.clone())
        .subject(subject)
        .message_id(Some(format!("<{message_id}>")))
        .date_now()
        .raw_header(raw_header("Auto-Submitted", "auto-generated".to_string()))
        .raw_header(raw_header("X-Auto-Response-Suppress", "All".to_string()));
    if let Some(r) = &cfg.reply_to {
        b = b.reply_to(mailbox(None, r.as_str())?);
    }
    Ok(b)
}

/// The invitation to `to`, with its personal link.
pub fn invitation(
    cfg: &Config,
    to: &Address,
    token: &Token,
    not_before: DateTime<Utc>,
) -> Result<Outgoing, ComposeError> {
    invitation_with_id(cfg, to, token, new_message_id(cfg), not_before)
}

/// An invitation queued without its body: what [`invitation`] would give,
/// with `raw` empty, checked to render (the address fits a header). The
/// outbox renders it when it sends it ([`invitation_with_id`], the same
/// Message-ID), so the body is never written to the store: it was most of
/// the bytes an invitation cost the store (BENCHMARKS.md, target 5).
pub fn deferred_invitation(
    cfg: &Config,
    to: &Address,
    not_before: DateTime<Utc>,
) -> Result<Outgoing, ComposeError> {
    mailbox(None, to.as_str())?;
    Ok(Outgoing {
        from: cfg.survey_address.to_string(),
        to: vec![to.to_string()],
        message_id: new_message_id(cfg),
        raw: Vec::new(),
        not_before,
    })
}

/// The invitation to `to` under a given Message-ID (a queued invitation
/// rendered when sent, and again, identical but for its Date, if resent).
pub fn invitation_with_id(
    cfg: &Config,
    to: &Address,
    token: &Token,
    message_id: String,
    not_before: DateTime<Utc>,
) -> Result<Outgoing, ComposeError> {
    let subject = format!(
        "Hvad synes du om {}s sikkerhedskonsulentordning?",
        cfg.agency
    );
    let env = templates();
    let ctx = context! {
        agency => cfg.agency,
        link => survey_link(cfg, token),
        deadline => danish_date(cfg.window.end),
        from_name => cfg.from_name,
        subject => subject,
    };
    let text = env.get_template("invitation.txt")?.render(&ctx)?;
    let html = env.get_template("invitation.html")?.render(&ctx)?;
    let to_box = mailbox(None, to.as_str())?;
    let unsubscribe = unsubscribe_mailto(cfg, &message_id);
    let msg = base(cfg, &to_box, &subject, &message_id)?
        .raw_header(raw_header("List-Unsubscribe", unsubscribe))
        .multipart(MultiPart::alternative_plain_html(text, html))
        .map_err(|e| ComposeError::Build(e.to_string()))?;
    Ok(Outgoing {
        from: cfg.survey_address.to_string(),
        to: vec![to.to_string()],
        message_id,
        raw: msg.formatted(),
        not_before,
    })
}

/// The List-Unsubscribe mailto: subject "afmeld" and the mail's own
/// Message-ID, which proves the opt-out is about this invitation (issue 14:
/// a bare "afmeld" From the invitee may be forged).
fn unsubscribe_mailto(cfg: &Config, message_id: &str) -> String {
    format!(
        "<mailto:{}?subject={}%20{}>",
        cfg.survey_address,
        crate::classify::UNSUBSCRIBE_SUBJECT,
        message_id.replace('@', "%40")
    )
}

/// A reminder with the same personal link (plain text: it is short).
pub fn reminder(
    cfg: &Config,
    to: &Address,
    token: &Token,
    not_before: DateTime<Utc>,
) -> Result<Outgoing, ComposeError> {
    let message_id = new_message_id(cfg);
    let subject = format!(
        "Påmindelse: hvad synes du om {}s sikkerhedskonsulentordning?",
        cfg.agency
    );
    let text = templates().get_template("reminder.txt")?.render(context! {
        agency => cfg.agency,
        link => survey_link(cfg, token),
        deadline => danish_date(cfg.answers_until.min(cfg.window.end)),
        from_name => cfg.from_name,
    })?;
    let to_box = mailbox(None, to.as_str())?;
    let unsubscribe = unsubscribe_mailto(cfg, &message_id);
    let msg = base(cfg, &to_box, &subject, &message_id)?
        .raw_header(raw_header("List-Unsubscribe", unsubscribe))
        .singlepart(SinglePart::plain(text))
        .map_err(|e| ComposeError::Build(e.to_string()))?;
    Ok(Outgoing {
        from: cfg.survey_address.to_string(),
        to: vec![to.to_string()],
        message_id,
        raw: msg.formatted(),
        not_before,
    })
}

/// The managers' digest: plain text beside HTML that shows the chart inline
/// (a `cid:` image in multipart/related, so nothing is loaded from elsewhere).
pub fn digest(
    cfg: &Config,
    to: &Address,
    subject: &str,
    text: String,
    html: String,
    chart_png: Option<Vec<u8>>,
    now: DateTime<Utc>,
) -> Result<Outgoing, ComposeError> {
    use lettre::message::{header::ContentType, Attachment};
    let message_id = new_message_id(cfg);
    let to_box = mailbox(None, to.as_str())?;
    let html_part = SinglePart::html(html);
    let alternative = match chart_png {
        Some(png) => {
            let image = Attachment::new_inline(CHART_CID.to_string()).body(
                png,
                ContentType::parse("image/png").map_err(|e| ComposeError::Build(e.to_string()))?,
            );
            MultiPart::alternative()
                .singlepart(SinglePart::plain(text))
                .multipart(MultiPart::related().singlepart(html_part).singlepart(image))
        }
        None => MultiPart::alternative()
            .singlepart(SinglePart::plain(text))
            .singlepart(html_part),
    };
    let msg = base(cfg, &to_box, subject, &message_id)?
        .multipart(alternative)
        .map_err(|e| ComposeError::Build(e.to_string()))?;
    Ok(Outgoing {
        from: cfg.survey_address.to_string(),
        to: vec![to.to_string()],
        message_id,
        raw: msg.formatted(),
        not_before: now,
    })
}

/// The Content-ID of the digest's chart.
pub const CHART_CID: &str = "svarprocent";

/// What the confirmation reply reports besides the outcomes.
#[derive(Debug, Clone, Default)]
pub struct ConfirmationFacts {
    pub consultant: Option<Address>,
    pub subject: Option<String>,
    pub in_reply_to: Option<String>,
    pub skipped: Vec<(String, String)>,
    pub invalid: Vec<InvalidLine>,
    /// A CC/BCC trigger: the consultant is answered only when part of it was
    /// refused (over a cap), never for a trigger that went through.
    pub only_if_refused: bool,
    /// Part of the trigger was refused before the store saw it (over the
    /// per-message cap).
    pub refused_in_part: bool,
    /// Why nobody was invited, when the whole trigger was refused (outside
    /// the collection window).
    pub note: Option<String>,
}

/// The reply to a consultant's phone-contact mail: who was invited, who was
/// skipped as already invited, and which lines were not addresses.
pub fn confirmation(
    cfg: &Config,
    facts: &ConfirmationFacts,
    outcomes: &[InviteOutcome],
    now: DateTime<Utc>,
) -> Result<Option<Outgoing>, ComposeError> {
    let Some(consultant) = &facts.consultant else {
        return Ok(None);
    };
    let over_daily_cap = outcomes
        .iter()
        .any(|o| matches!(o, InviteOutcome::OverDailyCap(_)));
    if facts.only_if_refused && !facts.refused_in_part && !over_daily_cap {
        return Ok(None);
    }
    let mut invited = Vec::new();
    let mut already = Vec::new();
    let mut skipped: Vec<minijinja::Value> = facts
        .skipped
        .iter()
        .map(|(a, why)| context! { address => a, why => why })
        .collect();
    for o in outcomes {
        match o {
            InviteOutcome::Invited(a) => invited.push(a.to_string()),
            InviteOutcome::AlreadyInvited(a) => already.push(a.to_string()),
            InviteOutcome::OverDailyCap(a) => skipped.push(context! {
                address => a.to_string(),
                why => "over dagens grænse for invitationer; send adressen igen i morgen",
            }),
        }
    }
    let invalid: Vec<minijinja::Value> = facts
        .invalid
        .iter()
        .map(|l| context! { line => l.line, error => l.error })
        .collect();
    let text = templates()
        .get_template("confirmation.txt")?
        .render(context! {
            invited, already, skipped, invalid, from_name => cfg.from_name, note => facts.note,
        })?;
    let subject = match facts.subject.as_deref() {
        Some(s) if !s.trim().is_empty() => format!("Re: {}", s.trim()),
        _ => "Kvittering: telefonkontakter til spørgeskemaet".to_string(),
    };
    let message_id = new_message_id(cfg);
    let to_box = mailbox(None, consultant.as_str())?;
    let mut b = base(cfg, &to_box, &subject, &message_id)?;
    if let Some(id) = &facts.in_reply_to {
        b = b
            .in_reply_to(format!("<{id}>"))
            .references(format!("<{id}>"));
    }
    let msg = b
        .singlepart(SinglePart::plain(text))
        .map_err(|e| ComposeError::Build(e.to_string()))?;
    Ok(Some(Outgoing {
        from: cfg.survey_address.to_string(),
        to: vec![consultant.to_string()],
        message_id,
        raw: msg.formatted(),
        not_before: now,
    }))
}

/// A human reply to forward.
#[derive(Debug, Clone)]
pub struct ForwardFacts {
    pub from: Address,
    pub subject: Option<String>,
    pub text: String,
    pub in_reply_to: Option<String>,
}

/// Replaces personal links in `text` so a forwarded reply does not hand the
/// respondent's link to somebody else.
pub fn redact_links(cfg: &Config, text: &str) -> String {
    let marker = format!("{}/s/", cfg.base_url);
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(&marker) {
        out.push_str(&rest[..at + marker.len()]);
        rest = &rest[at + marker.len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .unwrap_or(rest.len());
        if end > 0 {
            out.push_str("[link fjernet]");
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Forwards a human reply to `to` (the consultant who triggered the
/// invitation, or the configured address), with Reply-To the respondent.
pub fn forward(
    cfg: &Config,
    to: &Address,
    facts: &ForwardFacts,
    invitation: Option<&crate::store::Invitation>,
    now: DateTime<Utc>,
) -> Result<Outgoing, ComposeError> {
    let message_id = new_message_id(cfg);
    let subject = format!(
        "Svar på spørgeskemaet fra {}: {}",
        facts.from,
        facts.subject.as_deref().unwrap_or("(uden emne)")
    );
    let region = invitation
        .map(|i| format!(" (region {})", i.region))
        .unwrap_or_default();
    let text = format!(
        "{from}{region} har svaret på mailen om spørgeskemaet. Svaret er sendt videre til dig, så et spørgsmål ikke går tabt.\nSvar direkte til {from}: dette svar går til afsenderen.\n\n----- Svaret -----\n{body}\n",
        from = facts.from,
        body = redact_links(cfg, facts.text.trim()),
    );
    let to_box = mailbox(None, to.as_str())?;
    let mut b =
        base(cfg, &to_box, &subject, &message_id)?.reply_to(mailbox(None, facts.from.as_str())?);
    if let Some(id) = &facts.in_reply_to {
        b = b.references(format!("<{id}>"));
    }
    let msg = b
        .singlepart(SinglePart::plain(text))
        .map_err(|e| ComposeError::Build(e.to_string()))?;
    Ok(Outgoing {
        from: cfg.survey_address.to_string(),
        to: vec![to.to_string()],
        message_id,
        raw: msg.formatted(),
        not_before: now,
    })
}

/// The Danish words for why a recipient was not invited (confirmation mail).
/// Why a consultant's trigger outside the collection window invited nobody.
pub fn outside_window_note(cfg: &Config, received: DateTime<Utc>) -> String {
    let when = match cfg.window.position(received) {
        crate::window::Position::Before => "før",
        _ => "efter",
    };
    format!(
        "Ingen er inviteret: mailen kom {when} indsamlingsperioden ({} – {}), og kun kontakter i perioden inviteres.",
        danish_date(cfg.window.start),
        danish_date(cfg.window.end)
    )
}

pub fn skip_reason_da(why: crate::classify::SkipReason) -> &'static str {
    use crate::classify::SkipReason::*;
    match why {
        Sender => "det er dig selv",
        Consultant => "en sikkerhedskonsulent inviteres ikke",
        SurveyAddress => "undersøgelsens egen adresse",
        InternalDomain => "en kollega (intern adresse) inviteres ikke",
        OverMessageCap => "for mange adresser i én mail; send resten i en ny mail",
        OverDailyCap => "over dagens grænse for invitationer; send adressen igen i morgen",
        AlreadyInvited => "allerede inviteret",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/classify/config.toml");
        Config::load(&dir).expect("fixture config")
    }

    fn text_of(raw: &[u8]) -> String {
        let msg = mail_parser::MessageParser::default()
            .parse(raw)
            .expect("parses");
        msg.body_text(0).unwrap_or_default().into_owned()
    }

    #[test]
    fn every_message_renders() {
        let cfg = cfg();
        let now = Utc::now();
        let to = crate::address::parse("kontakt@kommune.dk").unwrap();
        let token = Token::generate();
        let link = survey_link(&cfg, &token);

        let inv = invitation(&cfg, &to, &token, now).unwrap();
        let raw = String::from_utf8_lossy(&inv.raw).into_owned();
        assert!(raw.contains("Auto-Submitted: auto-generated"));
        assert!(raw.contains("List-Unsubscribe: <mailto:"));
        assert!(raw.contains(&format!("Message-ID: <{}>", inv.message_id)));
        assert!(text_of(&inv.raw).contains(&link));
        assert!(text_of(&inv.raw).contains("Spørgeskemaet"));

        let rem = reminder(&cfg, &to, &token, now).unwrap();
        assert!(text_of(&rem.raw).contains(&link));
        assert!(text_of(&rem.raw).starts_with("Kære modtager"));

        let facts = ConfirmationFacts {
            consultant: Some(crate::address::parse("anne.hansen@siri.dk").unwrap()),
            subject: Some("Telefonkontakter".into()),
            in_reply_to: Some("x@siri.dk".into()),
            skipped: vec![],
            invalid: vec![InvalidLine {
                line: "nej@".into(),
                error: "x".into(),
            }],
            only_if_refused: false,
            refused_in_part: false,
            note: None,
        };
        let outcomes = [InviteOutcome::Invited(to.clone())];
        let conf = confirmation(&cfg, &facts, &outcomes, now).unwrap().unwrap();
        let text = text_of(&conf.raw);
        assert!(
            text.contains("kontakt@kommune.dk") && text.contains("nej@"),
            "{text}"
        );
        // A CC trigger that went through is not answered; one over the daily
        // cap is, naming who was and was not invited.
        let cc = ConfirmationFacts {
            only_if_refused: true,
            ..facts.clone()
        };
        assert!(confirmation(&cfg, &cc, &outcomes, now).unwrap().is_none());
        let other = crate::address::parse("b@kommune.dk").unwrap();
        let capped = [
            InviteOutcome::Invited(to.clone()),
            InviteOutcome::OverDailyCap(other),
        ];
        let text = text_of(&confirmation(&cfg, &cc, &capped, now).unwrap().unwrap().raw);
        assert!(
            text.contains("Inviteret til spørgeskemaet (1):")
                && text.contains("  - kontakt@kommune.dk"),
            "{text}"
        );
        assert!(text.contains("b@kommune.dk: over dagens grænse"), "{text}");
        // Outside the window: nobody invited, and why.
        let late = ConfirmationFacts {
            note: Some(outside_window_note(
                &cfg,
                "2024-09-23T08:00:00Z".parse().unwrap(),
            )),
            invalid: vec![],
            ..facts.clone()
        };
        let text = text_of(&confirmation(&cfg, &late, &[], now).unwrap().unwrap().raw);
        assert!(text.contains("Ingen er inviteret: mailen kom efter indsamlingsperioden (7. august 2024 – 20. september 2024)"), "{text}");
        assert!(
            !text.contains("Der blev ikke fundet nogen mailadresser"),
            "{text}"
        );

        let fwd = ForwardFacts {
            from: to.clone(),
            subject: Some("Spørgsmål".into()),
            text: format!("Hvad betyder det? > {link}"),
            in_reply_to: None,
        };
        let f = forward(&cfg, &facts.consultant.clone().unwrap(), &fwd, None, now).unwrap();
        let text = text_of(&f.raw);
        assert!(
            !text.contains(token.as_str()),
            "the link is redacted: {text}"
        );
        assert!(text.contains("Hvad betyder det?"));

        let d = digest(
            &cfg,
            &to,
            "Svarprocent",
            "tekst".into(),
            "<p>html</p>".into(),
            Some(vec![0x89, b'P', b'N', b'G']),
            now,
        )
        .unwrap();
        let raw = String::from_utf8_lossy(&d.raw).into_owned();
        assert!(raw.contains("multipart/related"));
        assert!(raw.contains(&format!("Content-ID: <{CHART_CID}>")));
    }

    #[test]
    fn danish_dates() {
        assert_eq!(
            danish_date(NaiveDate::from_ymd_opt(2024, 9, 20).unwrap()),
            "20. september 2024"
        );
        assert_eq!(
            danish_date(NaiveDate::from_ymd_opt(2024, 8, 7).unwrap()),
            "7. august 2024"
        );
    }
}
