//! The figures: the survey definition, the stored answers and the invitation
//! counts in, plain numbers out (pure).

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use serde::Serialize;

use crate::analysis::percent;
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
            percent: percent::whole(count, base),
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
