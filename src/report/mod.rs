//! The agency's analysis of the answers (the survey note's figures), computed
//! from the survey definition and the stored answers; then rendered as
//! terminal tables or as one self-contained HTML page.
//!
//! Pure functions over plain data: the caller passes the answers and the
//! invitation counts per region (from the store's counters).
//!
//! What the report shows, by the question codes of the shipped survey:
//!
//! - response rate overall and per region (invited, answered, rate);
//! - figure 1: respondents by type of organisation (`organisation`);
//! - figure 2: number of cases (`antal_sager`) by type of organisation;
//! - the share whose cases concerned children (`boern`);
//! - the share who got more than one kind of advice (`raadgivning`), overall
//!   and among those with one case;
//! - figure 3: kinds of advice by type of organisation (multiple choice: a row
//!   does not add up to 100 %);
//! - figure 4: satisfaction (`tilgaengelighed`, `hjulpet_videre`, `anbefale`)
//!   as the share of "I meget høj grad" + "I høj grad", with the full
//!   distributions; options marked `not_applicable` are left out of the base.
//!
//! A figure whose question is missing from the definition (or has another
//! kind) is skipped with a note. Percentages are whole, rounded half up and
//! computed with integers ("–" when there is nothing to divide by). Every
//! group or base with fewer than [`SMALL_GROUP`] answers is marked `*`, never
//! hidden.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use chrono::NaiveDate;
use serde::Serialize;

use crate::answer::Value;
use crate::store::StoredResponse;
use crate::survey::{Choice, Kind, Question, Survey};

/// Groups and bases with fewer answers than this are marked.
pub const SMALL_GROUP: u64 = 5;
/// The mark of a small group.
pub const SMALL_MARK: &str = "*";
/// The footnote of the mark.
pub const SMALL_NOTE: &str = "færre end 5 svar — læses med stor forsigtighed";

/// The question codes the analysis is driven by.
pub mod codes {
    pub const ORGANISATION: &str = "organisation";
    pub const CASES: &str = "antal_sager";
    pub const CHILDREN: &str = "boern";
    pub const ADVICE: &str = "raadgivning";
    pub const SATISFACTION: [&str; 3] = ["tilgaengelighed", "hjulpet_videre", "anbefale"];
    /// The option of [`CHILDREN`] that means yes (else its first option).
    pub const YES: &str = "ja";
    /// The option of [`CASES`] that means one case (else its first option).
    pub const ONE_CASE: &str = "1";
    /// The two top options of a satisfaction scale (else its first two).
    pub const TOP: [&str; 2] = ["meget_hoej", "hoej"];
}

/// Whole percent of `count` in `base`, rounded half up with integers (79 of
/// 157 is 50, 2 of 79 is 3); `None` when `base` is 0.
pub fn percent(count: u64, base: u64) -> Option<u64> {
    if base == 0 {
        return None;
    }
    let (c, b) = (u128::from(count), u128::from(base));
    u64::try_from((200 * c + b) / (2 * b)).ok()
}

/// "50 %", or "–" when there is no percentage.
pub fn fmt_percent(p: Option<u64>) -> String {
    match p {
        Some(p) => format!("{p}\u{a0}%"),
        None => "–".to_string(),
    }
}

/// A count out of a base.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Share {
    pub count: u64,
    pub base: u64,
    /// Whole percent; `None` when the base is 0.
    pub percent: Option<u64>,
    /// The base has fewer than [`SMALL_GROUP`] answers.
    pub small_base: bool,
}

impl Share {
    pub fn new(count: u64, base: u64) -> Share {
        Share {
            count,
            base,
            percent: percent(count, base),
            small_base: base < SMALL_GROUP,
        }
    }
}

/// A figure, or why it could not be made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Figure<T> {
    Shown(T),
    Skipped { reason: String },
}

impl<T> Figure<T> {
    pub fn shown(&self) -> Option<&T> {
        match self {
            Figure::Shown(t) => Some(t),
            Figure::Skipped { .. } => None,
        }
    }
}

/// The question a figure is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuestionRef {
    pub nr: u32,
    pub code: String,
    pub text: String,
}

impl QuestionRef {
    fn of(q: &Question) -> QuestionRef {
        QuestionRef {
            nr: q.nr,
            code: q.code.clone(),
            text: q.text.clone(),
        }
    }
}

/// An answer option, a group of respondents, or a code the definition does
/// not know (then `known` is false and the label is the code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Category {
    pub code: String,
    pub label: String,
    pub known: bool,
    pub not_applicable: bool,
}

impl Category {
    fn of(c: &Choice) -> Category {
        Category {
            code: c.code.clone(),
            label: c.label.clone(),
            known: true,
            not_applicable: c.not_applicable,
        }
    }

    fn unknown(code: &str) -> Category {
        Category {
            code: code.to_string(),
            label: code.to_string(),
            known: false,
            not_applicable: false,
        }
    }

    /// The group of respondents who did not answer the grouping question.
    fn unanswered() -> Category {
        Category {
            code: String::new(),
            label: "Uoplyst".to_string(),
            known: false,
            not_applicable: false,
        }
    }
}

/// Response rate of one region (or the total).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RateRow {
    pub region: String,
    pub invited: u64,
    pub answered: u64,
    /// answered of invited.
    pub rate: Share,
    /// Fewer than 5 answers or fewer than 5 invited: marked.
    pub small: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResponseRates {
    pub regions: Vec<RateRow>,
    pub total: RateRow,
}

/// The answers to one question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Distribution {
    pub question: QuestionRef,
    /// The rows are groups of respondents (figure 1): a row with fewer than
    /// 5 is itself marked.
    pub groups: bool,
    /// Answered and applicable: the base of the shares.
    pub base: u64,
    pub small_base: bool,
    pub rows: Vec<DistRow>,
    /// Answers with an option marked `not_applicable`: counted, not in the base.
    pub not_applicable: Vec<CountRow>,
    /// Respondents without an (understandable) answer.
    pub unanswered: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DistRow {
    pub category: Category,
    pub share: Share,
    /// A group with fewer than 5 respondents (only when `groups`).
    pub small_group: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CountRow {
    pub category: Category,
    pub count: u64,
}

/// A question broken down by the groups of another (figures 2 and 3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CrossTab {
    pub groups_question: QuestionRef,
    pub question: QuestionRef,
    /// Multiple choice: a row does not add up to 100 %.
    pub multiple: bool,
    pub columns: Vec<Category>,
    pub rows: Vec<GroupRow>,
    pub total: GroupRow,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupRow {
    pub group: Category,
    /// Respondents in the group who answered the question (the base).
    pub n: u64,
    pub small: bool,
    /// One per column, of `n`.
    pub cells: Vec<Share>,
}

/// The share of one option of a question (children: "Ja").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Highlight {
    pub option: Category,
    pub share: Share,
    pub distribution: Distribution,
}

/// More than one kind of advice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MultipleAdvice {
    pub question: QuestionRef,
    pub overall: Share,
    /// Among those with one case.
    pub one_case: Figure<OneCase>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OneCase {
    pub question: QuestionRef,
    pub option: Category,
    pub share: Share,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Satisfaction {
    pub items: Vec<Figure<SatisfactionItem>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SatisfactionItem {
    pub question: QuestionRef,
    /// The options counted as satisfied ("I meget høj grad", "I høj grad").
    pub top: Vec<Category>,
    pub share: Share,
    pub distribution: Distribution,
}

/// The whole analysis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub survey_id: String,
    pub title: String,
    pub survey_version: u32,
    /// Answers counted (those to this survey).
    pub respondents: u64,
    pub first_day: Option<NaiveDate>,
    pub last_day: Option<NaiveDate>,
    /// Answers counted, by the version of the survey they were given to.
    pub versions: BTreeMap<u32, u64>,
    pub small_group_limit: u64,
    pub small_group_note: String,
    /// What the reader must know about the data (other versions, unknown codes).
    pub notes: Vec<String>,
    pub response_rate: Figure<ResponseRates>,
    pub organisations: Figure<Distribution>,
    pub cases_by_organisation: Figure<CrossTab>,
    pub children: Figure<Highlight>,
    pub multiple_advice: Figure<MultipleAdvice>,
    pub advice_by_organisation: Figure<CrossTab>,
    pub satisfaction: Figure<Satisfaction>,
}

// ---------------------------------------------------------------------------
// Reading answers

/// What one respondent answered to one choice question.
enum Sel<'a> {
    Missing,
    /// Only options marked `not_applicable`.
    NotApplicable,
    Chosen(BTreeSet<&'a str>),
}

/// The chosen code of a single-choice question (a one-element multiple
/// choice from another version counts too).
fn chosen<'a>(r: &'a StoredResponse, q: &Question) -> Option<&'a str> {
    match r.answers.get(&q.code) {
        Some(Value::Single { code, .. }) if !code.is_empty() => Some(code.as_str()),
        Some(Value::Multi { codes, .. }) if codes.len() == 1 && !codes[0].is_empty() => {
            Some(codes[0].as_str())
        }
        _ => None,
    }
}

fn raw_codes<'a>(r: &'a StoredResponse, q: &Question) -> BTreeSet<&'a str> {
    match (q.kind, r.answers.get(&q.code)) {
        (Kind::Single, _) => chosen(r, q).into_iter().collect(),
        (Kind::Multi, Some(Value::Multi { codes, .. })) => codes
            .iter()
            .map(String::as_str)
            .filter(|c| !c.is_empty())
            .collect(),
        (Kind::Multi, Some(Value::Single { code, .. })) if !code.is_empty() => {
            BTreeSet::from([code.as_str()])
        }
        _ => BTreeSet::new(),
    }
}

fn is_na(q: &Question, code: &str) -> bool {
    q.options.iter().any(|o| o.code == code && o.not_applicable)
}

fn select<'a>(r: &'a StoredResponse, q: &Question) -> Sel<'a> {
    let raw = raw_codes(r, q);
    if raw.is_empty() {
        return Sel::Missing;
    }
    let applicable: BTreeSet<&str> = raw.into_iter().filter(|c| !is_na(q, c)).collect();
    if applicable.is_empty() {
        Sel::NotApplicable
    } else {
        Sel::Chosen(applicable)
    }
}

/// The applicable options in the definition's order, then codes the
/// definition does not know, sorted.
fn answer_categories(q: &Question, rs: &[&StoredResponse]) -> Vec<Category> {
    let mut out: Vec<Category> = q
        .options
        .iter()
        .filter(|o| !o.not_applicable)
        .map(Category::of)
        .collect();
    let unknown: BTreeSet<&str> = rs
        .iter()
        .flat_map(|r| raw_codes(r, q))
        .filter(|c| !q.options.iter().any(|o| o.code == *c))
        .collect();
    out.extend(unknown.into_iter().map(Category::unknown));
    out
}

/// The groups of a grouping question: every option (shown even when empty),
/// unknown codes, and "Uoplyst" when someone did not answer.
fn group_categories(q: &Question, rs: &[&StoredResponse]) -> Vec<Category> {
    let mut out: Vec<Category> = q.options.iter().map(Category::of).collect();
    let unknown: BTreeSet<&str> = rs
        .iter()
        .filter_map(|r| chosen(r, q))
        .filter(|c| !q.options.iter().any(|o| o.code == *c))
        .collect();
    out.extend(unknown.into_iter().map(Category::unknown));
    if rs.iter().any(|r| chosen(r, q).is_none()) {
        out.push(Category::unanswered());
    }
    out
}

fn group_of<'a>(r: &'a StoredResponse, q: &Question) -> &'a str {
    chosen(r, q).unwrap_or("")
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------
// Computing

fn find<'a>(survey: &'a Survey, code: &str, kind: Kind) -> Result<&'a Question, String> {
    let Some(q) = survey.question(code) else {
        return Err(format!(
            "spørgsmålet «{code}» findes ikke i spørgeskemaet (version {})",
            survey.version
        ));
    };
    if q.kind != kind {
        let want = match kind {
            Kind::Single => "ét svar",
            Kind::Multi => "flere svar",
            Kind::Text => "fritekst",
        };
        return Err(format!(
            "spørgsmål {} («{code}») er ikke et spørgsmål med {want}",
            q.nr
        ));
    }
    Ok(q)
}

fn distribution(q: &Question, rs: &[&StoredResponse], groups: bool) -> Distribution {
    let sels: Vec<Sel> = rs.iter().map(|r| select(r, q)).collect();
    let base = count(sels.iter().filter(|s| matches!(s, Sel::Chosen(_))).count());
    let unanswered = count(sels.iter().filter(|s| matches!(s, Sel::Missing)).count());
    let rows = answer_categories(q, rs)
        .into_iter()
        .map(|category| {
            let n = count(
                sels.iter()
                    .filter(|s| matches!(s, Sel::Chosen(c) if c.contains(category.code.as_str())))
                    .count(),
            );
            DistRow {
                share: Share::new(n, base),
                small_group: groups && n < SMALL_GROUP,
                category,
            }
        })
        .collect();
    let not_applicable = q
        .options
        .iter()
        .filter(|o| o.not_applicable)
        .map(|o| CountRow {
            category: Category::of(o),
            count: count(
                rs.iter()
                    .filter(|r| raw_codes(r, q).contains(o.code.as_str()))
                    .count(),
            ),
        })
        .collect();
    Distribution {
        question: QuestionRef::of(q),
        groups,
        base,
        small_base: base < SMALL_GROUP,
        rows,
        not_applicable,
        unanswered,
    }
}

fn group_row(
    group: Category,
    q: &Question,
    columns: &[Category],
    members: &[&StoredResponse],
) -> GroupRow {
    let sels: Vec<BTreeSet<&str>> = members
        .iter()
        .filter_map(|r| match select(r, q) {
            Sel::Chosen(c) => Some(c),
            _ => None,
        })
        .collect();
    let n = count(sels.len());
    let cells = columns
        .iter()
        .map(|c| {
            Share::new(
                count(sels.iter().filter(|s| s.contains(c.code.as_str())).count()),
                n,
            )
        })
        .collect();
    GroupRow {
        group,
        n,
        small: n < SMALL_GROUP,
        cells,
    }
}

fn crosstab(groups_q: &Question, q: &Question, rs: &[&StoredResponse]) -> CrossTab {
    let columns = answer_categories(q, rs);
    let rows = group_categories(groups_q, rs)
        .into_iter()
        .map(|g| {
            let members: Vec<&StoredResponse> = rs
                .iter()
                .copied()
                .filter(|r| group_of(r, groups_q) == g.code)
                .collect();
            group_row(g, q, &columns, &members)
        })
        .collect();
    let all = Category {
        code: String::new(),
        label: "Alle".to_string(),
        known: false,
        not_applicable: false,
    };
    let total = group_row(all, q, &columns, rs);
    CrossTab {
        groups_question: QuestionRef::of(groups_q),
        question: QuestionRef::of(q),
        multiple: q.kind == Kind::Multi,
        columns,
        rows,
        total,
    }
}

/// The option with `code`, else the first applicable option.
fn option_or_first<'a>(q: &'a Question, code: &str) -> Option<&'a Choice> {
    q.options
        .iter()
        .find(|o| o.code == code)
        .or_else(|| q.options.iter().find(|o| !o.not_applicable))
}

fn more_than_one(q: &Question, rs: &[&StoredResponse]) -> Share {
    let sels: Vec<BTreeSet<&str>> = rs
        .iter()
        .filter_map(|r| match select(r, q) {
            Sel::Chosen(c) => Some(c),
            _ => None,
        })
        .collect();
    Share::new(
        count(sels.iter().filter(|s| s.len() > 1).count()),
        count(sels.len()),
    )
}

fn satisfaction_item(
    survey: &Survey,
    code: &str,
    rs: &[&StoredResponse],
) -> Figure<SatisfactionItem> {
    let q = match find(survey, code, Kind::Single) {
        Ok(q) => q,
        Err(reason) => return Figure::Skipped { reason },
    };
    let by_code: Vec<&Choice> = codes::TOP
        .iter()
        .filter_map(|c| q.options.iter().find(|o| o.code == *c && !o.not_applicable))
        .collect();
    let top: Vec<&Choice> = if by_code.len() == codes::TOP.len() {
        by_code
    } else {
        q.options
            .iter()
            .filter(|o| !o.not_applicable)
            .take(2)
            .collect()
    };
    if top.len() < 2 {
        return Figure::Skipped {
            reason: format!(
                "spørgsmål {} («{code}») har færre end to svarmuligheder",
                q.nr
            ),
        };
    }
    let distribution = distribution(q, rs, false);
    let satisfied: u64 = distribution
        .rows
        .iter()
        .filter(|r| top.iter().any(|t| t.code == r.category.code))
        .map(|r| r.share.count)
        .sum();
    Figure::Shown(SatisfactionItem {
        question: QuestionRef::of(q),
        top: top.into_iter().map(Category::of).collect(),
        share: Share::new(satisfied, distribution.base),
        distribution,
    })
}

fn skip<T>(reason: &str) -> Figure<T> {
    Figure::Skipped {
        reason: reason.to_string(),
    }
}

fn response_rates(rates: &[(String, u64, u64)]) -> Figure<ResponseRates> {
    if rates.is_empty() {
        return Figure::Skipped {
            reason: "der er ingen invitationstal".to_string(),
        };
    }
    let mut order: Vec<&str> = Vec::new();
    let mut sums: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (region, invited, answered) in rates {
        let e = sums.entry(region.as_str()).or_insert_with(|| {
            order.push(region.as_str());
            (0, 0)
        });
        e.0 = e.0.saturating_add(*invited);
        e.1 = e.1.saturating_add(*answered);
    }
    let row = |region: &str, invited: u64, answered: u64| RateRow {
        region: region.to_string(),
        invited,
        answered,
        rate: Share::new(answered, invited),
        small: answered < SMALL_GROUP || invited < SMALL_GROUP,
    };
    let regions: Vec<RateRow> = order
        .iter()
        .map(|r| {
            let (i, a) = sums.get(r).copied().unwrap_or_default();
            row(r, i, a)
        })
        .collect();
    let invited = regions
        .iter()
        .fold(0u64, |s, r| s.saturating_add(r.invited));
    let answered = regions
        .iter()
        .fold(0u64, |s, r| s.saturating_add(r.answered));
    Figure::Shown(ResponseRates {
        total: row("I alt", invited, answered),
        regions,
    })
}

/// The analysis of `responses` (those to another survey id are left out,
/// with a note) with the response rates of `rates`: `(region, invited,
/// answered)`, in the order to show them.
pub fn compute(
    survey: &Survey,
    responses: &[StoredResponse],
    rates: &[(String, u64, u64)],
) -> Report {
    let mut notes = Vec::new();
    let rs: Vec<&StoredResponse> = responses
        .iter()
        .filter(|r| r.survey_id == survey.id)
        .collect();
    let foreign = responses.len() - rs.len();
    if foreign > 0 {
        notes.push(format!(
            "{foreign} svar hører til et andet spørgeskema end «{}» og er ikke talt med.",
            survey.id
        ));
    }
    let mut versions: BTreeMap<u32, u64> = BTreeMap::new();
    for r in &rs {
        *versions.entry(r.survey_version).or_default() += 1;
    }
    for (v, n) in &versions {
        if *v != survey.version {
            notes.push(format!(
                "{n} svar er givet til version {v} af spørgeskemaet (denne rapport bruger version {}); de er talt med efter spørgsmålenes og svarmulighedernes koder.",
                survey.version
            ));
        }
    }
    let unknown_codes = rs.iter().any(|r| {
        survey.questions.iter().any(|q| {
            q.kind != Kind::Text
                && raw_codes(r, q)
                    .iter()
                    .any(|c| !q.options.iter().any(|o| o.code == *c))
        })
    });
    if unknown_codes {
        notes.push(
            "Nogle svar har svarmuligheder, som spørgeskemaet ikke kender; de vises med deres kode."
                .to_string(),
        );
    }

    let org = find(survey, codes::ORGANISATION, Kind::Single);
    let cases = find(survey, codes::CASES, Kind::Single);
    let advice = find(survey, codes::ADVICE, Kind::Multi);

    let organisations = match &org {
        Ok(q) => Figure::Shown(distribution(q, &rs, true)),
        Err(e) => skip(e),
    };
    let cases_by_organisation = match (&org, &cases) {
        (Ok(o), Ok(c)) => Figure::Shown(crosstab(o, c, &rs)),
        (Err(e), _) | (_, Err(e)) => skip(e),
    };
    let children = match find(survey, codes::CHILDREN, Kind::Single) {
        Ok(q) => match option_or_first(q, codes::YES) {
            Some(yes) => {
                let distribution = distribution(q, &rs, false);
                let n = distribution
                    .rows
                    .iter()
                    .find(|r| r.category.code == yes.code)
                    .map_or(0, |r| r.share.count);
                Figure::Shown(Highlight {
                    option: Category::of(yes),
                    share: Share::new(n, distribution.base),
                    distribution,
                })
            }
            None => Figure::Skipped {
                reason: format!("spørgsmål {} («{}») har ingen svarmuligheder", q.nr, q.code),
            },
        },
        Err(e) => skip(&e),
    };
    let multiple_advice = match &advice {
        Ok(a) => {
            let one_case = match &cases {
                Ok(c) => match option_or_first(c, codes::ONE_CASE) {
                    Some(one) => {
                        let group: Vec<&StoredResponse> = rs
                            .iter()
                            .copied()
                            .filter(|r| chosen(r, c) == Some(one.code.as_str()))
                            .collect();
                        Figure::Shown(OneCase {
                            question: QuestionRef::of(c),
                            option: Category::of(one),
                            share: more_than_one(a, &group),
                        })
                    }
                    None => Figure::Skipped {
                        reason: format!(
                            "spørgsmål {} («{}») har ingen svarmuligheder",
                            c.nr, c.code
                        ),
                    },
                },
                Err(e) => skip(e),
            };
            Figure::Shown(MultipleAdvice {
                question: QuestionRef::of(a),
                overall: more_than_one(a, &rs),
                one_case,
            })
        }
        Err(e) => skip(e),
    };
    let advice_by_organisation = match (&org, &advice) {
        (Ok(o), Ok(a)) => Figure::Shown(crosstab(o, a, &rs)),
        (Err(e), _) | (_, Err(e)) => skip(e),
    };
    let items: Vec<Figure<SatisfactionItem>> = codes::SATISFACTION
        .iter()
        .map(|c| satisfaction_item(survey, c, &rs))
        .collect();
    let satisfaction = if items.iter().any(|i| i.shown().is_some()) {
        Figure::Shown(Satisfaction { items })
    } else {
        Figure::Skipped {
            reason: format!(
                "ingen af spørgsmålene {} findes i spørgeskemaet som spørgsmål med ét svar",
                codes::SATISFACTION.map(|c| format!("«{c}»")).join(", ")
            ),
        }
    };

    Report {
        survey_id: survey.id.clone(),
        title: survey.title.clone(),
        survey_version: survey.version,
        respondents: count(rs.len()),
        first_day: rs.iter().map(|r| r.day).min(),
        last_day: rs.iter().map(|r| r.day).max(),
        versions,
        small_group_limit: SMALL_GROUP,
        small_group_note: SMALL_NOTE.to_string(),
        notes,
        response_rate: response_rates(rates),
        organisations,
        cases_by_organisation,
        children,
        multiple_advice,
        advice_by_organisation,
        satisfaction,
    }
}

// ---------------------------------------------------------------------------
// Shared wording

const H_RATE: &str = "Svarprocent";
const H_FIG1: &str = "Figur 1. Respondenter fordelt på type af organisation";
const H_FIG2: &str = "Figur 2. Antal sager fordelt på type af organisation";
const H_CHILDREN: &str = "Sager der vedrører børn";
const H_MULTI: &str = "Mere end én type rådgivning";
const H_FIG3: &str = "Figur 3. Typer af rådgivning fordelt på type af organisation";
const H_FIG4: &str = "Figur 4. Tilfredshed med sikkerhedskonsulentordningen";
const MULTI_NOTE: &str = "Der kan sættes flere krydser, så procenterne summer ikke til 100 %.";

fn mark(small: bool) -> &'static str {
    if small {
        SMALL_MARK
    } else {
        ""
    }
}

fn skipped_text(reason: &str) -> String {
    format!("Kan ikke vises: {reason}.")
}

fn period(r: &Report) -> Option<String> {
    match (r.first_day, r.last_day) {
        (Some(a), Some(b)) if a == b => Some(format!("svar fra {}", a.format("%Y-%m-%d"))),
        (Some(a), Some(b)) => Some(format!(
            "svar fra {} til {}",
            a.format("%Y-%m-%d"),
            b.format("%Y-%m-%d")
        )),
        _ => None,
    }
}

fn top_label(top: &[Category]) -> String {
    top.iter()
        .map(|c| format!("«{}»", c.label))
        .collect::<Vec<_>>()
        .join(" + ")
}

fn count_of(s: &Share) -> String {
    format!("{} af {}", s.count, s.base)
}

/// `s` shortened to at most `max` characters at a word boundary, with "…".
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out = String::new();
    for w in s.split_whitespace() {
        let len = out.chars().count() + usize::from(!out.is_empty()) + w.chars().count();
        if len + 1 > max {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
    }
    if out.is_empty() {
        out = s.chars().take(max.saturating_sub(1)).collect();
    }
    out.push('…');
    out
}

/// The label without a trailing parenthesis of examples, for charts.
fn chart_label(s: &str) -> &str {
    match s.find(" (") {
        Some(i) if i > 0 && s.ends_with(')') => &s[..i],
        _ => s,
    }
}

// ---------------------------------------------------------------------------
// Text

#[derive(Clone, Copy)]
enum Align {
    Left,
    Right,
}

fn text_table(out: &mut String, header: &[&str], align: &[Align], rows: &[Vec<String>]) {
    let cols = header.len();
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(cols) {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, c) in cells.enumerate().take(cols) {
            let pad = width[i].saturating_sub(c.chars().count());
            if i > 0 {
                s.push_str("  ");
            }
            match align.get(i).copied().unwrap_or(Align::Left) {
                Align::Left => {
                    s.push_str(c);
                    s.push_str(&" ".repeat(pad));
                }
                Align::Right => {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(c);
                }
            }
        }
        let _ = writeln!(out, "{}", s.trim_end());
    };
    line(out, &mut header.iter().copied());
    let total: usize = width.iter().sum::<usize>() + 2 * cols.saturating_sub(1);
    let _ = writeln!(out, "{}", "-".repeat(total));
    for r in rows {
        line(out, &mut r.iter().map(String::as_str));
    }
}

fn text_heading(out: &mut String, h: &str) {
    let _ = writeln!(out, "\n{h}\n{}", "=".repeat(h.chars().count()));
}

fn text_footnote(out: &mut String, any: bool) {
    if any {
        let _ = writeln!(out, "{SMALL_MARK} {SMALL_NOTE}");
    }
}

fn text_distribution(out: &mut String, d: &Distribution, first: &str) {
    let mut rows: Vec<Vec<String>> = d
        .rows
        .iter()
        .map(|r| {
            vec![
                format!("{}{}", r.category.label, mark(r.small_group)),
                r.share.count.to_string(),
                fmt_percent(r.share.percent),
            ]
        })
        .collect();
    for na in &d.not_applicable {
        rows.push(vec![
            na.category.label.clone(),
            na.count.to_string(),
            "indgår ikke".to_string(),
        ]);
    }
    if d.unanswered > 0 {
        rows.push(vec![
            "Ikke besvaret".to_string(),
            d.unanswered.to_string(),
            "indgår ikke".to_string(),
        ]);
    }
    rows.push(vec![
        format!("I alt (n){}", mark(d.small_base)),
        d.base.to_string(),
        fmt_percent(percent(d.base, d.base)),
    ]);
    text_table(
        out,
        &[first, "Antal", "Andel"],
        &[Align::Left, Align::Right, Align::Right],
        &rows,
    );
    text_footnote(out, d.small_base || d.rows.iter().any(|r| r.small_group));
}

/// The report as plain text for a terminal: Danish headings, n shown, whole
/// percents.
pub fn render_text(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}\n{}", r.title, "#".repeat(r.title.chars().count()));
    let mut facts = vec![
        format!("{} svar", r.respondents),
        format!("spørgeskema {} version {}", r.survey_id, r.survey_version),
    ];
    facts.extend(period(r));
    let _ = writeln!(out, "{}", facts.join(" · "));
    for n in &r.notes {
        let _ = writeln!(out, "Bemærk: {n}");
    }

    text_heading(&mut out, H_RATE);
    match &r.response_rate {
        Figure::Shown(rr) => {
            let rows: Vec<Vec<String>> = rr
                .regions
                .iter()
                .chain(std::iter::once(&rr.total))
                .map(|x| {
                    vec![
                        format!("{}{}", x.region, mark(x.small)),
                        x.invited.to_string(),
                        x.answered.to_string(),
                        fmt_percent(x.rate.percent),
                    ]
                })
                .collect();
            text_table(
                &mut out,
                &["Region", "Inviteret", "Svar", "Svarprocent"],
                &[Align::Left, Align::Right, Align::Right, Align::Right],
                &rows,
            );
            let small = rr
                .regions
                .iter()
                .chain(std::iter::once(&rr.total))
                .any(|x| x.small);
            if small {
                let _ = writeln!(
                    out,
                    "{SMALL_MARK} færre end 5 svar eller inviterede — læses med stor forsigtighed"
                );
            }
        }
        Figure::Skipped { reason } => {
            let _ = writeln!(out, "{}", skipped_text(reason));
        }
    }

    match &r.organisations {
        Figure::Shown(d) => {
            text_heading(&mut out, &format!("{H_FIG1} (n={})", d.base));
            let _ = writeln!(out, "{}\n", d.question.text);
            text_distribution(&mut out, d, "Organisation");
        }
        Figure::Skipped { reason } => {
            text_heading(&mut out, H_FIG1);
            let _ = writeln!(out, "{}", skipped_text(reason));
        }
    }

    match &r.cases_by_organisation {
        Figure::Shown(t) => {
            text_heading(&mut out, &format!("{H_FIG2} (n={})", t.total.n));
            let _ = writeln!(out, "{}\n", t.question.text);
            let mut header: Vec<&str> = vec!["Organisation", "n"];
            header.extend(t.columns.iter().map(|c| c.label.as_str()));
            let mut align = vec![Align::Left];
            align.extend(std::iter::repeat_n(Align::Right, t.columns.len() + 1));
            let rows: Vec<Vec<String>> = t
                .rows
                .iter()
                .chain(std::iter::once(&t.total))
                .map(|g| {
                    let mut row = vec![
                        format!("{}{}", g.group.label, mark(g.small)),
                        g.n.to_string(),
                    ];
                    row.extend(
                        g.cells
                            .iter()
                            .map(|s| format!("{} ({})", s.count, fmt_percent(s.percent))),
                    );
                    row
                })
                .collect();
            text_table(&mut out, &header, &align, &rows);
            let _ = writeln!(out, "Procent af rækken (organisationens n).");
            text_footnote(&mut out, t.rows.iter().any(|g| g.small) || t.total.small);
        }
        Figure::Skipped { reason } => {
            text_heading(&mut out, H_FIG2);
            let _ = writeln!(out, "{}", skipped_text(reason));
        }
    }

    text_heading(&mut out, H_CHILDREN);
    match &r.children {
        Figure::Shown(h) => {
            let _ = writeln!(
                out,
                "{} har svaret «{}» ({}){}.\n{}\n",
                fmt_percent(h.share.percent),
                h.option.label,
                count_of(&h.share),
                mark(h.share.small_base),
                h.distribution.question.text,
            );
            text_distribution(&mut out, &h.distribution, "Svar");
        }
        Figure::Skipped { reason } => {
            let _ = writeln!(out, "{}", skipped_text(reason));
        }
    }

    text_heading(&mut out, H_MULTI);
    match &r.multiple_advice {
        Figure::Shown(m) => {
            let _ = writeln!(
                out,
                "{} har fået mere end én type rådgivning ({}){}.",
                fmt_percent(m.overall.percent),
                count_of(&m.overall),
                mark(m.overall.small_base),
            );
            let mut small = m.overall.small_base;
            match &m.one_case {
                Figure::Shown(o) => {
                    small |= o.share.small_base;
                    let _ = writeln!(
                        out,
                        "{} af dem, der har svaret «{}», har fået mere end én type rådgivning ({}){}.",
                        fmt_percent(o.share.percent),
                        o.option.label,
                        count_of(&o.share),
                        mark(o.share.small_base),
                    );
                }
                Figure::Skipped { reason } => {
                    let _ = writeln!(out, "Blandt dem med én sag: {}", skipped_text(reason));
                }
            }
            text_footnote(&mut out, small);
        }
        Figure::Skipped { reason } => {
            let _ = writeln!(out, "{}", skipped_text(reason));
        }
    }

    match &r.advice_by_organisation {
        Figure::Shown(t) => {
            text_heading(&mut out, &format!("{H_FIG3} (n={})", t.total.n));
            let _ = writeln!(out, "{}\n{MULTI_NOTE}", t.question.text);
            for g in std::iter::once(&t.total).chain(t.rows.iter()) {
                let _ = writeln!(out, "\n{}{} (n={})", g.group.label, mark(g.small), g.n);
                let rows: Vec<Vec<String>> = t
                    .columns
                    .iter()
                    .zip(&g.cells)
                    .map(|(c, s)| {
                        vec![
                            shorten(&c.label, 70),
                            s.count.to_string(),
                            fmt_percent(s.percent),
                        ]
                    })
                    .collect();
                text_table(
                    &mut out,
                    &["Rådgivning", "Antal", "Andel"],
                    &[Align::Left, Align::Right, Align::Right],
                    &rows,
                );
            }
            text_footnote(&mut out, t.rows.iter().any(|g| g.small) || t.total.small);
        }
        Figure::Skipped { reason } => {
            text_heading(&mut out, H_FIG3);
            let _ = writeln!(out, "{}", skipped_text(reason));
        }
    }

    text_heading(&mut out, H_FIG4);
    match &r.satisfaction {
        Figure::Shown(s) => {
            let items: Vec<&SatisfactionItem> = s.items.iter().filter_map(Figure::shown).collect();
            let first_top = items.first().map(|i| top_label(&i.top)).unwrap_or_default();
            let _ = writeln!(out, "Andel der svarer {first_top}.\n");
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|i| {
                    let top = top_label(&i.top);
                    let other_top = if top == first_top {
                        String::new()
                    } else {
                        format!(" ({top})")
                    };
                    vec![
                        format!("{}. {}", i.question.nr, shorten(&i.question.text, 70)),
                        format!("{}{}", i.share.base, mark(i.share.small_base)),
                        format!("{}{other_top}", fmt_percent(i.share.percent)),
                    ]
                })
                .collect();
            text_table(
                &mut out,
                &["Spørgsmål", "n", "Andel"],
                &[Align::Left, Align::Right, Align::Right],
                &rows,
            );
            for item in &s.items {
                if let Figure::Skipped { reason } = item {
                    let _ = writeln!(out, "{}", skipped_text(reason));
                }
            }
            if let Some(note) = not_applicable_note(&items) {
                let _ = writeln!(out, "{note}");
            }
            text_footnote(&mut out, items.iter().any(|i| i.share.small_base));
            for i in &items {
                let _ = writeln!(out, "\n{}. {}", i.question.nr, i.question.text);
                text_distribution(&mut out, &i.distribution, "Svar");
            }
        }
        Figure::Skipped { reason } => {
            let _ = writeln!(out, "{}", skipped_text(reason));
        }
    }
    // Non-breaking spaces keep "50 %" together in HTML; a terminal wants
    // plain ones (and so does grep).
    out.replace('\u{a0}', " ")
}

/// Which answers are left out of the base of figure 4, from the definition.
fn not_applicable_note(items: &[&SatisfactionItem]) -> Option<String> {
    let parts: Vec<String> = items
        .iter()
        .flat_map(|i| {
            i.distribution
                .not_applicable
                .iter()
                .map(move |n| format!("«{}» (spørgsmål {})", n.category.label, i.question.nr))
        })
        .collect();
    if parts.is_empty() {
        None
    } else {
        Some(format!("Svaret {} indgår ikke i n.", parts.join(" og ")))
    }
}

// ---------------------------------------------------------------------------
// HTML

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// The small-group mark for HTML: visible "*", and words for screen readers.
fn html_mark(small: bool) -> &'static str {
    if small {
        "<span aria-hidden=\"true\">*</span><span class=\"sr\"> (færre end 5 svar)</span>"
    } else {
        ""
    }
}

fn html_footnote(out: &mut String, any: bool) {
    if any {
        let _ = writeln!(
            out,
            "<p class=\"note\">{SMALL_MARK} {}</p>",
            esc(SMALL_NOTE)
        );
    }
}

fn html_skipped(out: &mut String, reason: &str) {
    let _ = writeln!(
        out,
        "<p class=\"skipped\">{}</p>",
        esc(&skipped_text(reason))
    );
}

/// Greedy word wrap into at most `max_lines` lines of `width` characters.
fn wrap(s: &str, width: usize, max_lines: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut cur = String::new();
    for w in s.split_whitespace() {
        let len = cur.chars().count() + usize::from(!cur.is_empty()) + w.chars().count();
        if !cur.is_empty() && len > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(w);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    if lines.len() > max_lines {
        let rest = lines[max_lines - 1..].join(" ");
        lines.truncate(max_lines - 1);
        lines.push(shorten(&rest, width));
    }
    lines
}

const SVG_W: f64 = 760.0;
const LABEL_X: f64 = 244.0;
const BAR_X: f64 = 252.0;
const BAR_W: f64 = 340.0;
const LINE_H: f64 = 15.0;
const BAR_H: f64 = 18.0;
const LABEL_CHARS: usize = 34;
const INK: &str = "#1a1a1a";
const BAR: &str = "#1f4e79";
const GRID: &str = "#c8c8c8";
/// The bar of a small group: light, outlined in [`BAR`].
const BAR_SMALL: &str = "#a9c1dc";

/// Colours of an ordered five-point scale (meget høj … meget lav) with the
/// text colour that reads on each (contrast ≥ 4.5:1).
const SCALE5: [(&str, &str); 5] = [
    ("#08306b", "#ffffff"),
    ("#2b6cb0", "#ffffff"),
    ("#d9d9d9", "#000000"),
    ("#f4b183", "#000000"),
    ("#b4410f", "#ffffff"),
];
/// Colours of other categories, in order.
const SEQ: [(&str, &str); 7] = [
    ("#9ecae1", "#000000"),
    ("#2b6cb0", "#ffffff"),
    ("#08306b", "#ffffff"),
    ("#5e4b8b", "#ffffff"),
    ("#1f5f3a", "#ffffff"),
    ("#b4410f", "#ffffff"),
    ("#f4b183", "#000000"),
];
const UNKNOWN_COLOUR: (&str, &str) = ("#ffffff", "#000000");

fn svg_open(out: &mut String, id: &str, height: f64, summary: &str) {
    let _ = write!(
        out,
        "<svg role=\"img\" aria-label=\"{s}\" id=\"{id}\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" font-family=\"system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif\" font-size=\"13\" fill=\"{INK}\"><title>{s}</title>",
        s = esc(summary),
        w = SVG_W,
        h = height.ceil(),
    );
}

fn svg_label(out: &mut String, label: &str, mid_y: f64) -> usize {
    let lines = wrap(label, LABEL_CHARS, 4);
    let n = lines.len().max(1);
    let first = mid_y - (n as f64 - 1.0) * LINE_H / 2.0 + 4.5;
    let _ = write!(out, "<text x=\"{LABEL_X}\" text-anchor=\"end\">");
    for (i, l) in lines.iter().enumerate() {
        let _ = write!(
            out,
            "<tspan x=\"{LABEL_X}\" y=\"{:.1}\">{}</tspan>",
            first + i as f64 * LINE_H,
            esc(l)
        );
    }
    out.push_str("</text>");
    n
}

fn row_height(label: &str) -> f64 {
    let n = wrap(label, LABEL_CHARS, 4).len().max(1) as f64;
    (n * LINE_H + 10.0).max(BAR_H + 10.0)
}

fn svg_axis(out: &mut String, top: f64, bottom: f64) {
    for p in [0u32, 25, 50, 75, 100] {
        let x = BAR_X + BAR_W * f64::from(p) / 100.0;
        let _ = write!(
            out,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{top:.1}\" y2=\"{bottom:.1}\" stroke=\"{GRID}\" stroke-width=\"1\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"11\">{p}\u{a0}%</text>",
            bottom + 14.0
        );
    }
}

fn frac(count: u64, base: u64) -> f64 {
    if base == 0 {
        0.0
    } else {
        (count as f64 / base as f64).clamp(0.0, 1.0)
    }
}

struct BarRow {
    label: String,
    share: Share,
    value: String,
    /// A small group or base: a light bar, to be read with care.
    small: bool,
    /// A total: the label in bold.
    total: bool,
}

/// A horizontal bar chart of shares (0–100 %).
fn svg_bars(id: &str, summary: &str, rows: &[BarRow]) -> String {
    let top = 6.0;
    let heights: Vec<f64> = rows.iter().map(|r| row_height(&r.label)).collect();
    let bottom = top + heights.iter().sum::<f64>();
    let mut out = String::new();
    svg_open(&mut out, id, bottom + 22.0, summary);
    svg_axis(&mut out, top, bottom);
    let mut y = top;
    for (r, h) in rows.iter().zip(&heights) {
        let mid = y + h / 2.0;
        if r.total {
            out.push_str("<g font-weight=\"700\">");
        }
        svg_label(&mut out, &r.label, mid);
        if r.total {
            out.push_str("</g>");
        }
        let w = BAR_W * frac(r.share.count, r.share.base);
        let fill = if r.small { BAR_SMALL } else { BAR };
        let _ = write!(
            out,
            "<rect x=\"{BAR_X}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{BAR_H}\" fill=\"{fill}\" stroke=\"{BAR}\" stroke-width=\"1\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            mid - BAR_H / 2.0,
            BAR_X + w + 6.0,
            mid + 4.5,
            esc(&r.value)
        );
        y += h;
    }
    out.push_str("</svg>");
    out
}

struct StackRow {
    label: String,
    /// Counts per legend entry.
    counts: Vec<u64>,
    base: u64,
    trailing: String,
}

/// Horizontal 100 % stacked bars with a legend on top.
fn svg_stacked(
    id: &str,
    summary: &str,
    legend: &[String],
    colours: &[(&str, &str)],
    rows: &[StackRow],
) -> String {
    // Legend: entries flow left to right, wrapping.
    let mut legend_items: Vec<(f64, f64, &str, (&str, &str))> = Vec::new();
    let (mut lx, mut ly) = (8.0, 14.0);
    for (i, l) in legend.iter().enumerate() {
        let w = 22.0 + l.chars().count() as f64 * 7.0 + 14.0;
        if lx + w > SVG_W && lx > 8.0 {
            lx = 8.0;
            ly += 20.0;
        }
        let colour = colours.get(i).copied().unwrap_or(UNKNOWN_COLOUR);
        legend_items.push((lx, ly, l.as_str(), colour));
        lx += w;
    }
    let top = ly + 16.0;
    let heights: Vec<f64> = rows.iter().map(|r| row_height(&r.label)).collect();
    let bottom = top + heights.iter().sum::<f64>();
    let mut out = String::new();
    svg_open(&mut out, id, bottom + 22.0, summary);
    for (x, y, l, (fill, _)) in &legend_items {
        let _ = write!(
            out,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"14\" height=\"14\" fill=\"{fill}\" stroke=\"{INK}\" stroke-width=\"0.75\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            y - 11.0,
            x + 20.0,
            y,
            esc(l)
        );
    }
    svg_axis(&mut out, top, bottom);
    let mut y = top;
    for (r, h) in rows.iter().zip(&heights) {
        let mid = y + h / 2.0;
        svg_label(&mut out, &r.label, mid);
        let mut x = BAR_X;
        let mut seen = 0u64;
        for (i, c) in r.counts.iter().enumerate() {
            // Edges from cumulative counts, so the segments meet exactly.
            let x0 = BAR_X + BAR_W * frac(seen, r.base);
            seen = seen.saturating_add(*c);
            let x1 = BAR_X + BAR_W * frac(seen, r.base);
            let w = x1 - x0;
            if w <= 0.0 {
                continue;
            }
            let (fill, ink) = colours.get(i).copied().unwrap_or(UNKNOWN_COLOUR);
            let _ = write!(
                out,
                "<rect x=\"{x0:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{BAR_H}\" fill=\"{fill}\" stroke=\"{INK}\" stroke-width=\"0.75\"/>",
                mid - BAR_H / 2.0
            );
            if w >= 34.0 {
                let _ = write!(
                    out,
                    "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"11\" fill=\"{ink}\">{}</text>",
                    x0 + w / 2.0,
                    mid + 4.0,
                    esc(&fmt_percent(percent(*c, r.base)))
                );
            }
            x = x1;
        }
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            x.max(BAR_X + BAR_W) + 8.0,
            mid + 4.5,
            esc(&r.trailing)
        );
        y += h;
    }
    out.push_str("</svg>");
    out
}

fn th_col(s: &str) -> String {
    format!("<th scope=\"col\">{s}</th>")
}

fn th_col_num(s: &str) -> String {
    format!("<th scope=\"col\" class=\"num\">{s}</th>")
}

fn html_distribution(out: &mut String, d: &Distribution, caption: &str, first: &str) {
    let _ = write!(
        out,
        "<table><caption>{}</caption><thead><tr>{}{}{}</tr></thead><tbody>",
        esc(caption),
        th_col(first),
        th_col_num("Antal"),
        th_col_num("Andel")
    );
    for r in &d.rows {
        let _ = write!(
            out,
            "<tr><th scope=\"row\">{}{}</th><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&r.category.label),
            html_mark(r.small_group),
            r.share.count,
            esc(&fmt_percent(r.share.percent))
        );
    }
    for na in &d.not_applicable {
        let _ = write!(
            out,
            "<tr class=\"aside\"><th scope=\"row\">{}</th><td class=\"num\">{}</td><td class=\"num\">indgår ikke</td></tr>",
            esc(&na.category.label),
            na.count
        );
    }
    if d.unanswered > 0 {
        let _ = write!(
            out,
            "<tr class=\"aside\"><th scope=\"row\">Ikke besvaret</th><td class=\"num\">{}</td><td class=\"num\">indgår ikke</td></tr>",
            d.unanswered
        );
    }
    let _ = writeln!(
        out,
        "</tbody><tfoot><tr><th scope=\"row\">I alt (n){}</th><td class=\"num\">{}</td><td class=\"num\">{}</td></tr></tfoot></table>",
        html_mark(d.small_base),
        d.base,
        esc(&fmt_percent(percent(d.base, d.base)))
    );
    html_footnote(out, d.small_base || d.rows.iter().any(|r| r.small_group));
}

/// A cross table as an HTML table: groups as rows (the total in the
/// footer), the question's options as columns.
fn html_group_table(out: &mut String, t: &CrossTab, caption: &str) {
    let _ = write!(
        out,
        "<div class=\"wide\"><table><caption>{}</caption><thead><tr>{}{}",
        esc(caption),
        th_col("Organisation"),
        th_col_num("n")
    );
    for c in &t.columns {
        out.push_str(&th_col_num(&esc(&c.label)));
    }
    out.push_str("</tr></thead><tbody>");
    let row = |g: &GroupRow| {
        let mut s = format!(
            "<tr><th scope=\"row\">{}{}</th><td class=\"num\">{}</td>",
            esc(&g.group.label),
            html_mark(g.small),
            g.n
        );
        for c in &g.cells {
            let _ = write!(
                s,
                "<td class=\"num\">{} ({})</td>",
                c.count,
                esc(&fmt_percent(c.percent))
            );
        }
        s.push_str("</tr>");
        s
    };
    for g in &t.rows {
        out.push_str(&row(g));
    }
    let _ = writeln!(
        out,
        "</tbody><tfoot>{}</tfoot></table></div>",
        row(&t.total)
    );
}

fn section_open(out: &mut String, id: &str, heading: &str) {
    let _ = writeln!(
        out,
        "<section aria-labelledby=\"{id}-h\"><h2 id=\"{id}-h\">{}</h2>",
        esc(heading)
    );
}

const CSS: &str = "
:root{color-scheme:light}
*{box-sizing:border-box}
body{margin:0;background:#fff;color:#1a1a1a;font-family:system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;line-height:1.45}
main{max-width:54rem;margin:0 auto;padding:1.5rem 1rem 3rem}
h1{font-size:1.6rem;line-height:1.25;margin:0 0 .4rem}
h2{font-size:1.25rem;margin:2.4rem 0 .6rem;padding-bottom:.2rem;border-bottom:2px solid #1f4e79}
h3{font-size:1.05rem;margin:1.4rem 0 .4rem}
.lede{color:#444;margin:0 0 1rem}
.keys{display:flex;flex-wrap:wrap;gap:.8rem;margin:1rem 0;padding:0;list-style:none}
.keys li{border:1px solid #c8c8c8;border-radius:.4rem;padding:.6rem .9rem;min-width:10rem}
.keys b{display:block;font-size:1.8rem;color:#1f4e79;line-height:1.1}
.question{color:#444;font-style:italic;margin:.2rem 0 .6rem}
figure{margin:1rem 0}
figcaption{font-weight:600;margin-bottom:.4rem}
svg{display:block;width:100%;height:auto;max-width:760px}
table{border-collapse:collapse;margin:.8rem 0;width:100%;font-size:.95rem}
caption{text-align:left;font-weight:600;padding:.3rem 0}
th,td{border-bottom:1px solid #c8c8c8;padding:.3rem .5rem;text-align:left;vertical-align:top}
thead th{border-bottom:2px solid #1a1a1a}
tfoot th,tfoot td{border-top:2px solid #1a1a1a;font-weight:600}
th[scope=row]{font-weight:normal}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
th.num{white-space:normal}
.wide{overflow-x:auto}
.wide table{font-size:.88rem}
.wide thead th{vertical-align:bottom}
.group th{font-weight:600;background:#eef3f8;border-top:2px solid #1a1a1a}
.aside th,.aside td{color:#444}
.note{color:#444;font-size:.9rem;margin:.3rem 0}
.skipped{border-left:4px solid #b4410f;padding:.4rem .8rem;background:#fdf3ee}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
@page{size:A4;margin:15mm}
@media print{body{font-size:10pt}main{max-width:none;padding:0}figure,.keys,tr{break-inside:avoid}h2,h3{break-after:avoid}.skipped{background:none}}
";

/// The report as one self-contained HTML page (lang="da"): inline CSS,
/// inline SVG charts with text alternatives, tables with captions; no
/// JavaScript, nothing fetched from anywhere.
pub fn render_html(r: &Report) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"da\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n<title>Rapport: {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n<h1>{}</h1>\n",
        esc(&r.title),
        esc(&r.title)
    );
    let mut facts = vec![format!(
        "Spørgeskema {} version {}",
        r.survey_id, r.survey_version
    )];
    facts.extend(period(r));
    let _ = writeln!(out, "<p class=\"lede\">{}</p>", esc(&facts.join(" · ")));

    // Key figures.
    out.push_str("<ul class=\"keys\">");
    let _ = write!(out, "<li><b>{}</b>svar</li>", r.respondents);
    if let Figure::Shown(rr) = &r.response_rate {
        let _ = write!(
            out,
            "<li><b>{}</b>svarprocent ({} af {} inviterede)</li>",
            esc(&fmt_percent(rr.total.rate.percent)),
            rr.total.answered,
            rr.total.invited
        );
    }
    out.push_str("</ul>\n");
    for n in &r.notes {
        let _ = writeln!(
            out,
            "<p class=\"note\"><strong>Bemærk:</strong> {}</p>",
            esc(n)
        );
    }
    let _ = writeln!(
        out,
        "<p class=\"note\">Procenter er hele procent, afrundet. {SMALL_MARK} ved en gruppe eller et grundlag betyder {}.</p>",
        esc(SMALL_NOTE)
    );

    // Response rate.
    section_open(&mut out, "svarprocent", H_RATE);
    match &r.response_rate {
        Figure::Shown(rr) => {
            let all: Vec<&RateRow> = rr
                .regions
                .iter()
                .chain(std::iter::once(&rr.total))
                .collect();
            let summary = format!(
                "Svarprocent pr. region: {}.",
                all.iter()
                    .map(|x| format!(
                        "{} {} ({} af {})",
                        x.region,
                        fmt_percent(x.rate.percent),
                        x.answered,
                        x.invited
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let bars: Vec<BarRow> = all
                .iter()
                .map(|x| BarRow {
                    label: format!("{}{}", x.region, mark(x.small)),
                    small: x.small,
                    total: std::ptr::eq(*x, &rr.total),
                    share: x.rate.clone(),
                    value: format!(
                        "{} ({} af {})",
                        fmt_percent(x.rate.percent),
                        x.answered,
                        x.invited
                    ),
                })
                .collect();
            let _ = writeln!(
                out,
                "<figure><figcaption>Svarprocent pr. region</figcaption>{}</figure>",
                svg_bars("fig-svarprocent", &summary, &bars)
            );
            let _ = write!(
                out,
                "<table><caption>Inviterede, svar og svarprocent pr. region</caption><thead><tr>{}{}{}{}</tr></thead><tbody>",
                th_col("Region"),
                th_col_num("Inviteret"),
                th_col_num("Svar"),
                th_col_num("Svarprocent")
            );
            let row = |x: &RateRow| {
                format!(
                    "<tr><th scope=\"row\">{}{}</th><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                    esc(&x.region),
                    html_mark(x.small),
                    x.invited,
                    x.answered,
                    esc(&fmt_percent(x.rate.percent))
                )
            };
            for x in &rr.regions {
                out.push_str(&row(x));
            }
            let _ = writeln!(out, "</tbody><tfoot>{}</tfoot></table>", row(&rr.total));
            if all.iter().any(|x| x.small) {
                let _ = writeln!(
                    out,
                    "<p class=\"note\">{SMALL_MARK} færre end 5 svar eller inviterede — læses med stor forsigtighed</p>"
                );
            }
        }
        Figure::Skipped { reason } => html_skipped(&mut out, reason),
    }
    out.push_str("</section>\n");

    // Figure 1.
    match &r.organisations {
        Figure::Shown(d) => {
            let heading = format!("{H_FIG1} (n={})", d.base);
            section_open(&mut out, "figur1", &heading);
            let _ = writeln!(out, "<p class=\"question\">{}</p>", esc(&d.question.text));
            let summary = format!(
                "{heading}: {}.",
                d.rows
                    .iter()
                    .map(|x| format!(
                        "{} {} ({})",
                        x.category.label,
                        fmt_percent(x.share.percent),
                        x.share.count
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let bars: Vec<BarRow> = d
                .rows
                .iter()
                .map(|x| BarRow {
                    label: format!("{}{}", x.category.label, mark(x.small_group)),
                    small: x.small_group || x.share.small_base,
                    total: false,
                    share: x.share.clone(),
                    value: format!("{} ({})", fmt_percent(x.share.percent), x.share.count),
                })
                .collect();
            let _ = writeln!(
                out,
                "<figure><figcaption>Andel af respondenterne (n={})</figcaption>{}</figure>",
                d.base,
                svg_bars("fig-1", &summary, &bars)
            );
            html_distribution(
                &mut out,
                d,
                "Antal og andel pr. type af organisation",
                "Organisation",
            );
        }
        Figure::Skipped { reason } => {
            section_open(&mut out, "figur1", H_FIG1);
            html_skipped(&mut out, reason);
        }
    }
    out.push_str("</section>\n");

    // Figure 2.
    match &r.cases_by_organisation {
        Figure::Shown(t) => {
            let heading = format!("{H_FIG2} (n={})", t.total.n);
            section_open(&mut out, "figur2", &heading);
            let _ = writeln!(out, "<p class=\"question\">{}</p>", esc(&t.question.text));
            let groups: Vec<&GroupRow> = t.rows.iter().chain(std::iter::once(&t.total)).collect();
            let summary = format!(
                "{heading}. {}",
                groups
                    .iter()
                    .map(|g| format!(
                        "{} (n={}): {}.",
                        g.group.label,
                        g.n,
                        t.columns
                            .iter()
                            .zip(&g.cells)
                            .map(|(c, s)| format!("{} {}", c.label, fmt_percent(s.percent)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            let legend: Vec<String> = t.columns.iter().map(|c| c.label.clone()).collect();
            let colours = colours_for(&t.columns, false);
            let rows: Vec<StackRow> = groups
                .iter()
                .map(|g| StackRow {
                    label: format!("{}{}", g.group.label, mark(g.small)),
                    counts: g.cells.iter().map(|s| s.count).collect(),
                    base: g.n,
                    trailing: format!("n={}", g.n),
                })
                .collect();
            let _ = writeln!(
                out,
                "<figure><figcaption>Procent af organisationens respondenter</figcaption>{}</figure>",
                svg_stacked("fig-2", &summary, &legend, &colours, &rows)
            );
            html_group_table(
                &mut out,
                t,
                "Antal sager pr. type af organisation: antal og procent af rækken",
            );
            html_footnote(&mut out, groups.iter().any(|g| g.small));
        }
        Figure::Skipped { reason } => {
            section_open(&mut out, "figur2", H_FIG2);
            html_skipped(&mut out, reason);
        }
    }
    out.push_str("</section>\n");

    // Children and more than one kind of advice.
    section_open(&mut out, "boern", H_CHILDREN);
    match &r.children {
        Figure::Shown(h) => {
            let _ = writeln!(
                out,
                "<p class=\"keyline\"><strong>{}</strong> har svaret «{}» ({}){}.</p><p class=\"question\">{}</p>",
                esc(&fmt_percent(h.share.percent)),
                esc(&h.option.label),
                esc(&count_of(&h.share)),
                html_mark(h.share.small_base),
                esc(&h.distribution.question.text)
            );
            html_distribution(&mut out, &h.distribution, H_CHILDREN, "Svar");
        }
        Figure::Skipped { reason } => html_skipped(&mut out, reason),
    }
    out.push_str("</section>\n");

    section_open(&mut out, "flere", H_MULTI);
    match &r.multiple_advice {
        Figure::Shown(m) => {
            let _ = writeln!(
                out,
                "<p><strong>{}</strong> har fået mere end én type rådgivning ({}){}.</p>",
                esc(&fmt_percent(m.overall.percent)),
                esc(&count_of(&m.overall)),
                html_mark(m.overall.small_base)
            );
            let mut small = m.overall.small_base;
            match &m.one_case {
                Figure::Shown(o) => {
                    small |= o.share.small_base;
                    let _ = writeln!(
                        out,
                        "<p><strong>{}</strong> af dem, der har svaret «{}», har fået mere end én type rådgivning ({}){}.</p>",
                        esc(&fmt_percent(o.share.percent)),
                        esc(&o.option.label),
                        esc(&count_of(&o.share)),
                        html_mark(o.share.small_base)
                    );
                }
                Figure::Skipped { reason } => html_skipped(&mut out, reason),
            }
            let _ = writeln!(out, "<p class=\"question\">{}</p>", esc(&m.question.text));
            html_footnote(&mut out, small);
        }
        Figure::Skipped { reason } => html_skipped(&mut out, reason),
    }
    out.push_str("</section>\n");

    // Figure 3.
    match &r.advice_by_organisation {
        Figure::Shown(t) => {
            let heading = format!("{H_FIG3} (n={})", t.total.n);
            section_open(&mut out, "figur3", &heading);
            let _ = writeln!(
                out,
                "<p class=\"question\">{}</p><p class=\"note\">{}</p>",
                esc(&t.question.text),
                esc(MULTI_NOTE)
            );
            let groups: Vec<&GroupRow> = std::iter::once(&t.total).chain(t.rows.iter()).collect();
            for (i, g) in groups.iter().enumerate() {
                let summary = format!(
                    "Typer af rådgivning, {} (n={}): {}.",
                    g.group.label,
                    g.n,
                    t.columns
                        .iter()
                        .zip(&g.cells)
                        .map(|(c, s)| format!(
                            "{} {}",
                            chart_label(&c.label),
                            fmt_percent(s.percent)
                        ))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                let bars: Vec<BarRow> = t
                    .columns
                    .iter()
                    .zip(&g.cells)
                    .map(|(c, s)| BarRow {
                        label: chart_label(&c.label).to_string(),
                        small: g.small,
                        total: false,
                        share: s.clone(),
                        value: format!("{} ({})", fmt_percent(s.percent), s.count),
                    })
                    .collect();
                let _ = writeln!(
                    out,
                    "<figure><figcaption>{}{} (n={})</figcaption>{}</figure>",
                    esc(&g.group.label),
                    html_mark(g.small),
                    g.n,
                    svg_bars(&format!("fig-3-{i}"), &summary, &bars)
                );
            }
            // The table: one block of rows per group, so it fits a page.
            let _ = write!(
                out,
                "<table><caption>Typer af rådgivning pr. type af organisation: antal og procent af organisationens respondenter</caption><thead><tr>{}{}{}</tr></thead>",
                th_col("Rådgivning"),
                th_col_num("Antal"),
                th_col_num("Andel")
            );
            for g in &groups {
                let _ = write!(
                    out,
                    "<tbody><tr class=\"group\"><th scope=\"rowgroup\" colspan=\"3\">{}{} (n={})</th></tr>",
                    esc(&g.group.label),
                    html_mark(g.small),
                    g.n
                );
                for (c, s) in t.columns.iter().zip(&g.cells) {
                    let _ = write!(
                        out,
                        "<tr><th scope=\"row\">{}</th><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                        esc(&c.label),
                        s.count,
                        esc(&fmt_percent(s.percent))
                    );
                }
                out.push_str("</tbody>");
            }
            out.push_str("</table>\n");
            html_footnote(&mut out, groups.iter().any(|g| g.small));
        }
        Figure::Skipped { reason } => {
            section_open(&mut out, "figur3", H_FIG3);
            html_skipped(&mut out, reason);
        }
    }
    out.push_str("</section>\n");

    // Figure 4.
    section_open(&mut out, "figur4", H_FIG4);
    match &r.satisfaction {
        Figure::Shown(s) => {
            let items: Vec<&SatisfactionItem> = s.items.iter().filter_map(Figure::shown).collect();
            for item in &s.items {
                if let Figure::Skipped { reason } = item {
                    html_skipped(&mut out, reason);
                }
            }
            // Legend: the options in order of first appearance.
            let mut legend: Vec<Category> = Vec::new();
            for i in &items {
                for row in &i.distribution.rows {
                    if !legend.iter().any(|c| c.code == row.category.code) {
                        legend.push(row.category.clone());
                    }
                }
            }
            let colours = colours_for(&legend, true);
            let summary = format!(
                "{H_FIG4}. {}",
                items
                    .iter()
                    .map(|i| format!(
                        "Spørgsmål {}: {} i meget høj eller høj grad (n={}).",
                        i.question.nr,
                        fmt_percent(i.share.percent),
                        i.share.base
                    ))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            let rows: Vec<StackRow> = items
                .iter()
                .map(|i| StackRow {
                    label: format!(
                        "{}. {}{}",
                        i.question.nr,
                        i.question.text,
                        mark(i.share.small_base)
                    ),
                    counts: legend
                        .iter()
                        .map(|c| {
                            i.distribution
                                .rows
                                .iter()
                                .find(|r| r.category.code == c.code)
                                .map_or(0, |r| r.share.count)
                        })
                        .collect(),
                    base: i.distribution.base,
                    trailing: format!(
                        "{} · n={}",
                        fmt_percent(i.share.percent),
                        i.distribution.base
                    ),
                })
                .collect();
            let legend_labels: Vec<String> = legend.iter().map(|c| c.label.clone()).collect();
            let _ = writeln!(
                out,
                "<figure><figcaption>Fordeling af svarene; til højre andelen {}</figcaption>{}</figure>",
                esc(&items.first().map_or(String::new(), |i| top_label(&i.top))),
                svg_stacked("fig-4", &summary, &legend_labels, &colours, &rows)
            );
            let _ = write!(
                out,
                "<table><caption>Andel der svarer {} </caption><thead><tr>{}{}{}</tr></thead><tbody>",
                esc(&items.first().map_or(String::new(), |i| top_label(&i.top))),
                th_col("Spørgsmål"),
                th_col_num("n"),
                th_col_num("Andel")
            );
            for i in &items {
                let _ = write!(
                    out,
                    "<tr><th scope=\"row\">{}. {}</th><td class=\"num\">{}{}</td><td class=\"num\">{}</td></tr>",
                    i.question.nr,
                    esc(&i.question.text),
                    i.share.base,
                    html_mark(i.share.small_base),
                    esc(&fmt_percent(i.share.percent))
                );
            }
            out.push_str("</tbody></table>\n");
            if let Some(note) = not_applicable_note(&items) {
                let _ = writeln!(out, "<p class=\"note\">{}</p>", esc(&note));
            }
            for i in &items {
                let _ = writeln!(out, "<h3>Spørgsmål {}</h3>", i.question.nr);
                html_distribution(
                    &mut out,
                    &i.distribution,
                    &format!("{}. {}", i.question.nr, i.question.text),
                    "Svar",
                );
            }
            html_footnote(&mut out, items.iter().any(|i| i.share.small_base));
        }
        Figure::Skipped { reason } => html_skipped(&mut out, reason),
    }
    out.push_str("</section>\n</main>\n</body>\n</html>\n");
    out
}

/// Colours for categories: the five-point scale when there are exactly five
/// known options on a scale, else the sequence; unknown codes are white.
fn colours_for(cats: &[Category], scale: bool) -> Vec<(&'static str, &'static str)> {
    let known = cats.iter().filter(|c| c.known).count();
    let mut k = 0;
    cats.iter()
        .map(|c| {
            if !c.known {
                return UNKNOWN_COLOUR;
            }
            let colour = if scale && known == SCALE5.len() {
                SCALE5[k]
            } else {
                SEQ[k % SEQ.len()]
            };
            k += 1;
            colour
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::Answers;
    use std::path::Path;

    fn shipped() -> Survey {
        Survey::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/survey.da.toml"))
            .expect("the shipped survey loads")
    }

    fn single(code: &str) -> Value {
        Value::Single {
            code: code.into(),
            other: None,
        }
    }

    fn multi(codes: &[&str]) -> Value {
        Value::Multi {
            codes: codes.iter().map(|c| c.to_string()).collect(),
            other: None,
        }
    }

    fn resp(values: Vec<(&str, Value)>) -> StoredResponse {
        let answers: Answers = values
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        StoredResponse {
            survey_id: "siri-sikkerhedskonsulentordningen".into(),
            survey_version: 1,
            region: None,
            day: NaiveDate::from_ymd_opt(2024, 8, 7).expect("a valid day"),
            answers,
        }
    }

    /// Invitations and answers per region as in the agency's note: 157
    /// invited, 79 answered (50 %), Syddanmark 57 %, Sjælland 40 %.
    fn seed_rates() -> Vec<(String, u64, u64)> {
        [
            ("Hovedstaden", 50, 25),
            ("Sjælland", 20, 8),
            ("Syddanmark", 21, 12),
            ("Midtjylland", 40, 20),
            ("Nordjylland", 26, 14),
        ]
        .into_iter()
        .map(|(r, i, a)| (r.to_string(), i, a))
        .collect()
    }

    const OPM: &str = "opmaerksomhed";
    const RIS: &str = "risiko";
    const SIK: &str = "sikkerhed";
    const GEN: &str = "genopdragelsesrejser";
    const SAM: &str = "samarbejdspartnere";
    const AND: &str = "andet";

    /// 79 synthetic answers built so that the agency's published figures
    /// come out: (how many, organisation, number of cases, kinds of advice).
    fn seed_answers() -> Vec<StoredResponse> {
        let spec: &[(usize, &str, &str, &[&str])] = &[
            // Kommune (51): 31 with one case, 10 of them one kind of advice.
            (10, "kommune", "1", &[RIS]),
            (13, "kommune", "1", &[OPM, RIS, SAM]),
            (8, "kommune", "1", &[OPM, SIK]),
            (5, "kommune", "2_5", &[RIS]),
            (1, "kommune", "2_5", &[OPM, SIK]),
            (7, "kommune", "2_5", &[RIS, SIK, SAM]),
            (1, "kommune", "2_5", &[OPM, AND]),
            (4, "kommune", "6_10", &[OPM, RIS, SIK, SAM]),
            (2, "kommune", "over_10", &[OPM, RIS, SIK, SAM]),
            // Krisecenter (13).
            (1, "krisecenter", "1", &[RIS]),
            (2, "krisecenter", "1", &[SIK, OPM, RIS]),
            (6, "krisecenter", "2_5", &[SIK, OPM, RIS]),
            (2, "krisecenter", "2_5", &[SIK, SAM]),
            (1, "krisecenter", "2_5", &[OPM, SAM]),
            (1, "krisecenter", "6_10", &[OPM, SAM]),
            // Politi (9): 8 of 9 with two or more cases.
            (1, "politi", "1", &[SIK, GEN, RIS]),
            (4, "politi", "2_5", &[SIK, GEN, RIS]),
            (2, "politi", "6_10", &[SIK, SAM]),
            (1, "politi", "6_10", &[OPM, SAM]),
            (1, "politi", "over_10", &[OPM, SAM]),
            // Skole (3), private (2), andet (1).
            (1, "skole", "1", &[RIS]),
            (1, "skole", "1", &[OPM, RIS]),
            (1, "skole", "2_5", &[OPM, SAM]),
            (1, "privat_civilsamfund", "1", &[OPM, RIS, SAM]),
            (1, "privat_civilsamfund", "2_5", &[SIK, AND]),
            (1, "andet", "2_5", &[RIS, AND]),
        ];
        let scale5 = |i: usize, cuts: [usize; 4]| -> &'static str {
            match i {
                i if i < cuts[0] => "meget_hoej",
                i if i < cuts[1] => "hoej",
                i if i < cuts[2] => "nogen",
                i if i < cuts[3] => "lav",
                _ => "meget_lav",
            }
        };
        let mut out = Vec::new();
        for (n, org, cases, advice) in spec {
            for _ in 0..*n {
                let i = out.len();
                // Question 5: the first 20 had no urgent cases; of the 59
                // others, 55 answer high or very high (93 %).
                let q5 = if i < 20 {
                    "ikke_relevant"
                } else {
                    scale5(i - 20, [35, 55, 58, 59])
                };
                out.push(resp(vec![
                    (
                        "organisation",
                        Value::Single {
                            code: org.to_string(),
                            other: (*org == "andet").then(|| "Frivillig".to_string()),
                        },
                    ),
                    ("antal_sager", single(cases)),
                    ("boern", single(if i < 58 { "ja" } else { "nej" })),
                    ("raadgivning", multi(advice)),
                    ("tilgaengelighed", single(q5)),
                    ("hjulpet_videre", single(scale5(i, [40, 71, 77, 79]))),
                    ("anbefale", single(scale5(i, [60, 77, 79, 79]))),
                ]));
            }
        }
        assert_eq!(out.len(), 79);
        out
    }

    fn seed_report() -> Report {
        compute(&shipped(), &seed_answers(), &seed_rates())
    }

    fn pct_of(rows: &[DistRow], code: &str) -> Option<u64> {
        rows.iter()
            .find(|r| r.category.code == code)
            .and_then(|r| r.share.percent)
    }

    fn cell<'a>(t: &'a CrossTab, group: &str, column: &str) -> &'a Share {
        let g = t
            .rows
            .iter()
            .chain(std::iter::once(&t.total))
            .find(|g| g.group.code == group && (!group.is_empty() || g.group.label == "Alle"))
            .unwrap_or_else(|| panic!("no group {group}"));
        let c = t
            .columns
            .iter()
            .position(|c| c.code == column)
            .unwrap_or_else(|| panic!("no column {column}"));
        &g.cells[c]
    }

    #[test]
    fn whole_percent_rounded_half_up() {
        assert_eq!(percent(79, 157), Some(50));
        assert_eq!(percent(12, 21), Some(57));
        assert_eq!(percent(8, 20), Some(40));
        assert_eq!(percent(1, 8), Some(13)); // 12.5 → 13
        assert_eq!(percent(1, 40), Some(3)); // 2.5 → 3
        assert_eq!(percent(2, 79), Some(3));
        assert_eq!(percent(0, 3), Some(0));
        assert_eq!(percent(3, 3), Some(100));
        assert_eq!(percent(u64::MAX, u64::MAX), Some(100));
        assert_eq!(percent(1, 0), None);
        assert_eq!(fmt_percent(None), "–");
        assert_eq!(fmt_percent(Some(50)), "50\u{a0}%");
    }

    #[test]
    fn response_rates_like_the_agency() {
        let r = seed_report();
        let rr = r.response_rate.shown().expect("rates");
        assert_eq!(rr.total.invited, 157);
        assert_eq!(rr.total.answered, 79);
        assert_eq!(rr.total.rate.percent, Some(50));
        let rate = |name: &str| {
            rr.regions
                .iter()
                .find(|x| x.region == name)
                .and_then(|x| x.rate.percent)
        };
        assert_eq!(rate("Syddanmark"), Some(57));
        assert_eq!(rate("Sjælland"), Some(40));
        let names: Vec<&str> = rr.regions.iter().map(|x| x.region.as_str()).collect();
        assert_eq!(
            names,
            [
                "Hovedstaden",
                "Sjælland",
                "Syddanmark",
                "Midtjylland",
                "Nordjylland"
            ]
        );
        let text = render_text(&r);
        assert!(!text.contains("Syddanmark*"));
        let line = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("no line {name}"))
                .to_string()
        };
        assert!(
            line("Syddanmark").ends_with("21    12         57 %"),
            "{}",
            line("Syddanmark")
        );
        assert!(line("Sjælland").ends_with("40 %"));
        assert!(line("I alt").contains("157") && line("I alt").ends_with("50 %"));
        let html = render_html(&r);
        assert!(html.contains("Syddanmark 57\u{a0}% (12 af 21)"));
        assert!(html.contains("Sjælland 40\u{a0}% (8 af 20)"));
    }

    #[test]
    fn response_rates_edge_cases() {
        let rates = vec![
            ("Nordjylland".to_string(), 0, 0),
            ("Sjælland".to_string(), 3, 1),
            ("Sjælland".to_string(), 2, 1),
            ("Midtjylland".to_string(), 40, 20),
        ];
        let r = compute(&shipped(), &[], &rates);
        let rr = r.response_rate.shown().expect("rates");
        assert_eq!(rr.regions.len(), 3, "the same region is summed");
        assert!(!rr.regions[2].small);
        assert_eq!(rr.total.invited, 45);
        assert_eq!(rr.regions[0].rate.percent, None);
        assert!(rr.regions[0].small);
        assert_eq!(rr.regions[1].invited, 5);
        assert_eq!(rr.regions[1].rate.percent, Some(40));
        assert!(rr.regions[1].small, "two answers");
        let text = render_text(&r);
        assert!(text.contains("Nordjylland*"));
        assert!(text
            .lines()
            .any(|l| l.starts_with("Nordjylland*") && l.ends_with('–')));
        let none = compute(&shipped(), &[], &[]);
        assert!(matches!(none.response_rate, Figure::Skipped { .. }));
    }

    #[test]
    fn figure_1_organisations() {
        let r = seed_report();
        let d = r.organisations.shown().expect("figure 1");
        assert_eq!(d.base, 79);
        assert_eq!(pct_of(&d.rows, "kommune"), Some(65));
        assert_eq!(pct_of(&d.rows, "krisecenter"), Some(16));
        assert_eq!(pct_of(&d.rows, "politi"), Some(11));
        assert_eq!(pct_of(&d.rows, "skole"), Some(4));
        assert_eq!(pct_of(&d.rows, "privat_civilsamfund"), Some(3));
        assert_eq!(pct_of(&d.rows, "andet"), Some(1));
        let small: Vec<&str> = d
            .rows
            .iter()
            .filter(|r| r.small_group)
            .map(|r| r.category.code.as_str())
            .collect();
        assert_eq!(small, ["skole", "privat_civilsamfund", "andet"]);
        let text = render_text(&r);
        assert!(text.contains("Figur 1. Respondenter fordelt på type af organisation (n=79)"));
        assert!(text.contains("Skole eller uddannelsesinstitution*"));
        assert!(text.contains("* færre end 5 svar — læses med stor forsigtighed"));
        assert!(!text.contains("Kommune*"));
    }

    #[test]
    fn figure_2_cases_by_organisation() {
        let r = seed_report();
        let t = r.cases_by_organisation.shown().expect("figure 2");
        assert_eq!(t.total.n, 79);
        assert_eq!(cell(t, "", "1").percent, Some(48));
        assert_eq!(cell(t, "", "2_5").percent, Some(38));
        assert_eq!(cell(t, "", "over_10").percent, Some(4));
        assert_eq!(cell(t, "kommune", "1").percent, Some(61));
        let politi = t
            .rows
            .iter()
            .find(|g| g.group.code == "politi")
            .expect("politi");
        assert_eq!(politi.n, 9);
        assert_eq!(
            politi.n - politi.cells[0].count,
            8,
            "8 of 9 with two or more"
        );
        // Row percentages of a single-choice question add up to the row.
        for g in &t.rows {
            assert_eq!(g.cells.iter().map(|s| s.count).sum::<u64>(), g.n);
        }
        let skole = t
            .rows
            .iter()
            .find(|g| g.group.code == "skole")
            .expect("skole");
        assert!(skole.small);
        assert!(!t.multiple);
    }

    #[test]
    fn children_and_more_than_one_kind() {
        let r = seed_report();
        let c = r.children.shown().expect("children");
        assert_eq!(c.option.code, "ja");
        assert_eq!(c.share.percent, Some(73));
        let m = r.multiple_advice.shown().expect("multiple");
        assert_eq!(m.overall, Share::new(62, 79));
        assert_eq!(m.overall.percent, Some(78));
        let one = m.one_case.shown().expect("one case");
        assert_eq!(one.option.label, "1 sag");
        assert_eq!(one.share, Share::new(26, 38));
        assert_eq!(one.share.percent, Some(68));
        let text = render_text(&r);
        assert!(text.contains("73 % har svaret «Ja» (58 af 79)."));
        assert!(text.contains("78 % har fået mere end én type rådgivning (62 af 79)."));
        assert!(text.contains("68 % af dem, der har svaret «1 sag»"));
    }

    #[test]
    fn figure_3_advice_by_organisation() {
        let r = seed_report();
        let t = r.advice_by_organisation.shown().expect("figure 3");
        assert!(t.multiple);
        assert_eq!(cell(t, "", RIS).percent, Some(75));
        assert_eq!(cell(t, "", OPM).percent, Some(56));
        assert_eq!(cell(t, "", SIK).percent, Some(51));
        assert_eq!(cell(t, "", SAM).percent, Some(46));
        assert_eq!(cell(t, "", AND).count, 3);
        assert_eq!(cell(t, "krisecenter", SIK).percent, Some(77));
        assert_eq!(cell(t, "politi", SIK).percent, Some(78));
        assert_eq!(cell(t, "politi", GEN).percent, Some(56));
        // Multiple choice: a row adds up to more than 100 %.
        let sum: u64 = t.total.cells.iter().filter_map(|s| s.percent).sum();
        assert!(sum > 100);
        let text = render_text(&r);
        assert!(text.contains("summer ikke til 100"));
        assert!(text.contains("Politi (n=9)"));
        assert!(text.contains("Andet, angiv venligst* (n=1)"));
    }

    #[test]
    fn figure_4_satisfaction_without_not_applicable() {
        let r = seed_report();
        let s = r.satisfaction.shown().expect("figure 4");
        let items: Vec<&SatisfactionItem> = s.items.iter().filter_map(Figure::shown).collect();
        assert_eq!(items.len(), 3);
        let q5 = items[0];
        assert_eq!(q5.question.code, "tilgaengelighed");
        assert_eq!(
            q5.distribution.base, 59,
            "not applicable left out of the base"
        );
        assert_eq!(q5.distribution.not_applicable[0].count, 20);
        assert_eq!(q5.share, Share::new(55, 59));
        assert_eq!(q5.share.percent, Some(93));
        assert!(!q5
            .distribution
            .rows
            .iter()
            .any(|r| r.category.code == "ikke_relevant"));
        assert_eq!(items[1].share.percent, Some(90));
        assert_eq!(items[2].share.percent, Some(97));
        let top: Vec<&str> = q5.top.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(top, ["I meget høj grad", "I høj grad"]);
        // The full distribution is there, and adds up to the base.
        assert_eq!(
            q5.distribution
                .rows
                .iter()
                .map(|r| r.share.count)
                .sum::<u64>(),
            59
        );
        let text = render_text(&r);
        assert!(text.contains("Jeg har ikke været i kontakt om akutte sager"));
        assert!(text.contains("indgår ikke"));
    }

    #[test]
    fn small_bases_are_marked_not_hidden() {
        let survey = shipped();
        let answers = vec![
            resp(vec![
                ("organisation", single("politi")),
                ("tilgaengelighed", single("hoej")),
                ("raadgivning", multi(&[RIS, SIK])),
            ]),
            resp(vec![
                ("organisation", single("politi")),
                ("tilgaengelighed", single("ikke_relevant")),
            ]),
            resp(vec![("tilgaengelighed", single("lav"))]),
        ];
        let r = compute(&survey, &answers, &[]);
        let d = r.organisations.shown().expect("figure 1");
        assert_eq!(d.base, 2);
        assert!(d.small_base);
        assert_eq!(d.unanswered, 1);
        // Every option is shown, even with nobody in it.
        assert_eq!(d.rows.len(), 6);
        assert_eq!(pct_of(&d.rows, "kommune"), Some(0));
        let t = r.cases_by_organisation.shown().expect("figure 2");
        let uoplyst = t.rows.last().expect("a row");
        assert_eq!(uoplyst.group.label, "Uoplyst");
        assert_eq!(uoplyst.n, 0);
        assert_eq!(uoplyst.cells[0].percent, None);
        let q5 = r
            .satisfaction
            .shown()
            .and_then(|s| s.items[0].shown())
            .expect("q5");
        assert_eq!(q5.share, Share::new(1, 2));
        assert!(q5.share.small_base);
        let text = render_text(&r);
        assert!(text.contains(SMALL_NOTE));
        assert!(text.contains("Kommune*"));
        assert!(text.contains("Uoplyst*"));
        assert!(text.contains("(n=2)"));
        let html = render_html(&r);
        assert!(html.contains("færre end 5 svar"));
        assert!(html.contains("Uoplyst"));
    }

    #[test]
    fn missing_questions_skip_their_figures() {
        let mut survey = shipped();
        survey
            .questions
            .retain(|q| q.code != "organisation" && q.code != "anbefale");
        let r = compute(&survey, &seed_answers(), &seed_rates());
        assert!(matches!(r.organisations, Figure::Skipped { .. }));
        assert!(matches!(r.cases_by_organisation, Figure::Skipped { .. }));
        assert!(matches!(r.advice_by_organisation, Figure::Skipped { .. }));
        assert!(r.children.shown().is_some());
        assert!(r.multiple_advice.shown().is_some());
        let s = r.satisfaction.shown().expect("two of three");
        assert!(matches!(s.items[2], Figure::Skipped { .. }));
        let text = render_text(&r);
        assert!(text.contains("Kan ikke vises: spørgsmålet «organisation» findes ikke"));
        let html = render_html(&r);
        assert!(html.contains("Kan ikke vises: spørgsmålet «anbefale» findes ikke"));

        // A question of another kind is skipped too.
        let mut survey = shipped();
        for q in &mut survey.questions {
            if q.code == "raadgivning" {
                q.kind = Kind::Single;
            }
        }
        let r = compute(&survey, &seed_answers(), &[]);
        assert!(matches!(r.multiple_advice, Figure::Skipped { .. }));

        // No satisfaction question at all.
        let mut survey = shipped();
        survey.questions.truncate(4);
        let r = compute(&survey, &seed_answers(), &[]);
        assert!(matches!(r.satisfaction, Figure::Skipped { .. }));
        let _ = render_html(&r);
        let _ = render_text(&r);
    }

    #[test]
    fn other_versions_and_unknown_codes_do_not_crash() {
        let mut a = resp(vec![
            ("organisation", single("ngo")),
            ("raadgivning", multi(&[RIS, "jura"])),
            (
                "antal_sager",
                Value::Text {
                    text: "mange".into(),
                },
            ),
            ("gammelt", single("x")),
        ]);
        a.survey_version = 2;
        let mut b = resp(vec![("organisation", single("kommune"))]);
        b.survey_id = "et-andet-skema".into();
        let r = compute(&shipped(), &[a, b], &[]);
        assert_eq!(r.respondents, 1);
        assert_eq!(r.versions.get(&2), Some(&1));
        assert_eq!(r.notes.len(), 3, "{:?}", r.notes);
        let d = r.organisations.shown().expect("figure 1");
        let ngo = d.rows.last().expect("a row");
        assert_eq!(
            (ngo.category.label.as_str(), ngo.category.known),
            ("ngo", false)
        );
        let t = r.advice_by_organisation.shown().expect("figure 3");
        assert!(t
            .columns
            .iter()
            .any(|c| c.code == "jura" && c.label == "jura"));
        let text = render_text(&r);
        assert!(text.contains("version 2"));
        let html = render_html(&r);
        assert!(html.contains("ngo"));
        // Nothing at all.
        let empty = compute(&shipped(), &[], &[]);
        assert_eq!(empty.respondents, 0);
        assert!(render_text(&empty).contains('–'));
        let _ = render_html(&empty);
    }

    #[test]
    fn html_is_self_contained_and_accessible() {
        let html = render_html(&seed_report());
        assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"da\">"));
        assert!(!html.contains("http://"));
        assert!(!html.contains("https://"));
        assert!(!html.to_ascii_lowercase().contains("<script"));
        assert!(!html.contains(" src="));
        assert!(!html.contains("<link"));
        assert!(!html.contains("url("));
        // Every chart has a role and a text alternative.
        let svgs = html.matches("<svg ").count();
        assert_eq!(
            svgs,
            1 + 1 + 1 + 7 + 1,
            "one chart each, seven for figure 3"
        );
        assert_eq!(
            html.matches("<svg role=\"img\" aria-label=\"").count(),
            svgs
        );
        assert_eq!(html.matches("<title>").count(), svgs + 1);
        assert!(html.contains(
            "Figur 1. Respondenter fordelt på type af organisation (n=79): Kommune 65\u{a0}% (51)"
        ));
        // Tables have captions and header scopes.
        assert_eq!(
            html.matches("<table>").count(),
            html.matches("<caption>").count()
        );
        assert!(html.contains("<th scope=\"col\""));
        assert!(html.contains("<th scope=\"row\""));
        assert!(html.contains("@media print"));
        // Balanced elements.
        for tag in ["svg", "table", "section", "figure", "text", "p"] {
            assert_eq!(
                html.matches(&format!("<{tag}>")).count()
                    + html.matches(&format!("<{tag} ")).count(),
                html.matches(&format!("</{tag}>")).count(),
                "<{tag}> balanced"
            );
        }
        // Data from the survey and the caller is escaped.
        let mut survey = shipped();
        survey.title = "<b>Tom & \"Jerry\"</b>".into();
        let r = compute(&survey, &[], &[("<script>".into(), 1, 0)]);
        let html = render_html(&r);
        assert!(html.contains("&lt;b&gt;Tom &amp; &quot;Jerry&quot;&lt;/b&gt;"));
        assert!(!html.contains("<script>"));
    }

    #[test]
    fn report_serialises() {
        let r = seed_report();
        let j = serde_json::to_value(&r).expect("serialisable");
        assert_eq!(j["response_rate"]["shown"]["total"]["rate"]["percent"], 50);
        assert_eq!(j["small_group_note"], SMALL_NOTE);
    }

    #[test]
    fn text_helpers() {
        assert_eq!(shorten("kort", 10), "kort");
        assert_eq!(shorten("en lang sætning med ord", 12), "en lang…");
        assert_eq!(
            chart_label("Rådgivning om noget (som fx det her)"),
            "Rådgivning om noget"
        );
        assert_eq!(chart_label("Andet (uddyb)"), "Andet");
        let lines = wrap("a b c d e f g h", 3, 2);
        assert_eq!(lines.len(), 2);
        assert!(lines[1].ends_with('…'));
    }
}
