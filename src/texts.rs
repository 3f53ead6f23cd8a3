//! Every text canvass shows or mails, as minijinja templates: the built-in
//! ones (`src/templates/`, compiled in) and the agency's overrides, files of
//! the same name in `[survey] templates_dir`.
//!
//! Overrides are validated when the config is loaded (`check-config`, start,
//! reload), each problem naming the file and the line: the syntax, a file
//! that is not a known template, a variable the template does not get
//! (undefined values are errors: [`UndefinedBehavior::Strict`], and every
//! template has its list of known variables, [`SPECS`]), an invitation or
//! reminder without the personal link. Every template is rendered once with
//! [`sample`] data, the same data `canvass preview` shows.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use minijinja::{context, Environment, UndefinedBehavior, Value};

/// One template: its file name, its built-in text, the variables it gets.
#[derive(Debug)]
pub struct Spec {
    pub name: &'static str,
    pub builtin: &'static str,
    /// Variables beyond the common ones of its kind ([`MAIL_VARS`], [`PAGE_VARS`]).
    pub vars: &'static [&'static str],
    /// Must show the personal link (invitation and reminder bodies).
    pub needs_link: bool,
}

impl Spec {
    fn is_page(&self) -> bool {
        self.name.ends_with(".html")
            && !self.name.starts_with("invitation")
            && !self.name.starts_with("digest")
    }

    /// Every variable the template may use.
    pub fn known(&self) -> BTreeSet<&'static str> {
        let common: &[&str] = if self.is_page() { PAGE_VARS } else { MAIL_VARS };
        common.iter().chain(self.vars).copied().collect()
    }
}

/// What every mail template gets.
pub const MAIL_VARS: &[&str] = &["agency", "from_name", "privacy", "test"];
/// What every page gets (the layout's footer among them).
pub const PAGE_VARS: &[&str] = &[
    "agency",
    "lang",
    "title",
    "contact",
    "accessibility_statement_url",
    "privacy_url",
];

/// The variables of an invitation and a reminder.
const INVITE_VARS: &[&str] = &[
    "link",
    "unsubscribe_url",
    "english_url",
    "deadline",
    "deadline_en",
    "subject",
];

macro_rules! builtin {
    ($name:literal) => {
        include_str!(concat!("templates/", $name))
    };
}

/// The variables of the digest's body (`digest.txt`, `digest.html`): the
/// figures of [`crate::analysis::digest::context`].
const DIGEST_VARS: &[&str] = &[
    "subject",
    "intro",
    "chart_cid",
    "today",
    "window_start",
    "window_end",
    "days_left",
    "is_final",
    "lines",
    "total",
    "weeks",
    "refusals",
    "withdrawn",
    "returns",
];

/// Every template, by file name.
pub const SPECS: &[Spec] = &[
    Spec {
        name: "invitation_subject.txt",
        builtin: builtin!("invitation_subject.txt"),
        vars: &[],
        needs_link: false,
    },
    Spec {
        name: "invitation.txt",
        builtin: builtin!("invitation.txt"),
        vars: INVITE_VARS,
        needs_link: true,
    },
    Spec {
        name: "invitation.html",
        builtin: builtin!("invitation.html"),
        vars: INVITE_VARS,
        needs_link: true,
    },
    Spec {
        name: "reminder_subject.txt",
        builtin: builtin!("reminder_subject.txt"),
        vars: &[],
        needs_link: false,
    },
    Spec {
        name: "reminder.txt",
        builtin: builtin!("reminder.txt"),
        vars: INVITE_VARS,
        needs_link: true,
    },
    Spec {
        name: "confirmation_subject.txt",
        builtin: builtin!("confirmation_subject.txt"),
        vars: &["subject"],
        needs_link: false,
    },
    Spec {
        name: "confirmation.txt",
        builtin: builtin!("confirmation.txt"),
        vars: &["invited", "already", "skipped", "invalid", "note"],
        needs_link: false,
    },
    Spec {
        name: "forward_subject.txt",
        builtin: builtin!("forward_subject.txt"),
        vars: &["from", "subject"],
        needs_link: false,
    },
    Spec {
        name: "forward.txt",
        builtin: builtin!("forward.txt"),
        vars: &["from", "verified", "region", "body"],
        needs_link: false,
    },
    Spec {
        name: "digest_subject.txt",
        builtin: builtin!("digest_subject.txt"),
        vars: &["week", "rate", "answered", "is_final"],
        needs_link: false,
    },
    Spec {
        name: "digest_intro.txt",
        builtin: builtin!("digest_intro.txt"),
        vars: &["subject", "is_final", "days_left"],
        needs_link: false,
    },
    Spec {
        name: "digest_chart_title.txt",
        builtin: builtin!("digest_chart_title.txt"),
        vars: &[],
        needs_link: false,
    },
    Spec {
        name: "digest.txt",
        builtin: builtin!("digest.txt"),
        vars: DIGEST_VARS,
        needs_link: false,
    },
    Spec {
        name: "digest.html",
        builtin: builtin!("digest.html"),
        vars: DIGEST_VARS,
        needs_link: false,
    },
    Spec {
        name: "layout.html",
        builtin: builtin!("layout.html"),
        vars: &[],
        needs_link: false,
    },
    Spec {
        name: "form.html",
        builtin: builtin!("form.html"),
        vars: &[
            "survey",
            "action",
            "errors",
            "values",
            "max_text",
            "max_other",
            "switch_url",
            "unsubscribe_action",
        ],
        needs_link: false,
    },
    Spec {
        name: "error.html",
        builtin: builtin!("error.html"),
        vars: &["kind"],
        needs_link: false,
    },
    Spec {
        name: "thanks.html",
        builtin: builtin!("thanks.html"),
        vars: &[],
        needs_link: false,
    },
    Spec {
        name: "answered.html",
        builtin: builtin!("answered.html"),
        vars: &[],
        needs_link: false,
    },
    Spec {
        name: "closed.html",
        builtin: builtin!("closed.html"),
        vars: &["until"],
        needs_link: false,
    },
    Spec {
        name: "forgotten.html",
        builtin: builtin!("forgotten.html"),
        vars: &[],
        needs_link: false,
    },
    Spec {
        name: "withdrawn.html",
        builtin: builtin!("withdrawn.html"),
        vars: &[],
        needs_link: false,
    },
    Spec {
        name: "opted_out.html",
        builtin: builtin!("opted_out.html"),
        vars: &["answer_url"],
        needs_link: false,
    },
    Spec {
        name: "unsubscribe.html",
        builtin: builtin!("unsubscribe.html"),
        vars: &["action"],
        needs_link: false,
    },
    Spec {
        name: "test_link.html",
        builtin: builtin!("test_link.html"),
        vars: &[],
        needs_link: false,
    },
    Spec {
        name: "privacy.html",
        builtin: builtin!("privacy.html"),
        vars: &["privacy"],
        needs_link: false,
    },
];

pub fn spec(name: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.name == name)
}

/// What the sample link looks like: `check-config` looks for its token in
/// the rendered invitation and reminder.
pub const SAMPLE_TOKEN: &str = "PROEVE-TOKEN-0123456789";

/// One problem in a template file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateProblem {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for TemplateProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "{} line {l}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// The templates in use: built-ins with the agency's files over them.
#[derive(Clone)]
pub struct Texts {
    env: Environment<'static>,
    /// Which templates come from the agency's directory.
    pub overridden: Vec<String>,
}

impl std::fmt::Debug for Texts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Texts")
            .field("overridden", &self.overridden)
            .finish()
    }
}

fn new_env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Names ending in .html are auto-escaped (minijinja's default), with the
    // one escape canvass uses everywhere (`crate::escape`).
    env.set_formatter(crate::escape::formatter);
    // `ljust(n)` / `rjust(n)`: a value padded to n characters, for the
    // digest's fixed-width table.
    env.add_filter("ljust", |v: Value, width: usize| {
        format!("{:<width$}", v.to_string())
    });
    env.add_filter("rjust", |v: Value, width: usize| {
        format!("{:>width$}", v.to_string())
    });
    env
}

impl Texts {
    /// The built-in texts only.
    pub fn builtin() -> Texts {
        static BUILTIN: std::sync::OnceLock<Texts> = std::sync::OnceLock::new();
        BUILTIN
            .get_or_init(|| {
                let mut env = new_env();
                for s in SPECS {
                    env.add_template(s.name, s.builtin).unwrap_or_else(|e| {
                        unreachable!("built-in template {} is invalid: {e}", s.name)
                    });
                }
                Texts {
                    env,
                    overridden: Vec::new(),
                }
            })
            .clone()
    }

    /// The built-ins with every file of `dir` over them, validated.
    pub fn load(dir: &Path) -> Result<Texts, Vec<TemplateProblem>> {
        let mut problems = Vec::new();
        let mut texts = Texts::builtin();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                return Err(vec![TemplateProblem {
                    file: dir.to_path_buf(),
                    line: None,
                    message: format!("cannot read the templates directory: {e}"),
                }])
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        let mut sources = Vec::new();
        for path in files {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.starts_with('.') || name.ends_with('~') {
                continue; // editor leftovers
            }
            let Some(spec) = spec(&name) else {
                let known: Vec<&str> = SPECS.iter().map(|s| s.name).collect();
                problems.push(TemplateProblem {
                    file: path,
                    line: None,
                    message: format!(
                        "is not a canvass template; the files that can be overridden are {}",
                        known.join(", ")
                    ),
                });
                continue;
            };
            match std::fs::read_to_string(&path) {
                Ok(src) => sources.push((spec, path, src)),
                Err(e) => problems.push(TemplateProblem {
                    file: path,
                    line: None,
                    message: format!("cannot read: {e}"),
                }),
            }
        }
        for (spec, path, src) in &sources {
            if let Err(e) = texts.env.add_template_owned(spec.name, src.clone()) {
                problems.push(TemplateProblem {
                    file: path.clone(),
                    line: e.line(),
                    message: syntax_message(&e),
                });
                continue;
            }
            texts.overridden.push(spec.name.to_string());
        }
        // Unknown variables, then a render with sample data (strict).
        for (spec, path, src) in &sources {
            if !texts.overridden.iter().any(|n| n == spec.name) {
                continue;
            }
            problems.extend(texts.check(spec, path, src));
        }
        if problems.is_empty() {
            Ok(texts)
        } else {
            Err(problems)
        }
    }

    fn check(&self, spec: &Spec, path: &Path, src: &str) -> Vec<TemplateProblem> {
        let mut problems = Vec::new();
        let Ok(t) = self.env.get_template(spec.name) else {
            return problems;
        };
        let known = spec.known();
        let mut unknown: Vec<String> = t
            .undeclared_variables(false)
            .into_iter()
            .filter(|v| !known.contains(v.as_str()) && !BUILTIN_NAMES.contains(&v.as_str()))
            .collect();
        unknown.sort();
        for v in &unknown {
            problems.push(TemplateProblem {
                file: path.to_path_buf(),
                line: line_of(src, v),
                message: format!(
                    "unknown variable `{v}`; this template knows {}",
                    known.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            });
        }
        if !unknown.is_empty() {
            return problems;
        }
        match self.render(spec.name, sample(spec.name)) {
            Ok(out) => {
                if spec.needs_link && !out.contains(SAMPLE_TOKEN) {
                    problems.push(TemplateProblem {
                        file: path.to_path_buf(),
                        line: None,
                        message: "does not show the personal link: write {{ link }} where the respondent finds it".to_string(),
                    });
                }
                if (spec.name.ends_with("_subject.txt") || spec.name.ends_with("_title.txt"))
                    && out.trim().contains('\n')
                {
                    problems.push(TemplateProblem {
                        file: path.to_path_buf(),
                        line: None,
                        message: "a subject or title is one line".to_string(),
                    });
                }
            }
            Err(e) => problems.push(TemplateProblem {
                file: path.to_path_buf(),
                line: e.line(),
                message: syntax_message(&e),
            }),
        }
        problems
    }

    /// Renders template `name` (one of [`SPECS`]).
    pub fn render(&self, name: &str, ctx: Value) -> Result<String, minijinja::Error> {
        self.env.get_template(name)?.render(ctx)
    }
}

/// Names minijinja provides itself (`loop` inside a for loop, functions).
const BUILTIN_NAMES: &[&str] = &["loop", "range", "dict", "namespace", "debug", "self"];

fn syntax_message(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    }
}

/// The first line where `word` appears as a whole word inside `{{ }}` or `{% %}`.
fn line_of(src: &str, word: &str) -> Option<usize> {
    src.lines()
        .position(|l| {
            l.match_indices(word).any(|(i, _)| {
                let before = l[..i].chars().next_back();
                let after = l[i + word.len()..].chars().next();
                let edge = |c: Option<char>| !c.is_some_and(|c| c.is_alphanumeric() || c == '_');
                edge(before) && edge(after)
            })
        })
        .map(|i| i + 1)
}

/// The `privacy` variable's sample.
fn sample_privacy() -> Value {
    context! {
        controller => "Styrelsen (eksempel), Eksempelvej 1, 2500 Valby",
        dpo => "dpo@eksempel.dk",
        purpose => "at forbedre ordningen",
        legal_basis => "databeskyttelsesforordningens artikel 6, stk. 1, litra e",
        contact => "spoergsmaal@eksempel.dk",
        retention_days => 30,
        url => "https://eksempel.dk/privatliv",
        configured => true,
    }
}

/// Sample data for template `name`: every variable it knows.
pub fn sample(name: &str) -> Value {
    let link = format!("https://eksempel.dk/s/{SAMPLE_TOKEN}");
    let page = context! {
        agency => "SIRI",
        lang => "da",
        title => "Prøveside",
        contact => "kontakt@eksempel.dk",
        accessibility_statement_url => "https://was.digst.dk/eksempel",
        privacy_url => "https://eksempel.dk/privatliv",
    };
    let mail = context! {
        agency => "SIRI",
        from_name => "Spørgeskemaundersøgelse",
        privacy => sample_privacy(),
        test => false,
    };
    let own = match name {
        "invitation.txt" | "invitation.html" | "reminder.txt" => context! {
            link => link,
            unsubscribe_url => format!("https://eksempel.dk/u/{SAMPLE_TOKEN}"),
            english_url => format!("{link}?lang=en"),
            deadline => "30. september 2024",
            deadline_en => "30 September 2024",
            subject => "Hvad synes du om SIRIs sikkerhedskonsulentordning?",
        },
        "confirmation.txt" => context! {
            invited => vec!["kontakt@kommune.dk"],
            already => Vec::<String>::new(),
            skipped => vec![
                context! { address => "kollega@siri.dk", reason => "internal_domain", detail => Option::<String>::None },
                context! { address => "x@kommune.dk", reason => "over_daily_cap", detail => Option::<String>::None },
            ],
            invalid => vec![context! { line => "ikke en adresse", error => "mangler @" }],
            note => context! { kind => "outside_window", before => false, start => "7. august 2024", end => "20. september 2024" },
        },
        "confirmation_subject.txt" => context! { subject => "Telefonkontakter" },
        "forward_subject.txt" => context! { from => "kontakt@kommune.dk", subject => "Spørgsmål" },
        "forward.txt" => {
            context! { from => "kontakt@kommune.dk", verified => false, region => "Sjælland", body => "Hvad bruges svarene til?" }
        }
        "digest_intro.txt" => {
            context! { subject => "Svarprocent uge 38: 42 %", is_final => false, days_left => 12 }
        }
        "digest_subject.txt" => {
            context! { week => 38, rate => "42 %", answered => 84, is_final => false }
        }
        "digest.txt" | "digest.html" => {
            let d = crate::analysis::digest::sample();
            let subject = crate::analysis::digest::subject(&d);
            crate::analysis::digest::context(&d, &subject, &subject, Some("svarprocent"))
        }
        "form.html" => context! {
            survey => context! { title => "Spørgeskema", intro => "", questions => Vec::<Value>::new() },
            action => format!("/s/{SAMPLE_TOKEN}"),
            errors => context! {},
            values => context! {},
            max_text => 5000,
            max_other => 500,
            switch_url => format!("/s/{SAMPLE_TOKEN}?lang=en"),
            unsubscribe_action => format!("/u/{SAMPLE_TOKEN}"),
        },
        "error.html" => context! { kind => "unknown_link" },
        "opted_out.html" => context! { answer_url => format!("/s/{SAMPLE_TOKEN}?svar=alligevel") },
        "closed.html" => context! { until => "30. september 2024" },
        "unsubscribe.html" => context! { action => format!("/u/{SAMPLE_TOKEN}") },
        "privacy.html" => context! { privacy => sample_privacy() },
        _ => context! {},
    };
    let base = if spec(name).is_some_and(Spec::is_page) {
        page
    } else {
        mail
    };
    context! { ..own, ..base }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_renders_with_its_sample_and_uses_only_known_variables() {
        let texts = Texts::builtin();
        for s in SPECS {
            let problems = texts.check(s, Path::new(s.name), s.builtin);
            assert!(problems.is_empty(), "{}: {problems:?}", s.name);
        }
    }

    #[test]
    fn the_builtin_digest_subject_is_the_digests() {
        let t = Texts::builtin();
        let s = t
            .render("digest_subject.txt", sample("digest_subject.txt"))
            .unwrap();
        // The built-in subject line, as the digest mails it.
        assert_eq!(s, "Svarprocent uge 38: 42 % (84 svar)");
    }

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (n, t) in files {
            std::fs::write(d.path().join(n), t).unwrap();
        }
        d
    }

    #[test]
    fn an_override_replaces_the_builtin() {
        let d = dir_with(&[("invitation_subject.txt", "Ny tekst fra {{ agency }}")]);
        let t = Texts::load(d.path()).unwrap();
        assert_eq!(t.overridden, ["invitation_subject.txt"]);
        let out = t
            .render("invitation_subject.txt", sample("invitation_subject.txt"))
            .unwrap();
        assert_eq!(out, "Ny tekst fra SIRI");
    }

    #[test]
    fn errors_name_the_file_and_the_line() {
        let d = dir_with(&[
            ("invitation.txt", "Hej\n\n{{ link }}\nSlut {{ deadlin }}\n"),
            ("reminder.txt", "Hej\n{% if link %}\nmangler endif\n"),
            ("confirmation.txt", "ok"),
            ("invitation.html", "<p>Intet link her, {{ agency }}</p>"),
            ("invitaton.txt", "stavefejl i filnavnet"),
            ("digest.txt", "{{ intro }}\n\nI alt: {{ totl.answered }}\n"),
        ]);
        let problems = Texts::load(d.path()).unwrap_err();
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        let find = |file: &str| {
            text.iter()
                .find(|t| t.contains(&format!("/{file}")))
                .unwrap_or_else(|| panic!("no problem for {file}: {text:#?}"))
        };
        assert!(find("invitation.txt line 4").contains("unknown variable `deadlin`"));
        assert!(
            find("reminder.txt line").contains("syntax error"),
            "{text:#?}"
        );
        assert!(find("invitation.html").contains("does not show the personal link"));
        assert!(find("invitaton.txt").contains("is not a canvass template"));
        assert!(find("digest.txt line 3").contains("unknown variable `totl`"));
        assert_eq!(problems.len(), 5, "{text:#?}");
    }
}
