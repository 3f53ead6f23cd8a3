//! The report's charts as inline SVG: horizontal bars and 100 % stacked
//! bars, each with a text alternative.

use std::fmt::Write as _;

use super::*;
use crate::analysis::percent;
use crate::escape::html_escape;

/// Greedy word wrap into at most `max_lines` lines of `width` characters.
pub(super) fn wrap(s: &str, width: usize, max_lines: usize) -> Vec<String> {
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
        s = html_escape(summary),
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
            html_escape(l)
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

pub(super) struct BarRow {
    pub(super) label: String,
    pub(super) share: Share,
    pub(super) value: String,
    /// A small group or base: a light bar, to be read with care.
    pub(super) small: bool,
    /// A total: the label in bold.
    pub(super) total: bool,
}

/// A horizontal bar chart of shares (0–100 %).
pub(super) fn svg_bars(id: &str, summary: &str, rows: &[BarRow]) -> String {
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
            html_escape(&r.value)
        );
        y += h;
    }
    out.push_str("</svg>");
    out
}

pub(super) struct StackRow {
    pub(super) label: String,
    /// Counts per legend entry.
    pub(super) counts: Vec<u64>,
    pub(super) base: u64,
    pub(super) trailing: String,
}

/// Horizontal 100 % stacked bars with a legend on top.
pub(super) fn svg_stacked(
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
            html_escape(l)
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
                    html_escape(&percent::of(*c, r.base))
                );
            }
            x = x1;
        }
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            x.max(BAR_X + BAR_W) + 8.0,
            mid + 4.5,
            html_escape(&r.trailing)
        );
        y += h;
    }
    out.push_str("</svg>");
    out
}
// ---------------------------------------------------------------------------
// The figures' charts

/// The response rate: a bar per region, the total in bold.
pub(super) fn response_rates(rr: &ResponseRates) -> String {
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
    svg_bars("fig-svarprocent", &summary, &bars)
}

/// Figure 1: a bar per type of organisation.
pub(super) fn organisations(d: &Distribution) -> String {
    let heading = format!("{H_FIG1} (n={})", d.base);
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
    svg_bars("fig-1", &summary, &bars)
}

/// Figure 2: a 100 % stacked bar per type of organisation, the total last.
pub(super) fn cases_by_organisation(t: &CrossTab) -> String {
    let heading = format!("{H_FIG2} (n={})", t.total.n);
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
    svg_stacked("fig-2", &summary, &legend, &colours, &rows)
}

/// Figure 3: a bar chart per group, the total first.
pub(super) fn advice_by_organisation(t: &CrossTab) -> Vec<String> {
    let groups: Vec<&GroupRow> = std::iter::once(&t.total).chain(t.rows.iter()).collect();
    groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
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
            svg_bars(&format!("fig-3-{i}"), &summary, &bars)
        })
        .collect()
}

/// Figure 4: a 100 % stacked bar per satisfaction question.
pub(super) fn satisfaction(items: &[&SatisfactionItem]) -> String {
    // Legend: the options in order of first appearance.
    let mut legend: Vec<Category> = Vec::new();
    for i in items {
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
    svg_stacked("fig-4", &summary, &legend_labels, &colours, &rows)
}

/// Colours for categories: the five-point scale when there are exactly five
/// known options on a scale, else the sequence; unknown codes are white.
pub(super) fn colours_for(cats: &[Category], scale: bool) -> Vec<(&'static str, &'static str)> {
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
