//! The report as terminal tables (`canvass report`).

use std::fmt::Write as _;

use super::*;
use crate::analysis::percent;

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
                percent::format(r.share.percent),
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
        percent::of(d.base, d.base),
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
                        percent::format(x.rate.percent),
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
                            .map(|s| format!("{} ({})", s.count, percent::format(s.percent))),
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
                percent::format(h.share.percent),
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
                percent::format(m.overall.percent),
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
                        percent::format(o.share.percent),
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
                            percent::format(s.percent),
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
                        format!("{}{other_top}", percent::format(i.share.percent)),
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
    percent::for_terminal(&out)
}
