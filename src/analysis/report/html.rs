//! The report as one self-contained HTML page (`canvass report --html`),
//! rendered from the minijinja template `src/templates/report.html`
//! (compiled in, not overridable) with the charts of [`super::svg`].
//!
//! The template gets the [`Report`] as it serialises (`r`), the charts as
//! safe strings, and the few phrases made of several figures; strings are
//! escaped with [`crate::escape::html_escape`], percentages written by
//! [`crate::analysis::percent`].

use std::sync::OnceLock;

use minijinja::{context, Environment, Value};

use super::*;
use crate::analysis::percent;

const TEMPLATE: &str = include_str!("../../templates/report.html");

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(true);
        env.set_formatter(crate::escape::formatter);
        env.add_filter("pct", percent::format);
        env.add_function("percent", percent::of);
        env.add_global("small_mark", SMALL_MARK);
        env.add_global("small_note", SMALL_NOTE);
        env.add_global("multi_note", MULTI_NOTE);
        env.add_global(
            "h",
            context! {
                rate => H_RATE,
                fig1 => H_FIG1,
                fig2 => H_FIG2,
                children => H_CHILDREN,
                multi => H_MULTI,
                fig3 => H_FIG3,
                fig4 => H_FIG4,
            },
        );
        env.add_template("report.html", TEMPLATE)
            .expect("the report template parses: a bug");
        env
    })
}

/// The report as one self-contained HTML page (lang="da"): inline CSS,
/// inline SVG charts with text alternatives, tables with captions; no
/// JavaScript, nothing fetched from anywhere.
pub fn render_html(r: &Report) -> String {
    let mut facts = vec![format!(
        "Spørgeskema {} version {}",
        r.survey_id, r.survey_version
    )];
    facts.extend(period(r));
    let items: Vec<&SatisfactionItem> = r
        .satisfaction
        .shown()
        .map(|s| s.items.iter().filter_map(Figure::shown).collect())
        .unwrap_or_default();
    let safe = |svg: String| Value::from_safe_string(svg);
    let charts = context! {
        rate => r.response_rate.shown().map(|rr| safe(svg::response_rates(rr))),
        fig1 => r.organisations.shown().map(|d| safe(svg::organisations(d))),
        fig2 => r.cases_by_organisation.shown().map(|t| safe(svg::cases_by_organisation(t))),
        fig3 => r.advice_by_organisation.shown().map(|t| {
            svg::advice_by_organisation(t).into_iter().map(safe).collect::<Vec<_>>()
        }),
        fig4 => r.satisfaction.shown().map(|_| safe(svg::satisfaction(&items))),
    };
    env()
        .get_template("report.html")
        .and_then(|t| {
            t.render(context! {
                r => Value::from_serialize(r),
                lede => facts.join(" · "),
                charts,
                top => items.first().map_or(String::new(), |i| top_label(&i.top)),
                not_applicable_note => not_applicable_note(&items),
            })
        })
        .expect("the report renders from plain data: a bug")
}
