//! The survey form: rendering it (with the respondent's values and a message
//! at each question that needs one) and validating a submission into
//! [`Answers`]. Both are pure; the web module does the I/O.
//!
//! Field names: a question's code (`organisation`), repeated for multi-choice;
//! an option's free-text field is `<question>__<option>_tekst`.

use std::collections::BTreeMap;

use minijinja::{context, Value};
use serde::Serialize;

use crate::answer::{Answers, Value as AnswerValue};
use crate::config::Config;
use crate::survey::{Kind, Survey};

/// Longest free text kept for a text question.
pub const MAX_TEXT: usize = 5000;
/// Longest free text kept for an "Andet" field.
pub const MAX_OTHER: usize = 500;

/// What the respondent entered, kept to re-show the form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Entered {
    pub codes: Vec<String>,
    pub other: String,
    pub text: String,
}

/// What is wrong with one question's answer; `form.html` words it (in the
/// form's language, or the agency's words in its own template).
pub mod problem {
    /// A required text question left empty.
    pub const WRITE_ANSWER: &str = "write_answer";
    /// A value that is not one of the question's options (a forged post).
    pub const NOT_AN_OPTION: &str = "not_an_option";
    /// More than one option on a single-choice question.
    pub const ONLY_ONE: &str = "only_one";
    /// A required multiple-choice question with nothing chosen.
    pub const AT_LEAST_ONE: &str = "at_least_one";
    /// A required single-choice question with nothing chosen.
    pub const CHOOSE_ONE: &str = "choose_one";
}

/// A submission that cannot be stored yet: a [`problem`] per question.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Invalid {
    pub errors: BTreeMap<String, String>,
    pub entered: BTreeMap<String, Entered>,
}

/// Removes control characters (but keeps line breaks) and trims.
fn clean(s: &str, max: usize) -> String {
    let s: String = s
        .chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .take(max)
        .collect();
    s.trim().replace("\r\n", "\n")
}

/// Validates form fields (name, value), in the order sent, against the survey.
pub fn validate(survey: &Survey, fields: &[(String, String)]) -> Result<Answers, Invalid> {
    let mut entered: BTreeMap<String, Entered> = BTreeMap::new();
    let mut errors = BTreeMap::new();
    let mut answers = Answers::new();
    for q in &survey.questions {
        let values: Vec<&str> = fields
            .iter()
            .filter(|(k, _)| *k == q.code)
            .map(|(_, v)| v.as_str())
            .collect();
        let mut e = Entered::default();
        match q.kind {
            Kind::Text => {
                let text = values
                    .first()
                    .map(|v| clean(v, MAX_TEXT))
                    .unwrap_or_default();
                e.text = text.clone();
                if text.is_empty() {
                    if q.required {
                        errors.insert(q.code.clone(), problem::WRITE_ANSWER.to_string());
                    }
                } else {
                    answers.insert(q.code.clone(), AnswerValue::Text { text });
                }
            }
            Kind::Single | Kind::Multi => {
                let mut codes: Vec<String> = Vec::new();
                let mut unknown = false;
                for v in &values {
                    if q.options.iter().any(|o| o.code == *v) {
                        if !codes.iter().any(|c| c == v) {
                            codes.push(v.to_string());
                        }
                    } else {
                        unknown = true;
                    }
                }
                // The free text of an option with a text field.
                let mut other = None;
                for o in q.options.iter().filter(|o| o.text_field) {
                    let name = format!("{}__{}_tekst", q.code, o.code);
                    if let Some((_, v)) = fields.iter().find(|(k, _)| *k == name) {
                        let t = clean(v, MAX_OTHER);
                        e.other = t.clone();
                        if !t.is_empty() && codes.contains(&o.code) {
                            other = Some(t);
                        }
                    }
                }
                e.codes = codes.clone();
                if unknown {
                    errors.insert(q.code.clone(), problem::NOT_AN_OPTION.to_string());
                } else if q.kind == Kind::Single && codes.len() > 1 {
                    errors.insert(q.code.clone(), problem::ONLY_ONE.to_string());
                } else if codes.is_empty() {
                    if q.required {
                        let msg = if q.kind == Kind::Multi {
                            problem::AT_LEAST_ONE
                        } else {
                            problem::CHOOSE_ONE
                        };
                        errors.insert(q.code.clone(), msg.to_string());
                    }
                } else if q.kind == Kind::Single {
                    answers.insert(
                        q.code.clone(),
                        AnswerValue::Single {
                            code: codes[0].clone(),
                            other,
                        },
                    );
                } else {
                    // Multi-choice answers are kept in the survey's option order.
                    let ordered = q
                        .options
                        .iter()
                        .filter(|o| codes.contains(&o.code))
                        .map(|o| o.code.clone())
                        .collect();
                    answers.insert(
                        q.code.clone(),
                        AnswerValue::Multi {
                            codes: ordered,
                            other,
                        },
                    );
                }
            }
        }
        entered.insert(q.code.clone(), e);
    }
    if errors.is_empty() {
        Ok(answers)
    } else {
        Err(Invalid { errors, entered })
    }
}

/// The languages the form is offered in: Danish, and English when
/// `[survey] definition_en` is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Da,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Da => "da",
            Lang::En => "en",
        }
    }

    pub fn parse(s: &str) -> Option<Lang> {
        match s.trim().to_ascii_lowercase().as_str() {
            "da" => Some(Lang::Da),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The language an `Accept-Language` header prefers among Danish and
    /// English (highest q first; a tie goes to the one listed first).
    pub fn from_accept_language(header: &str) -> Option<Lang> {
        let mut best: Option<(f32, Lang)> = None;
        for part in header.split(',') {
            let mut it = part.split(';');
            let tag = it.next().unwrap_or_default().trim().to_ascii_lowercase();
            let q = it
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let lang = match tag.split('-').next().unwrap_or_default() {
                "da" => Lang::Da,
                "en" => Lang::En,
                _ => continue,
            };
            if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, lang));
            }
        }
        best.map(|(_, l)| l)
    }

    fn other(self) -> Lang {
        match self {
            Lang::Da => Lang::En,
            Lang::En => Lang::Da,
        }
    }
}

/// What every page's layout gets ([`crate::texts::PAGE_VARS`]).
pub fn page_context(cfg: Option<&Config>, lang: Lang, title: &str) -> Value {
    match cfg {
        Some(cfg) => context! {
            agency => cfg.agency,
            lang => lang.code(),
            title => title,
            contact => cfg.web_contact,
            accessibility_statement_url => cfg.accessibility_statement_url.clone().unwrap_or_default(),
            privacy_url => match lang {
                Lang::En => format!("{}?lang=en", crate::compose::PRIVACY_PATH),
                Lang::Da => crate::compose::PRIVACY_PATH.to_string(),
            },
        },
        None => context! {
            agency => "",
            lang => lang.code(),
            title => title,
            contact => "",
            accessibility_statement_url => "",
            privacy_url => "",
        },
    }
}

/// Links of the form page: the language switch and the opt-out button.
#[derive(Debug, Clone, Default)]
pub struct FormLinks {
    /// The form's own path (`/s/<token>`).
    pub path: String,
    /// `/u/<token>`: "I don't want to take part".
    pub unsubscribe: String,
}

/// The whole form page: empty, or re-shown with what was entered and the
/// errors; in `lang` (the English questionnaire when configured).
pub fn render(
    cfg: &Config,
    lang: Lang,
    links: &FormLinks,
    invalid: Option<&Invalid>,
) -> Result<String, minijinja::Error> {
    let (survey, lang) = match (lang, &cfg.survey_en) {
        (Lang::En, Some(en)) => (en, Lang::En),
        _ => (&cfg.survey, Lang::Da),
    };
    let empty = Invalid::default();
    let invalid = invalid.unwrap_or(&empty);
    let mut values = invalid.entered.clone();
    for q in &survey.questions {
        values.entry(q.code.clone()).or_default();
    }
    let action = format!("{}?lang={}", links.path, lang.code());
    let switch_url = if cfg.survey_en.is_some() {
        format!("{}?lang={}", links.path, lang.other().code())
    } else {
        String::new()
    };
    cfg.texts.render(
        "form.html",
        context! {
            survey => survey,
            action => action,
            errors => invalid.errors,
            values => values,
            max_text => MAX_TEXT,
            max_other => MAX_OTHER,
            switch_url => switch_url,
            unsubscribe_action => links.unsubscribe,
            ..page_context(Some(cfg), lang, &survey.title)
        },
    )
}

/// One of the page templates (`thanks.html`, `privacy.html`, …) with its
/// own variables; the built-in generic page if the agency's fails.
pub fn render_named(
    cfg: Option<&Config>,
    name: &str,
    lang: Lang,
    title: &str,
    own: Value,
) -> String {
    let ctx = context! { ..own, ..page_context(cfg, lang, title) };
    let texts = cfg.map_or_else(crate::texts::Texts::builtin, |c| c.texts.clone());
    texts.render(name, ctx).unwrap_or_else(|e| {
        tracing::error!(template = name, error = %e, "a page template failed; showing the plain page");
        fallback_page(title)
    })
}

/// A status page (`error.html`): `kind` says which (see `web::Notice`);
/// `fallback_title` heads the plain page shown if the agency's template fails.
pub fn render_notice(cfg: Option<&Config>, lang: Lang, kind: &str, fallback_title: &str) -> String {
    render_named(
        cfg,
        "error.html",
        lang,
        fallback_title,
        context! { kind => kind },
    )
}

fn fallback_page(title: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"da\"><title>{0}</title><h1>{0}</h1></html>",
        crate::escape::html_escape(title)
    )
}

/// The stylesheet the pages link to (served by the web module).
pub const CSS: &str = include_str!("templates/form.css");

#[cfg(test)]
mod tests {
    use super::*;

    fn survey() -> Survey {
        Survey::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/survey.da.toml"),
        )
        .unwrap()
    }

    fn cfg() -> Config {
        Config::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/classify/config.toml"),
        )
        .expect("fixture config")
    }

    fn links() -> FormLinks {
        FormLinks {
            path: "/s/x".into(),
            unsubscribe: "/u/x".into(),
        }
    }

    fn f(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn complete() -> Vec<(String, String)> {
        f(&[
            ("organisation", "andet"),
            ("organisation__andet_tekst", "  Boligselskab  "),
            ("antal_sager", "2_5"),
            ("boern", "ja"),
            ("raadgivning", "sikkerhed"),
            ("raadgivning", "risiko"),
            ("raadgivning", "risiko"),
            ("tilgaengelighed", "ikke_relevant"),
            ("hjulpet_videre", "hoej"),
            ("anbefale", "meget_hoej"),
            ("kommentarer", "Tak! 😀 Æblegrød på én gang\r\nLinje to"),
        ])
    }

    #[test]
    fn a_complete_answer_validates() {
        let a = validate(&survey(), &complete()).unwrap();
        assert_eq!(
            a["organisation"],
            AnswerValue::Single {
                code: "andet".into(),
                other: Some("Boligselskab".into())
            }
        );
        assert_eq!(
            a["raadgivning"],
            AnswerValue::Multi {
                codes: vec!["risiko".into(), "sikkerhed".into()],
                other: None
            }
        );
        assert_eq!(
            a["kommentarer"],
            AnswerValue::Text {
                text: "Tak! 😀 Æblegrød på én gang\nLinje to".into()
            }
        );
        assert_eq!(a.len(), 8);
    }

    #[test]
    fn question_8_is_optional() {
        let mut fields = complete();
        fields.retain(|(k, _)| k != "kommentarer");
        let a = validate(&survey(), &fields).unwrap();
        assert!(!a.contains_key("kommentarer"));
    }

    #[test]
    fn missing_answers_are_named_and_entries_kept() {
        let fields = f(&[("organisation", "politi"), ("kommentarer", "hej")]);
        let inv = validate(&survey(), &fields).unwrap_err();
        let missing: Vec<&str> = inv.errors.keys().map(String::as_str).collect();
        assert_eq!(
            missing,
            [
                "anbefale",
                "antal_sager",
                "boern",
                "hjulpet_videre",
                "raadgivning",
                "tilgaengelighed"
            ]
        );
        assert_eq!(inv.errors["raadgivning"], problem::AT_LEAST_ONE);
        assert_eq!(inv.entered["organisation"].codes, ["politi"]);
        assert_eq!(inv.entered["kommentarer"].text, "hej");
        let html = render(&cfg(), Lang::Da, &links(), Some(&inv)).unwrap();
        assert!(html.contains("Der mangler svar"));
        assert!(html.contains("value=\"politi\" checked"));
        assert!(html.contains(">hej</textarea>"));
        assert!(html.contains("href=\"#q-boern\""));
    }

    #[test]
    fn forged_values_are_refused() {
        let mut fields = complete();
        fields.push(("boern".into(), "maaske".into()));
        let inv = validate(&survey(), &fields).unwrap_err();
        assert!(inv.errors.contains_key("boern"));
        let mut fields = complete();
        fields.push(("antal_sager".into(), "1".into()));
        let inv = validate(&survey(), &fields).unwrap_err();
        assert_eq!(inv.errors["antal_sager"], problem::ONLY_ONE);
    }

    #[test]
    fn other_text_only_with_its_option() {
        let mut fields = complete();
        for (k, v) in fields.iter_mut() {
            if k == "organisation" {
                *v = "kommune".into();
            }
        }
        let a = validate(&survey(), &fields).unwrap();
        assert_eq!(
            a["organisation"],
            AnswerValue::Single {
                code: "kommune".into(),
                other: None
            }
        );
    }

    /// HTML escaping as the templates do it.
    fn esc(s: &str) -> String {
        crate::escape::html_escape(s)
    }

    #[test]
    fn the_form_shows_the_questionnaire_verbatim() {
        let s = survey();
        let html = render(&cfg(), Lang::Da, &links(), None).unwrap();
        assert!(html.contains("<html lang=\"da\">"));
        for q in &s.questions {
            assert!(html.contains(&esc(&q.text)), "{}", q.text);
            for o in &q.options {
                assert!(html.contains(&esc(&o.label)), "{}", o.label);
            }
            if let Some(h) = &q.help {
                assert!(html.contains(&esc(h)));
            }
        }
        assert_eq!(html.matches("<fieldset").count(), 8);
        assert_eq!(html.matches("type=\"checkbox\"").count(), 6);
        assert!(html.contains("<textarea"));
        assert!(!html.contains("<script"));
        // Nothing is loaded from elsewhere: the only absolute URLs are links
        // a person may follow (the footer's accessibility statement).
        for (i, _) in html.match_indices("://") {
            let before = &html[..i];
            let tag = &before[before.rfind('<').unwrap_or(0)..];
            assert!(tag.starts_with("<a href="), "an external resource: {tag}");
        }
        // Every input has a label.
        let inputs = html.matches("<input").count() + html.matches("<textarea").count();
        let labels = html.matches("<label for=").count();
        assert_eq!(inputs, labels);
    }

    #[test]
    fn control_characters_are_dropped() {
        assert_eq!(clean("a\u{0}b\u{7}c\n", 10), "abc");
        assert_eq!(clean(&"x".repeat(20), 5), "xxxxx");
    }
}
