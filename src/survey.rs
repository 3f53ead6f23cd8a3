//! The survey definition (config/survey.da.toml): questions, options, help
//! texts, which answers are required. Loaded and validated at start; the web
//! form, the export and the report all read it from here.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Survey {
    pub id: String,
    pub version: u32,
    #[serde(default = "default_language")]
    pub language: String,
    pub title: String,
    #[serde(default)]
    pub intro: String,
    pub questions: Vec<Question>,
}

fn default_language() -> String {
    "da".to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Single,
    Multi,
    Text,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Question {
    pub nr: u32,
    pub code: String,
    pub kind: Kind,
    #[serde(default)]
    pub required: bool,
    pub text: String,
    #[serde(default)]
    pub help: Option<String>,
    #[serde(default)]
    pub options: Vec<Choice>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    pub code: String,
    pub label: String,
    /// The option carries its own free-text field ("Andet, angiv venligst").
    #[serde(default)]
    pub text_field: bool,
    /// "Not applicable": left out of the base when shares are computed.
    #[serde(default)]
    pub not_applicable: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SurveyError {
    #[error("cannot read the survey file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the survey file {path} is not valid: {message}")]
    Parse { path: String, message: String },
    #[error("the survey file {path} is not valid: {problems}")]
    Invalid { path: String, problems: String },
}

impl Survey {
    pub fn load(path: &Path) -> Result<Survey, SurveyError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SurveyError::Read {
            path: p.clone(),
            source,
        })?;
        let survey: Survey = toml::from_str(&text).map_err(|e| SurveyError::Parse {
            path: p.clone(),
            message: e.to_string(),
        })?;
        let problems = survey.problems();
        if problems.is_empty() {
            Ok(survey)
        } else {
            Err(SurveyError::Invalid {
                path: p,
                problems: problems.join("; "),
            })
        }
    }

    /// Everything wrong with the definition; empty when it is usable.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.questions.is_empty() {
            out.push("it has no questions".to_string());
        }
        let mut codes = BTreeSet::new();
        for q in &self.questions {
            let at = format!("question {} ({})", q.nr, q.code);
            if !codes.insert(q.code.as_str()) {
                out.push(format!("{at}: the code is used twice"));
            }
            if !is_code(&q.code) {
                out.push(format!(
                    "{at}: code must be lower-case letters, digits and _"
                ));
            }
            match q.kind {
                Kind::Text if !q.options.is_empty() => {
                    out.push(format!("{at}: a text question has no options"))
                }
                Kind::Single | Kind::Multi if q.options.len() < 2 => out.push(format!(
                    "{at}: a choice question needs at least two options"
                )),
                _ => {}
            }
            let mut opt = BTreeSet::new();
            for o in &q.options {
                if !opt.insert(o.code.as_str()) {
                    out.push(format!("{at}: option code {:?} is used twice", o.code));
                }
                if !is_code(&o.code) {
                    out.push(format!(
                        "{at}: option code {:?} must be lower-case letters, digits and _",
                        o.code
                    ));
                }
            }
        }
        out
    }

    /// Whether `other` (a translation) asks the same: id, version, and every
    /// question with the same number, code, kind, required flag and options
    /// (codes and flags) in the same order, so answers pool by option key.
    pub fn same_codes(&self, other: &Survey) -> Result<(), String> {
        if self.id != other.id || self.version != other.version {
            return Err(format!(
                "is survey {:?} version {}, the Danish one is {:?} version {}",
                other.id, other.version, self.id, self.version
            ));
        }
        if self.questions.len() != other.questions.len() {
            return Err(format!(
                "has {} questions, the Danish one {}",
                other.questions.len(),
                self.questions.len()
            ));
        }
        for (a, b) in self.questions.iter().zip(&other.questions) {
            let shape = |q: &Question| {
                (
                    q.nr,
                    q.code.clone(),
                    q.kind,
                    q.required,
                    q.options
                        .iter()
                        .map(|o| (o.code.clone(), o.text_field, o.not_applicable))
                        .collect::<Vec<_>>(),
                )
            };
            if shape(a) != shape(b) {
                return Err(format!(
                    "question {} ({}) differs from the Danish one in its code, kind, required flag or options",
                    b.nr, b.code
                ));
            }
        }
        Ok(())
    }

    pub fn question(&self, code: &str) -> Option<&Question> {
        self.questions.iter().find(|q| q.code == code)
    }
}

fn is_code(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Survey {
        Survey::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/survey.da.toml"))
            .expect("the shipped survey loads")
    }

    #[test]
    fn shipped_survey_is_the_agencys() {
        let s = shipped();
        assert_eq!(s.questions.len(), 8);
        let kinds: Vec<Kind> = s.questions.iter().map(|q| q.kind).collect();
        use Kind::*;
        assert_eq!(
            kinds,
            [Single, Single, Single, Multi, Single, Single, Single, Text]
        );
        let required: Vec<bool> = s.questions.iter().map(|q| q.required).collect();
        assert_eq!(required, [true, true, true, true, true, true, true, false]);
        assert_eq!(
            s.questions[2].text,
            "Har en eller flere af dine sager inden for det seneste år vedrørt børn (0-17 år)?"
        );
        assert_eq!(
            s.questions[4].options[5].label,
            "Jeg har ikke været i kontakt om akutte sager"
        );
        assert!(s.questions[4].options[5].not_applicable);
        assert!(s.questions[5]
            .help
            .as_deref()
            .unwrap()
            .contains("vurdere, om din kontakt"));
        assert!(s.questions[0].options[5].text_field);
        assert!(s.questions[3].options[5].text_field);
    }

    #[test]
    fn duplicate_codes_are_refused() {
        let mut s = shipped();
        s.questions[1].code = "organisation".into();
        assert!(s.problems().iter().any(|p| p.contains("used twice")));
    }
}
