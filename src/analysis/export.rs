//! The stored answers as a file for a spreadsheet (CSV) or a program (JSON).
//!
//! Pure functions over the survey definition and the answers the caller
//! passes; no store, no I/O. One row (object) per answer, sorted by day (the
//! store's own order is random), numbered from 1: the row number is not a
//! stored key and links nothing.
//!
//! CSV columns, all named by stable machine codes from the survey definition
//! (`q{nr}_{code}`):
//!
//! - `row`, `survey_version`, `region`, `day` (YYYY-MM-DD);
//! - a single-choice question: `q1_organisation` (the option's code),
//!   `q1_organisation_label` (its Danish label) and, for each option with a
//!   text field, `q1_organisation_andet_tekst`;
//! - a multiple-choice question: one 0/1 column per option,
//!   `q4_raadgivning__risiko`, and `q4_raadgivning_andet_tekst` for each option
//!   with a text field (cells are empty, not 0, when the question was not
//!   answered);
//! - a text question: `q8_kommentarer`;
//! - `ukendte_svar_json`: whatever could not be placed in the columns above
//!   (a question the definition does not know, an unknown option code, a value
//!   of another kind than the question), as a JSON object keyed by question
//!   code. Nothing stored is dropped.
//!
//! An unknown option code is exported as it is, and its label is the code.
//!
//! The CSV is meant to be opened in a spreadsheet: fields are quoted per RFC
//! 4180, lines end in CRLF, an optional byte-order mark tells Excel it is
//! UTF-8, and a cell that starts with `=`, `+`, `-`, `@`, tab or CR (which a
//! spreadsheet would run as a formula) is prefixed with `'`. The JSON is the
//! exact data.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde_json::{json, Map, Value as Json};

use crate::answer::Value;
use crate::store::StoredResponse;
use crate::survey::{Choice, Kind, Question, Survey};

/// The byte-order mark that makes Excel read a CSV file as UTF-8.
pub const BOM: char = '\u{FEFF}';

/// The column of whatever did not fit the survey's columns.
pub const UNPLACED_COLUMN: &str = "ukendte_svar_json";

/// The export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.extension())
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Format, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            other => Err(format!(
                "unknown export format {other:?}: use \"csv\" or \"json\""
            )),
        }
    }
}

/// The export in `format`; `bom` only applies to CSV.
pub fn export(format: Format, survey: &Survey, responses: &[StoredResponse], bom: bool) -> String {
    match format {
        Format::Csv => to_csv(survey, responses, bom),
        Format::Json => to_json(survey, responses),
    }
}

/// One column of the CSV (and of the xlsx answers sheet).
pub(crate) enum Col<'a> {
    Row,
    Version,
    Region,
    Day,
    /// The chosen option's code.
    Code(&'a Question),
    /// The chosen option's label.
    Label(&'a Question),
    /// The free text of an option with a text field.
    OptionText(&'a Question, &'a Choice),
    /// 0/1: the option of a multiple-choice question was chosen.
    Flag(&'a Question, &'a Choice),
    /// The answer to a text question.
    Text(&'a Question),
    Unplaced,
}

impl Col<'_> {
    pub(crate) fn name(&self) -> String {
        let q = |q: &Question| format!("q{}_{}", q.nr, q.code);
        match self {
            Col::Row => "row".to_string(),
            Col::Version => "survey_version".to_string(),
            Col::Region => "region".to_string(),
            Col::Day => "day".to_string(),
            Col::Code(qn) | Col::Text(qn) => q(qn),
            Col::Label(qn) => format!("{}_label", q(qn)),
            Col::OptionText(qn, o) => format!("{}_{}_tekst", q(qn), o.code),
            Col::Flag(qn, o) => format!("{}__{}", q(qn), o.code),
            Col::Unplaced => UNPLACED_COLUMN.to_string(),
        }
    }
}

pub(crate) fn columns_of(survey: &Survey) -> Vec<Col<'_>> {
    let mut cols = vec![Col::Row, Col::Version, Col::Region, Col::Day];
    for q in &survey.questions {
        match q.kind {
            Kind::Single => {
                cols.push(Col::Code(q));
                cols.push(Col::Label(q));
                cols.extend(
                    q.options
                        .iter()
                        .filter(|o| o.text_field)
                        .map(|o| Col::OptionText(q, o)),
                );
            }
            Kind::Multi => {
                cols.extend(q.options.iter().map(|o| Col::Flag(q, o)));
                cols.extend(
                    q.options
                        .iter()
                        .filter(|o| o.text_field)
                        .map(|o| Col::OptionText(q, o)),
                );
            }
            Kind::Text => cols.push(Col::Text(q)),
        }
    }
    cols.push(Col::Unplaced);
    cols
}

/// The CSV header: the machine code of every column, in order.
pub fn columns(survey: &Survey) -> Vec<String> {
    columns_of(survey).iter().map(Col::name).collect()
}

/// The label of `code` in `q`, or the code itself when the definition does
/// not know it (an answer from another version).
fn label_of<'a>(q: &'a Question, code: &'a str) -> &'a str {
    q.options
        .iter()
        .find(|o| o.code == code)
        .map_or(code, |o| o.label.as_str())
}

/// The cells of one answer, in column order.
pub(crate) fn cells<'a>(cols: &[Col<'a>], row: usize, r: &'a StoredResponse) -> Vec<Cow<'a, str>> {
    // A value the columns cannot hold completely is kept whole in the
    // unplaced column, so nothing is lost or split.
    let unplaced: BTreeMap<&str, &Value> = r
        .answers
        .iter()
        .filter(|(code, value)| !fits(cols, code, value))
        .map(|(code, value)| (code.as_str(), value))
        .collect();
    cols.iter()
        .map(|col| -> Cow<'a, str> {
            match col {
                Col::Row => row.to_string().into(),
                Col::Version => r.survey_version.to_string().into(),
                Col::Region => r.region.as_deref().unwrap_or("").into(),
                Col::Day => r.day.format("%Y-%m-%d").to_string().into(),
                Col::Code(q) => match r.answers.get(&q.code) {
                    Some(Value::Single { code, .. }) => code.as_str().into(),
                    _ => "".into(),
                },
                Col::Label(q) => match r.answers.get(&q.code) {
                    Some(Value::Single { code, .. }) => label_of(q, code).into(),
                    _ => "".into(),
                },
                Col::OptionText(q, o) => match r.answers.get(&q.code) {
                    Some(Value::Single {
                        code,
                        other: Some(t),
                    }) if *code == o.code => t.as_str().into(),
                    Some(Value::Multi {
                        codes,
                        other: Some(t),
                    }) if first_text_option(q, codes) == Some(o.code.as_str()) => t.as_str().into(),
                    _ => "".into(),
                },
                Col::Flag(q, o) => match r.answers.get(&q.code) {
                    Some(Value::Multi { codes, .. }) if codes.contains(&o.code) => "1".into(),
                    Some(Value::Multi { .. }) => "0".into(),
                    _ => "".into(),
                },
                Col::Text(q) => match r.answers.get(&q.code) {
                    Some(Value::Text { text }) => text.as_str().into(),
                    _ => "".into(),
                },
                Col::Unplaced if unplaced.is_empty() => "".into(),
                Col::Unplaced => serde_json::to_string(&unplaced).unwrap_or_default().into(),
            }
        })
        .collect()
}

/// The option with a text field that gets a multiple-choice answer's free
/// text: the first chosen one, in the definition's order.
fn first_text_option<'a>(q: &'a Question, codes: &[String]) -> Option<&'a str> {
    q.options
        .iter()
        .find(|o| o.text_field && codes.contains(&o.code))
        .map(|o| o.code.as_str())
}

/// Whether the columns hold `value` completely.
fn fits(cols: &[Col<'_>], code: &str, value: &Value) -> bool {
    let Some(q) = cols.iter().find_map(|c| match c {
        Col::Code(q) | Col::Flag(q, _) | Col::Text(q) if q.code == code => Some(*q),
        _ => None,
    }) else {
        return false;
    };
    let known = |c: &str| q.options.iter().any(|o| o.code == c);
    match (q.kind, value) {
        (Kind::Single, Value::Single { code, other }) => match other {
            None => true,
            Some(_) => q.options.iter().any(|o| o.code == *code && o.text_field),
        },
        (Kind::Multi, Value::Multi { codes, other }) => {
            codes.iter().all(|c| known(c))
                && (other.is_none() || first_text_option(q, codes).is_some())
        }
        (Kind::Text, Value::Text { .. }) => true,
        _ => false,
    }
}

/// Sorted by day; the caller's (the store's random) order within a day.
pub(crate) fn ordered(responses: &[StoredResponse]) -> Vec<&StoredResponse> {
    let mut out: Vec<&StoredResponse> = responses.iter().collect();
    out.sort_by_key(|r| r.day);
    out
}

/// The answers as CSV, comma-separated, with an optional byte-order mark.
pub fn to_csv(survey: &Survey, responses: &[StoredResponse], bom: bool) -> String {
    to_csv_with_delimiter(survey, responses, bom, ',')
}

/// As [`to_csv`] with another delimiter, e.g. `;`, which a Danish Excel
/// splits on when a file is opened by double-click.
pub fn to_csv_with_delimiter(
    survey: &Survey,
    responses: &[StoredResponse],
    bom: bool,
    delimiter: char,
) -> String {
    let cols = columns_of(survey);
    let mut out = String::new();
    if bom {
        out.push(BOM);
    }
    let header: Vec<String> = cols.iter().map(Col::name).collect();
    push_record(&mut out, header.iter().map(String::as_str), delimiter);
    for (i, r) in ordered(responses).into_iter().enumerate() {
        let row = cells(&cols, i + 1, r);
        push_record(&mut out, row.iter().map(|c| c.as_ref()), delimiter);
    }
    out
}

fn push_record<'a>(out: &mut String, fields: impl Iterator<Item = &'a str>, delimiter: char) {
    for (i, f) in fields.enumerate() {
        if i > 0 {
            out.push(delimiter);
        }
        out.push_str(&csv_field(&defuse_formula(f), delimiter));
    }
    out.push_str("\r\n");
}

/// One CSV field, quoted when it holds the delimiter, a quote, CR or LF
/// (RFC 4180); a quote inside is doubled.
pub fn csv_field(s: &str, delimiter: char) -> Cow<'_, str> {
    if s.contains([delimiter, '"', '\n', '\r']) {
        Cow::Owned(format!("\"{}\"", s.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(s)
    }
}

/// A cell a spreadsheet would run as a formula, with `'` in front so it is
/// shown as text (OWASP "CSV injection").
fn defuse_formula(s: &str) -> Cow<'_, str> {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{s}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// The answers as pretty-printed JSON (see [`to_json_value`]).
pub fn to_json(survey: &Survey, responses: &[StoredResponse]) -> String {
    let mut s = serde_json::to_string_pretty(&to_json_value(survey, responses))
        .unwrap_or_else(|_| "{}".to_string());
    s.push('\n');
    s
}

/// The answers as JSON: `{"survey": <the definition>, "responses": [...]}`.
/// Each response has `row`, `survey_id`, `survey_version`, `region` (or
/// null), `day` and `answers`: every question of the definition by code (null
/// when not answered), plus any other code stored. A choice is
/// `{"code", "label", "text"}`, a multiple choice `{"choices": [{"code",
/// "label"}], "text"}`, a text `{"text"}`; `text` is the free text of an
/// option with a text field, or null.
pub fn to_json_value(survey: &Survey, responses: &[StoredResponse]) -> Json {
    let rows: Vec<Json> = ordered(responses)
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let mut answers = Map::new();
            for q in &survey.questions {
                let v = r
                    .answers
                    .get(&q.code)
                    .map_or(Json::Null, |v| value_json(Some(q), v));
                answers.insert(q.code.clone(), v);
            }
            for (code, v) in &r.answers {
                if survey.question(code).is_none() {
                    answers.insert(code.clone(), value_json(None, v));
                }
            }
            json!({
                "row": i + 1,
                "survey_id": r.survey_id,
                "survey_version": r.survey_version,
                "region": r.region,
                "day": r.day.format("%Y-%m-%d").to_string(),
                "answers": answers,
            })
        })
        .collect();
    json!({ "survey": survey, "responses": rows })
}

fn value_json(q: Option<&Question>, v: &Value) -> Json {
    let label = |code: &str| -> String {
        match q {
            Some(q) => label_of(q, code).to_string(),
            None => code.to_string(),
        }
    };
    match v {
        Value::Single { code, other } => json!({
            "code": code,
            "label": label(code),
            "text": other,
        }),
        Value::Multi { codes, other } => json!({
            "choices": codes
                .iter()
                .map(|c| json!({ "code": c, "label": label(c) }))
                .collect::<Vec<_>>(),
            "text": other,
        }),
        Value::Text { text } => json!({ "text": text }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::Answers;
    use chrono::NaiveDate;
    use std::path::Path;

    fn shipped() -> Survey {
        Survey::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/survey.da.toml"))
            .expect("the shipped survey loads")
    }

    fn single(code: &str, other: Option<&str>) -> Value {
        Value::Single {
            code: code.into(),
            other: other.map(Into::into),
        }
    }

    fn multi(codes: &[&str], other: Option<&str>) -> Value {
        Value::Multi {
            codes: codes.iter().map(|c| c.to_string()).collect(),
            other: other.map(Into::into),
        }
    }

    fn response(day: u32, region: Option<&str>, values: Vec<(&str, Value)>) -> StoredResponse {
        let answers: Answers = values
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        StoredResponse {
            survey_id: "siri-sikkerhedskonsulentordningen".into(),
            survey_version: 1,
            region: region.map(Into::into),
            day: NaiveDate::from_ymd_opt(2024, 8, day).expect("a valid day"),
            answers,
        }
    }

    const TRICKY: &str = "Hun sagde \"tak\", og\nså gik hun; æøå ÆØÅ 👍";

    fn tricky() -> StoredResponse {
        response(
            20,
            Some("Syddanmark"),
            vec![
                (
                    "organisation",
                    single("andet", Some("Frivillig, \"Røde Kors\"")),
                ),
                ("antal_sager", single("2_5", None)),
                ("boern", single("ja", None)),
                (
                    "raadgivning",
                    multi(&["risiko", "andet"], Some("Regler i andre lande")),
                ),
                ("tilgaengelighed", single("ikke_relevant", None)),
                ("hjulpet_videre", single("meget_hoej", None)),
                ("anbefale", single("hoej", None)),
                (
                    "kommentarer",
                    Value::Text {
                        text: TRICKY.into(),
                    },
                ),
            ],
        )
    }

    /// A small but correct CSV reader for the tests: RFC 4180 quoting.
    fn parse_csv(s: &str) -> Vec<Vec<String>> {
        let mut rows = Vec::new();
        let mut row = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            if quoted {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        field.push('"');
                    } else {
                        quoted = false;
                    }
                } else {
                    field.push(c);
                }
            } else {
                match c {
                    '"' => quoted = true,
                    ',' => row.push(std::mem::take(&mut field)),
                    '\r' => {}
                    '\n' => {
                        row.push(std::mem::take(&mut field));
                        rows.push(std::mem::take(&mut row));
                    }
                    _ => field.push(c),
                }
            }
        }
        assert!(!quoted, "unterminated quote");
        assert!(field.is_empty() && row.is_empty(), "last line ends in CRLF");
        rows
    }

    fn cell<'a>(header: &[String], row: &'a [String], name: &str) -> &'a str {
        let i = header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name}"));
        &row[i]
    }

    #[test]
    fn header_has_stable_machine_codes() {
        let cols = columns(&shipped());
        let expected = [
            "row",
            "survey_version",
            "region",
            "day",
            "q1_organisation",
            "q1_organisation_label",
            "q1_organisation_andet_tekst",
            "q2_antal_sager",
            "q2_antal_sager_label",
            "q3_boern",
            "q3_boern_label",
            "q4_raadgivning__opmaerksomhed",
            "q4_raadgivning__risiko",
            "q4_raadgivning__sikkerhed",
            "q4_raadgivning__genopdragelsesrejser",
            "q4_raadgivning__samarbejdspartnere",
            "q4_raadgivning__andet",
            "q4_raadgivning_andet_tekst",
            "q5_tilgaengelighed",
            "q5_tilgaengelighed_label",
            "q6_hjulpet_videre",
            "q6_hjulpet_videre_label",
            "q7_anbefale",
            "q7_anbefale_label",
            "q8_kommentarer",
            "ukendte_svar_json",
        ];
        assert_eq!(cols, expected);
        let csv = to_csv(&shipped(), &[], false);
        assert_eq!(csv, format!("{}\r\n", expected.join(",")));
    }

    #[test]
    fn csv_quotes_tricky_text_and_round_trips() {
        let survey = shipped();
        let csv = to_csv(&survey, &[tricky()], false);
        assert!(!csv.starts_with(BOM));
        // The free text is quoted, its quotes doubled, its newline kept.
        assert!(csv.contains("\"Hun sagde \"\"tak\"\", og\nså gik hun; æøå ÆØÅ 👍\""));
        let rows = parse_csv(&csv);
        assert_eq!(rows.len(), 2);
        let (h, r) = (&rows[0], &rows[1]);
        assert_eq!(h.len(), r.len());
        assert_eq!(cell(h, r, "row"), "1");
        assert_eq!(cell(h, r, "survey_version"), "1");
        assert_eq!(cell(h, r, "region"), "Syddanmark");
        assert_eq!(cell(h, r, "day"), "2024-08-20");
        assert_eq!(cell(h, r, "q1_organisation"), "andet");
        assert_eq!(cell(h, r, "q1_organisation_label"), "Andet, angiv venligst");
        assert_eq!(
            cell(h, r, "q1_organisation_andet_tekst"),
            "Frivillig, \"Røde Kors\""
        );
        assert_eq!(cell(h, r, "q2_antal_sager_label"), "2-5 sager");
        assert_eq!(cell(h, r, "q4_raadgivning__risiko"), "1");
        assert_eq!(cell(h, r, "q4_raadgivning__sikkerhed"), "0");
        assert_eq!(cell(h, r, "q4_raadgivning__andet"), "1");
        assert_eq!(
            cell(h, r, "q4_raadgivning_andet_tekst"),
            "Regler i andre lande"
        );
        assert_eq!(
            cell(h, r, "q5_tilgaengelighed_label"),
            "Jeg har ikke været i kontakt om akutte sager"
        );
        assert_eq!(cell(h, r, "q8_kommentarer"), TRICKY);
        assert_eq!(cell(h, r, "ukendte_svar_json"), "");
    }

    #[test]
    fn bom_only_when_asked() {
        let survey = shipped();
        let with = to_csv(&survey, &[tricky()], true);
        assert!(with.starts_with('\u{FEFF}'));
        assert_eq!(with.as_bytes()[..3], [0xEF, 0xBB, 0xBF]);
        assert!(with[3..].starts_with("row,"));
        let without = to_csv(&survey, &[tricky()], false);
        assert_eq!(&with[3..], without);
    }

    #[test]
    fn quoting_function() {
        assert_eq!(csv_field("plain æøå 👍", ','), "plain æøå 👍");
        assert_eq!(csv_field("a,b", ','), "\"a,b\"");
        assert_eq!(csv_field("a;b", ','), "a;b");
        assert_eq!(csv_field("a;b", ';'), "\"a;b\"");
        assert_eq!(csv_field("say \"hi\"", ','), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines", ','), "\"two\nlines\"");
        assert_eq!(csv_field("cr\r", ','), "\"cr\r\"");
        assert_eq!(csv_field("", ','), "");
    }

    #[test]
    fn formulas_are_defused() {
        let survey = shipped();
        let r = response(
            7,
            None,
            vec![(
                "kommentarer",
                Value::Text {
                    text: "=HYPERLINK(\"x\",\"klik\")".into(),
                },
            )],
        );
        let rows = parse_csv(&to_csv(&survey, std::slice::from_ref(&r), false));
        assert_eq!(
            cell(&rows[0], &rows[1], "q8_kommentarer"),
            "'=HYPERLINK(\"x\",\"klik\")"
        );
        // The JSON keeps the exact text.
        let j = to_json_value(&survey, &[r]);
        assert_eq!(
            j["responses"][0]["answers"]["kommentarer"]["text"],
            "=HYPERLINK(\"x\",\"klik\")"
        );
    }

    #[test]
    fn semicolon_delimiter() {
        let csv = to_csv_with_delimiter(&shipped(), &[tricky()], true, ';');
        assert!(csv.starts_with("\u{FEFF}row;survey_version;region;day;"));
        assert!(csv.contains(";\"Frivillig, \"\"Røde Kors\"\"\";"));
    }

    #[test]
    fn unanswered_is_empty_not_zero() {
        let survey = shipped();
        let r = response(8, None, vec![("organisation", single("politi", None))]);
        let rows = parse_csv(&to_csv(&survey, &[r], false));
        let (h, r) = (&rows[0], &rows[1]);
        assert_eq!(cell(h, r, "region"), "");
        assert_eq!(cell(h, r, "q1_organisation_label"), "Politi");
        assert_eq!(cell(h, r, "q4_raadgivning__risiko"), "");
        assert_eq!(cell(h, r, "q8_kommentarer"), "");
    }

    #[test]
    fn other_versions_and_unknown_codes_are_exported_not_dropped() {
        let survey = shipped();
        let mut r = response(
            9,
            Some("Sjælland"),
            vec![
                ("organisation", single("ngo", None)),
                ("raadgivning", multi(&["risiko", "jura"], None)),
                ("antal_sager", multi(&["1"], None)),
                ("gammelt_spoergsmaal", Value::Text { text: "hej".into() }),
                ("boern", single("ja", Some("fri tekst uden tekstfelt"))),
            ],
        );
        r.survey_version = 7;
        let rows = parse_csv(&to_csv(&survey, &[r.clone()], false));
        let (h, row) = (&rows[0], &rows[1]);
        assert_eq!(cell(h, row, "survey_version"), "7");
        assert_eq!(cell(h, row, "q1_organisation"), "ngo");
        assert_eq!(cell(h, row, "q1_organisation_label"), "ngo");
        assert_eq!(cell(h, row, "q4_raadgivning__risiko"), "1");
        assert_eq!(cell(h, row, "q2_antal_sager"), "");
        assert_eq!(cell(h, row, "q3_boern"), "ja");
        let unplaced: serde_json::Value =
            serde_json::from_str(cell(h, row, "ukendte_svar_json")).expect("valid JSON");
        let keys: Vec<&str> = unplaced
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            ["antal_sager", "boern", "gammelt_spoergsmaal", "raadgivning"]
        );
        assert_eq!(unplaced["raadgivning"]["multi"]["codes"][1], "jura");

        let j = to_json_value(&survey, &[r]);
        let a = &j["responses"][0]["answers"];
        assert_eq!(a["organisation"]["label"], "ngo");
        assert_eq!(a["raadgivning"]["choices"][1]["label"], "jura");
        assert_eq!(
            a["raadgivning"]["choices"][0]["label"],
            "Rådgivning om at vurdere risiko i en konkret sag"
        );
        assert_eq!(a["gammelt_spoergsmaal"]["text"], "hej");
        assert_eq!(a["kommentarer"], Json::Null);
    }

    #[test]
    fn rows_are_sorted_by_day_and_numbered() {
        let survey = shipped();
        let late = response(30, Some("Nordjylland"), vec![]);
        let early = response(7, Some("Hovedstaden"), vec![]);
        let rows = parse_csv(&to_csv(&survey, &[late, early], false));
        assert_eq!(rows[1][..4], ["1", "1", "Hovedstaden", "2024-08-07"]);
        assert_eq!(rows[2][..4], ["2", "1", "Nordjylland", "2024-08-30"]);
    }

    #[test]
    fn json_has_codes_and_labels() {
        let survey = shipped();
        let text = to_json(&survey, &[tricky()]);
        let j: Json = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(j["survey"]["id"], "siri-sikkerhedskonsulentordningen");
        let r = &j["responses"][0];
        assert_eq!(r["row"], 1);
        assert_eq!(r["region"], "Syddanmark");
        assert_eq!(r["day"], "2024-08-20");
        let a = &r["answers"];
        assert_eq!(a["organisation"]["code"], "andet");
        assert_eq!(a["organisation"]["label"], "Andet, angiv venligst");
        assert_eq!(a["organisation"]["text"], "Frivillig, \"Røde Kors\"");
        assert_eq!(a["raadgivning"]["choices"][1]["code"], "andet");
        assert_eq!(a["raadgivning"]["text"], "Regler i andre lande");
        assert_eq!(a["anbefale"]["label"], "I høj grad");
        assert_eq!(a["kommentarer"]["text"], TRICKY);
        assert!(text.contains("æøå ÆØÅ 👍"), "UTF-8, not escaped");
    }

    #[test]
    fn format_parses() {
        assert_eq!("CSV".parse::<Format>(), Ok(Format::Csv));
        assert_eq!("json".parse::<Format>(), Ok(Format::Json));
        assert!("xlsx".parse::<Format>().is_err());
        assert_eq!(Format::Csv.extension(), "csv");
        assert!(export(Format::Csv, &shipped(), &[], true).starts_with(BOM));
    }
}
