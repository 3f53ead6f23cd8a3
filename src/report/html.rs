//! The report as one self-contained HTML page (`canvass report --html`).

use std::fmt::Write as _;

use super::svg::*;
use super::*;
use crate::escape::html_escape;
use crate::percent;

// ---------------------------------------------------------------------------
// HTML

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
            html_escape(SMALL_NOTE)
        );
    }
}

fn html_skipped(out: &mut String, reason: &str) {
    let _ = writeln!(
        out,
        "<p class=\"skipped\">{}</p>",
        html_escape(&skipped_text(reason))
    );
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
        html_escape(caption),
        th_col(first),
        th_col_num("Antal"),
        th_col_num("Andel")
    );
    for r in &d.rows {
        let _ = write!(
            out,
            "<tr><th scope=\"row\">{}{}</th><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            html_escape(&r.category.label),
            html_mark(r.small_group),
            r.share.count,
            html_escape(&percent::format(r.share.percent))
        );
    }
    for na in &d.not_applicable {
        let _ = write!(
            out,
            "<tr class=\"aside\"><th scope=\"row\">{}</th><td class=\"num\">{}</td><td class=\"num\">indgår ikke</td></tr>",
            html_escape(&na.category.label),
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
        html_escape(&percent::of(d.base, d.base))
    );
    html_footnote(out, d.small_base || d.rows.iter().any(|r| r.small_group));
}

/// A cross table as an HTML table: groups as rows (the total in the
/// footer), the question's options as columns.
fn html_group_table(out: &mut String, t: &CrossTab, caption: &str) {
    let _ = write!(
        out,
        "<div class=\"wide\"><table><caption>{}</caption><thead><tr>{}{}",
        html_escape(caption),
        th_col("Organisation"),
        th_col_num("n")
    );
    for c in &t.columns {
        out.push_str(&th_col_num(&html_escape(&c.label)));
    }
    out.push_str("</tr></thead><tbody>");
    let row = |g: &GroupRow| {
        let mut s = format!(
            "<tr><th scope=\"row\">{}{}</th><td class=\"num\">{}</td>",
            html_escape(&g.group.label),
            html_mark(g.small),
            g.n
        );
        for c in &g.cells {
            let _ = write!(
                s,
                "<td class=\"num\">{} ({})</td>",
                c.count,
                html_escape(&percent::format(c.percent))
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
        html_escape(heading)
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
        html_escape(&r.title),
        html_escape(&r.title)
    );
    let mut facts = vec![format!(
        "Spørgeskema {} version {}",
        r.survey_id, r.survey_version
    )];
    facts.extend(period(r));
    let _ = writeln!(
        out,
        "<p class=\"lede\">{}</p>",
        html_escape(&facts.join(" · "))
    );

    // Key figures.
    out.push_str("<ul class=\"keys\">");
    let _ = write!(out, "<li><b>{}</b>svar</li>", r.respondents);
    if let Figure::Shown(rr) = &r.response_rate {
        let _ = write!(
            out,
            "<li><b>{}</b>svarprocent ({} af {} inviterede)</li>",
            html_escape(&percent::format(rr.total.rate.percent)),
            rr.total.answered,
            rr.total.invited
        );
    }
    out.push_str("</ul>\n");
    for n in &r.notes {
        let _ = writeln!(
            out,
            "<p class=\"note\"><strong>Bemærk:</strong> {}</p>",
            html_escape(n)
        );
    }
    let _ = writeln!(
        out,
        "<p class=\"note\">Procenter er hele procent, afrundet. {SMALL_MARK} ved en gruppe eller et grundlag betyder {}.</p>",
        html_escape(SMALL_NOTE)
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
                        percent::format(x.rate.percent),
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
                        percent::format(x.rate.percent),
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
                    html_escape(&x.region),
                    html_mark(x.small),
                    x.invited,
                    x.answered,
                    html_escape(&percent::format(x.rate.percent))
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
            let _ = writeln!(
                out,
                "<p class=\"question\">{}</p>",
                html_escape(&d.question.text)
            );
            let summary = format!(
                "{heading}: {}.",
                d.rows
                    .iter()
                    .map(|x| format!(
                        "{} {} ({})",
                        x.category.label,
                        percent::format(x.share.percent),
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
                    value: format!("{} ({})", percent::format(x.share.percent), x.share.count),
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
            let _ = writeln!(
                out,
                "<p class=\"question\">{}</p>",
                html_escape(&t.question.text)
            );
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
                            .map(|(c, s)| format!("{} {}", c.label, percent::format(s.percent)))
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
                html_escape(&percent::format(h.share.percent)),
                html_escape(&h.option.label),
                html_escape(&count_of(&h.share)),
                html_mark(h.share.small_base),
                html_escape(&h.distribution.question.text)
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
                html_escape(&percent::format(m.overall.percent)),
                html_escape(&count_of(&m.overall)),
                html_mark(m.overall.small_base)
            );
            let mut small = m.overall.small_base;
            match &m.one_case {
                Figure::Shown(o) => {
                    small |= o.share.small_base;
                    let _ = writeln!(
                        out,
                        "<p><strong>{}</strong> af dem, der har svaret «{}», har fået mere end én type rådgivning ({}){}.</p>",
                        html_escape(&percent::format(o.share.percent)),
                        html_escape(&o.option.label),
                        html_escape(&count_of(&o.share)),
                        html_mark(o.share.small_base)
                    );
                }
                Figure::Skipped { reason } => html_skipped(&mut out, reason),
            }
            let _ = writeln!(
                out,
                "<p class=\"question\">{}</p>",
                html_escape(&m.question.text)
            );
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
                html_escape(&t.question.text),
                html_escape(MULTI_NOTE)
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
                            percent::format(s.percent)
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
                        value: format!("{} ({})", percent::format(s.percent), s.count),
                    })
                    .collect();
                let _ = writeln!(
                    out,
                    "<figure><figcaption>{}{} (n={})</figcaption>{}</figure>",
                    html_escape(&g.group.label),
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
                    html_escape(&g.group.label),
                    html_mark(g.small),
                    g.n
                );
                for (c, s) in t.columns.iter().zip(&g.cells) {
                    let _ = write!(
                        out,
                        "<tr><th scope=\"row\">{}</th><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                        html_escape(&c.label),
                        s.count,
                        html_escape(&percent::format(s.percent))
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
                        percent::format(i.share.percent),
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
                        percent::format(i.share.percent),
                        i.distribution.base
                    ),
                })
                .collect();
            let legend_labels: Vec<String> = legend.iter().map(|c| c.label.clone()).collect();
            let _ = writeln!(
                out,
                "<figure><figcaption>Fordeling af svarene; til højre andelen {}</figcaption>{}</figure>",
                html_escape(&items.first().map_or(String::new(), |i| top_label(&i.top))),
                svg_stacked("fig-4", &summary, &legend_labels, &colours, &rows)
            );
            let _ = write!(
                out,
                "<table><caption>Andel der svarer {} </caption><thead><tr>{}{}{}</tr></thead><tbody>",
                html_escape(&items.first().map_or(String::new(), |i| top_label(&i.top))),
                th_col("Spørgsmål"),
                th_col_num("n"),
                th_col_num("Andel")
            );
            for i in &items {
                let _ = write!(
                    out,
                    "<tr><th scope=\"row\">{}. {}</th><td class=\"num\">{}{}</td><td class=\"num\">{}</td></tr>",
                    i.question.nr,
                    html_escape(&i.question.text),
                    i.share.base,
                    html_mark(i.share.small_base),
                    html_escape(&percent::format(i.share.percent))
                );
            }
            out.push_str("</tbody></table>\n");
            if let Some(note) = not_applicable_note(&items) {
                let _ = writeln!(out, "<p class=\"note\">{}</p>", html_escape(&note));
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
