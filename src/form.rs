//! The survey form: rendering it (with the respondent's values and a message
//! at each question that needs one) and validating a submission into
//! [`Answers`]. Both are pure; the web module does the I/O.
//!
//! Field names: a question's code (`organisation`), repeated for multi-choice;
//! an option's free-text field is `<question>__<option>_tekst`.

use std::collections::BTreeMap;

use minijinja::{context, Environment};
use serde::Serialize;

use crate::answer::{Answers, Value};
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

/// A submission that cannot be stored yet: a Danish message per question.
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
                        errors.insert(q.code.clone(), "Skriv et svar.".to_string());
                    }
                } else {
                    answers.insert(q.code.clone(), Value::Text { text });
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
                    errors.insert(
                        q.code.clone(),
                        "Svaret er ikke en af mulighederne. Vælg igen.".to_string(),
                    );
                } else if q.kind == Kind::Single && codes.len() > 1 {
                    errors.insert(q.code.clone(), "Vælg kun ét svar.".to_string());
                } else if codes.is_empty() {
                    if q.required {
                        let msg = if q.kind == Kind::Multi {
                            "Vælg mindst ét svar."
                        } else {
                            "Vælg et svar."
                        };
                        errors.insert(q.code.clone(), msg.to_string());
                    }
                } else if q.kind == Kind::Single {
                    answers.insert(
                        q.code.clone(),
                        Value::Single {
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
                        Value::Multi {
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

fn env() -> Environment<'static> {
    let mut env = Environment::new();
    env.add_template("form.html", include_str!("templates/form.html"))
        .unwrap_or_else(|e| unreachable!("built-in form template is invalid: {e}"));
    env.add_template("page.html", include_str!("templates/page.html"))
        .unwrap_or_else(|e| unreachable!("built-in page template is invalid: {e}"));
    env
}

/// The whole form page: empty, or re-shown with what was entered and the errors.
pub fn render(
    survey: &Survey,
    action: &str,
    invalid: Option<&Invalid>,
) -> Result<String, minijinja::Error> {
    let empty = Invalid::default();
    let invalid = invalid.unwrap_or(&empty);
    let mut values = invalid.entered.clone();
    for q in &survey.questions {
        values.entry(q.code.clone()).or_default();
    }
    env().get_template("form.html")?.render(context! {
        survey => survey,
        action => action,
        errors => invalid.errors,
        values => values,
        max_text => MAX_TEXT,
        max_other => MAX_OTHER,
    })
}

/// A simple page: a heading and paragraphs (Danish), styled like the form.
pub fn render_page(title: &str, paragraphs: &[&str]) -> String {
    render_page_with_link(title, paragraphs, None)
}

/// [`render_page`] ending in one link: (href, text).
pub fn render_page_with_link(
    title: &str,
    paragraphs: &[&str],
    link: Option<(&str, &str)>,
) -> String {
    let link = link.map(|(href, text)| context! { href => href, text => text });
    env()
        .get_template("page.html")
        .and_then(|t| t.render(context! { title => title, paragraphs => paragraphs, link => link }))
        .unwrap_or_else(|_| {
            format!(
                "<!DOCTYPE html><html lang=\"da\"><title>{0}</title><h1>{0}</h1></html>",
                crate::web::html_escape(title)
            )
        })
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
            Value::Single {
                code: "andet".into(),
                other: Some("Boligselskab".into())
            }
        );
        assert_eq!(
            a["raadgivning"],
            Value::Multi {
                codes: vec!["risiko".into(), "sikkerhed".into()],
                other: None
            }
        );
        assert_eq!(
            a["kommentarer"],
            Value::Text {
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
        assert_eq!(inv.errors["raadgivning"], "Vælg mindst ét svar.");
        assert_eq!(inv.entered["organisation"].codes, ["politi"]);
        assert_eq!(inv.entered["kommentarer"].text, "hej");
        let html = render(&survey(), "/s/x", Some(&inv)).unwrap();
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
        assert_eq!(inv.errors["antal_sager"], "Vælg kun ét svar.");
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
            Value::Single {
                code: "kommune".into(),
                other: None
            }
        );
    }

    /// HTML escaping as minijinja does it.
    fn esc(s: &str) -> String {
        crate::web::html_escape(s)
            .replace("&#39;", "&#x27;")
            .replace('/', "&#x2f;")
    }

    #[test]
    fn the_form_shows_the_questionnaire_verbatim() {
        let s = survey();
        let html = render(&s, "/s/x", None).unwrap();
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
        assert!(!html.contains("http://") && !html.contains("https://"));
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
