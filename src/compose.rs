//! The mail canvass writes, rendered to RFC 5322 bytes for the outbox: the
//! Danish invitation (plain text beside HTML) and the confirmation reply to a
//! consultant's phone-contact mail. Every message carries a Message-ID of
//! canvass' own shape and `Auto-Submitted: auto-generated` (RFC 3834).

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::Message;
use minijinja::{context, Value};
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

/// A fresh Message-ID (without angle brackets) in canvass' own shape, from
/// the OS RNG.
pub fn new_message_id(cfg: &Config) -> String {
    message_id_from(cfg, &mut rand::rngs::OsRng)
}

/// A Message-ID in canvass' own shape from the caller's `rng` (the planner
/// takes its randomness in: `apply::plan`).
pub fn message_id_from(cfg: &Config, rng: &mut dyn RngCore) -> String {
    let mut b = [0u8; 12];
    rng.fill_bytes(&mut b);
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

/// The one-click opt-out link (RFC 8058): a GET shows a button, a POST opts out.
pub fn unsubscribe_link(cfg: &Config, token: &Token) -> String {
    format!("{}/u/{}", cfg.base_url, token.as_str())
}

/// The privacy page (GDPR art. 14), linked from every invitation and page.
pub fn privacy_url(cfg: &Config) -> String {
    format!("{}{}", cfg.base_url, PRIVACY_PATH)
}

/// Where the privacy page is served.
pub const PRIVACY_PATH: &str = "/privatliv";
/// Where the link of a `send-test` mail leads: a test page, no form.
pub const TEST_PATH: &str = "/proeve";

/// What every mail template gets ([`crate::texts::MAIL_VARS`]).
pub fn mail_context(cfg: &Config, test: bool) -> Value {
    context! {
        agency => cfg.agency,
        from_name => cfg.from_name,
        test => test,
        privacy => privacy_context(cfg),
    }
}

/// The `privacy` variable of mails and of the privacy page: the `[privacy]`
/// section, the retention period and the page's address.
pub fn privacy_context(cfg: &Config) -> Value {
    let p = &cfg.privacy;
    context! {
        controller => p.controller,
        dpo => p.dpo,
        purpose => p.purpose,
        legal_basis => p.legal_basis,
        contact => p.contact,
        configured => p.configured,
        retention_days => cfg.retention.erase_addresses_after_days,
        url => privacy_url(cfg),
    }
}

/// The subject, body and links of an invitation or reminder.
fn invite_context(cfg: &Config, link: &str, unsubscribe: &str, subject: &str, test: bool) -> Value {
    let english_url = if cfg.survey_en.is_some() {
        format!("{link}?lang=en")
    } else {
        String::new()
    };
    context! {
        link => link,
        unsubscribe_url => unsubscribe,
        english_url => english_url,
        // The last day the form accepts answers: what "til og med" promises.
        deadline => danish_date(cfg.answers_until),
        deadline_en => english_date(cfg.answers_until),
        subject => subject,
        ..mail_context(cfg, test)
    }
}

/// A subject template rendered to one line.
fn subject_of(cfg: &Config, name: &str, test: bool) -> Result<String, ComposeError> {
    let s = one_line(&cfg.texts.render(name, mail_context(cfg, test))?);
    Ok(if test { format!("[PRØVE] {s}") } else { s })
}

/// A rendered subject: its words on one line.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `List-Unsubscribe` with the HTTPS link first (RFC 8058 one-click) and the
/// `mailto:` second, for clients that only mail.
fn unsubscribe_header(cfg: &Config, url: &str, message_id: &str) -> String {
    format!("<{url}>, {}", unsubscribe_mailto(cfg, message_id))
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

/// "20 September 2024".
pub fn english_date(d: NaiveDate) -> String {
    d.format("%-d %B %Y").to_string()
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

/// One mail as canvass writes it: From (`from_name` <survey address>), To,
/// Subject, Message-ID, Date, `Auto-Submitted` and `X-Auto-Response-Suppress`,
/// Reply-To when configured; [`Draft::unsubscribe`] adds the RFC 8058 pair
/// and [`Draft::single`] / [`Draft::multi`] the body, giving the
/// [`Outgoing`] the outbox queues. Every message below is built with it.
struct Draft<'a> {
    cfg: &'a Config,
    to: &'a Address,
    message_id: String,
    builder: lettre::message::MessageBuilder,
}

impl<'a> Draft<'a> {
    fn new(
        cfg: &'a Config,
        to: &'a Address,
        subject: &str,
        message_id: String,
    ) -> Result<Draft<'a>, ComposeError> {
        let from = mailbox(Some(&cfg.from_name), cfg.survey_address.as_str())?;
        let mut builder = Message::builder()
            .from(from)
            .to(mailbox(None, to.as_str())?)
            .subject(subject)
            .message_id(Some(format!("<{message_id}>")))
            .date_now()
            .raw_header(raw_header("Auto-Submitted", "auto-generated".to_string()))
            .raw_header(raw_header("X-Auto-Response-Suppress", "All".to_string()));
        if let Some(r) = &cfg.reply_to {
            builder = builder.reply_to(mailbox(None, r.as_str())?);
        }
        Ok(Draft {
            cfg,
            to,
            message_id,
            builder,
        })
    }

    /// Any other header (In-Reply-To, References, a Reply-To of its own).
    fn with(
        mut self,
        f: impl FnOnce(lettre::message::MessageBuilder) -> lettre::message::MessageBuilder,
    ) -> Self {
        self.builder = f(self.builder);
        self
    }

    /// `List-Unsubscribe` (the HTTPS link `url`, then the `mailto:`) and
    /// `List-Unsubscribe-Post` (RFC 8058 one-click).
    fn unsubscribe(self, url: &str) -> Self {
        let header = unsubscribe_header(self.cfg, url, &self.message_id);
        self.with(|b| {
            b.raw_header(raw_header("List-Unsubscribe", header))
                .raw_header(raw_header(
                    "List-Unsubscribe-Post",
                    "List-Unsubscribe=One-Click".to_string(),
                ))
        })
    }

    fn single(self, body: SinglePart, not_before: DateTime<Utc>) -> Result<Outgoing, ComposeError> {
        self.finish(|b| b.singlepart(body), not_before)
    }

    fn multi(self, body: MultiPart, not_before: DateTime<Utc>) -> Result<Outgoing, ComposeError> {
        self.finish(|b| b.multipart(body), not_before)
    }

    fn finish(
        self,
        body: impl FnOnce(lettre::message::MessageBuilder) -> Result<Message, lettre::error::Error>,
        not_before: DateTime<Utc>,
    ) -> Result<Outgoing, ComposeError> {
        let msg = body(self.builder).map_err(|e| ComposeError::Build(e.to_string()))?;
        Ok(outgoing(
            self.cfg,
            self.to,
            self.message_id,
            msg.formatted(),
            not_before,
        ))
    }
}

/// The outbox's view of a mail from the survey address to `to`.
fn outgoing(
    cfg: &Config,
    to: &Address,
    message_id: String,
    raw: Vec<u8>,
    not_before: DateTime<Utc>,
) -> Outgoing {
    Outgoing {
        from: cfg.survey_address.to_string(),
        to: vec![to.to_string()],
        message_id,
        raw,
        not_before,
    }
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

/// An invitation queued without its body: what [`invitation`] would give
/// under `message_id`, with `raw` empty, checked to render (the address fits a header). The
/// outbox renders it when it sends it ([`invitation_with_id`], the same
/// Message-ID), so the body is never written to the store: it was most of
/// the bytes an invitation cost the store (BENCHMARKS.md, target 5).
pub fn deferred_invitation(
    cfg: &Config,
    to: &Address,
    message_id: String,
    not_before: DateTime<Utc>,
) -> Result<Outgoing, ComposeError> {
    mailbox(None, to.as_str())?;
    Ok(outgoing(cfg, to, message_id, Vec::new(), not_before))
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
    let link = survey_link(cfg, token);
    let unsubscribe = unsubscribe_link(cfg, token);
    render_invitation(cfg, to, &link, &unsubscribe, message_id, not_before, false)
}

fn render_invitation(
    cfg: &Config,
    to: &Address,
    link: &str,
    unsubscribe: &str,
    message_id: String,
    not_before: DateTime<Utc>,
    test: bool,
) -> Result<Outgoing, ComposeError> {
    let subject = subject_of(cfg, "invitation_subject.txt", test)?;
    let ctx = invite_context(cfg, link, unsubscribe, &subject, test);
    let text = cfg.texts.render("invitation.txt", ctx.clone())?;
    let html = cfg.texts.render("invitation.html", ctx)?;
    let mut draft = Draft::new(cfg, to, &subject, message_id)?.unsubscribe(unsubscribe);
    if test {
        draft = draft.with(|b| b.raw_header(raw_header("X-Canvass-Test", "yes".to_string())));
    }
    draft.multi(MultiPart::alternative_plain_html(text, html), not_before)
}

/// `canvass send-test`: the invitation as a respondent gets it, marked as a
/// test in its subject, body and an `X-Canvass-Test` header; its links lead
/// to the test page ([`TEST_PATH`]). No invitation, token or store entry.
pub fn test_invitation(cfg: &Config, to: &Address) -> Result<Outgoing, ComposeError> {
    let link = format!("{}{TEST_PATH}", cfg.base_url);
    render_invitation(cfg, to, &link, &link, new_message_id(cfg), Utc::now(), true)
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
    message_id: String,
    not_before: DateTime<Utc>,
) -> Result<Outgoing, ComposeError> {
    let subject = subject_of(cfg, "reminder_subject.txt", false)?;
    let link = survey_link(cfg, token);
    let unsubscribe = unsubscribe_link(cfg, token);
    let text = cfg.texts.render(
        "reminder.txt",
        invite_context(cfg, &link, &unsubscribe, &subject, false),
    )?;
    Draft::new(cfg, to, &subject, message_id)?
        .unsubscribe(&unsubscribe)
        .single(SinglePart::plain(text), not_before)
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
    Draft::new(cfg, to, subject, new_message_id(cfg))?.multi(alternative, now)
}

/// The Content-ID of the digest's chart.
pub const CHART_CID: &str = "svarprocent";

/// What the confirmation reply reports besides the outcomes.
#[derive(Debug, Clone, Default)]
pub struct ConfirmationFacts {
    pub consultant: Option<Address>,
    pub subject: Option<String>,
    pub in_reply_to: Option<String>,
    pub skipped: Vec<NotInvited>,
    pub invalid: Vec<InvalidLine>,
    /// A CC/BCC trigger: the consultant is answered only when part of it was
    /// refused (over a cap), never for a trigger that went through.
    pub only_if_refused: bool,
    /// Part of the trigger was refused before the store saw it (over the
    /// per-message cap).
    pub refused_in_part: bool,
    /// Why nobody was invited, when the whole trigger was refused (outside
    /// the collection window).
    pub note: Option<Note>,
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
    let mut not_invited = facts.skipped.clone();
    for o in outcomes {
        match o {
            InviteOutcome::Invited(a) => invited.push(a.to_string()),
            InviteOutcome::AlreadyInvited(a) => already.push(a.to_string()),
            InviteOutcome::OverDailyCap(a) => not_invited.push(NotInvited {
                address: a.to_string(),
                reason: NotInvited::OVER_DAILY_CAP,
                detail: None,
            }),
        }
    }
    let skipped: Vec<minijinja::Value> = not_invited
        .iter()
        .map(|s| context! { address => s.address, reason => s.reason, detail => s.detail })
        .collect();
    let invalid: Vec<minijinja::Value> = facts
        .invalid
        .iter()
        .map(|l| context! { line => l.line, error => l.error })
        .collect();
    let text = cfg.texts.render(
        "confirmation.txt",
        context! {
            invited, already, skipped, invalid,
            note => facts.note.as_ref().map(|n| n.context(cfg)),
            ..mail_context(cfg, false)
        },
    )?;
    let subject = one_line(&cfg.texts.render(
        "confirmation_subject.txt",
        context! {
            subject => facts.subject.as_deref().map(str::trim).unwrap_or_default(),
            ..mail_context(cfg, false)
        },
    )?);
    let mut draft = Draft::new(cfg, consultant, &subject, new_message_id(cfg))?;
    if let Some(id) = &facts.in_reply_to {
        draft = draft.with(|b| {
            b.in_reply_to(format!("<{id}>"))
                .references(format!("<{id}>"))
        });
    }
    draft.single(SinglePart::plain(text), now).map(Some)
}

/// A human reply to forward.
#[derive(Debug, Clone)]
pub struct ForwardFacts {
    pub from: Address,
    pub subject: Option<String>,
    pub text: String,
    pub in_reply_to: Option<String>,
}

/// Personal links out of a forwarded reply, in every shape (src/redact.rs).
pub fn redact_links(_cfg: &Config, text: &str) -> String {
    crate::redact::redact(text)
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
    let subject = one_line(&cfg.texts.render(
        "forward_subject.txt",
        context! {
            from => facts.from.to_string(),
            subject => crate::redact::redact(facts.subject.as_deref().unwrap_or_default().trim()),
            ..mail_context(cfg, false)
        },
    )?);
    let region = invitation.map(|i| i.region.clone()).unwrap_or_default();
    // Anyone who knows a canvass Message-ID can write a "reply": say so
    // unless it comes from the very address that invitation went to.
    let verified = invitation.is_some_and(|i| i.address.as_ref() == Some(&facts.from));
    let text = cfg.texts.render(
        "forward.txt",
        context! {
            from => facts.from.to_string(),
            verified => verified,
            region => region,
            body => redact_links(cfg, facts.text.trim()),
            ..mail_context(cfg, false)
        },
    )?;
    let respondent = mailbox(None, facts.from.as_str())?;
    let mut draft =
        Draft::new(cfg, to, &subject, new_message_id(cfg))?.with(|b| b.reply_to(respondent));
    if let Some(id) = &facts.in_reply_to {
        draft = draft.with(|b| b.references(format!("<{id}>")));
    }
    draft.single(SinglePart::plain(text), now)
}

/// Why nobody was invited, when a whole trigger was refused; the
/// confirmation template words it (`note.kind`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// The consultant's mail came before or after the collection window.
    OutsideWindow { before: bool },
    /// A phone contact over `max_message_bytes` (`mb`): only its headers
    /// were read, so its addresses are unknown.
    TooLarge { mb: u64 },
}

impl Note {
    /// A consultant's trigger received at `received`, outside the window.
    pub fn outside_window(cfg: &Config, received: DateTime<Utc>) -> Note {
        Note::OutsideWindow {
            before: cfg.window.position(received) == crate::window::Position::Before,
        }
    }

    fn context(&self, cfg: &Config) -> Value {
        match self {
            Note::OutsideWindow { before } => context! {
                kind => "outside_window",
                before => before,
                start => danish_date(cfg.window.start),
                end => danish_date(cfg.window.end),
            },
            Note::TooLarge { mb } => context! { kind => "too_large", mb => mb },
        }
    }
}

/// One recipient of a trigger that was not invited, and why: a
/// [`crate::classify::SkipReason::key`], or `unrenderable` with the error in
/// `detail`; the confirmation template words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotInvited {
    pub address: String,
    pub reason: &'static str,
    pub detail: Option<String>,
}

impl NotInvited {
    /// Over the consultant's daily cap (decided in the store).
    pub const OVER_DAILY_CAP: &'static str = "over_daily_cap";
    /// The invitation could not be rendered; `detail` says why.
    pub const UNRENDERABLE: &'static str = "unrenderable";
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
        let unsubscribe = unsubscribe_link(&cfg, &token);
        assert!(
            raw.replace("\r\n ", " ")
                .contains(&format!("List-Unsubscribe: <{unsubscribe}>, <mailto:")),
            "{raw}"
        );
        assert!(raw.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
        let body = text_of(&inv.raw);
        // GDPR art. 14: source, controller, retention, objection, Datatilsynet, the page.
        for must in [
            "fordi du har været i kontakt med vores",
            "er dataansvarlig",
            "Databeskyttelsesrådgiver: dpo@siri.dk",
            "Adressen slettes 30 dage",
            "indsigelse",
            "Datatilsynet",
            "https://undersoegelse.siri.dk/privatliv",
            // The closing date is the last day the form accepts answers.
            &danish_date(cfg.answers_until),
        ] {
            assert!(body.contains(must), "{must:?} missing: {body}");
        }
        assert!(!body.contains(&danish_date(cfg.window.end)), "{body}");
        assert!(raw.contains(&format!("Message-ID: <{}>", inv.message_id)));
        assert!(text_of(&inv.raw).contains(&link));
        assert!(text_of(&inv.raw).contains("Spørgeskemaet"));

        let rem = reminder(&cfg, &to, &token, new_message_id(&cfg), now).unwrap();
        assert!(text_of(&rem.raw).contains(&link));
        assert!(text_of(&rem.raw).contains("Datatilsynet"));
        assert!(String::from_utf8_lossy(&rem.raw).contains("List-Unsubscribe-Post"));

        let test = test_invitation(&cfg, &to).unwrap();
        let raw = String::from_utf8_lossy(&test.raw).into_owned();
        assert!(raw.contains("X-Canvass-Test: yes"), "{raw}");
        assert!(raw.contains("[PRØVE]") || raw.contains("=?utf-8?"), "{raw}");
        assert!(text_of(&test.raw).contains("https://undersoegelse.siri.dk/proeve"));
        assert!(!text_of(&test.raw).contains("/s/"));
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
            note: Some(Note::outside_window(
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
            text: format!(
                "Hvad betyder det? > {link}\n> {}",
                unsubscribe_link(&cfg, &token)
            ),
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
