//! `canvass export --format xlsx`: the anonymous answers as an Excel
//! workbook (rust_xlsxwriter), for analysts who work in Excel.
//!
//! - "Svar": one row per answer, the questions as headers (human text; the
//!   machine column names of the CSV are in the sheet "Kolonner"), numbers
//!   typed as numbers (row, version, the 0/1 flags of multiple choice), the
//!   day as an Excel date;
//! - "Svarprocent": invited, answered and the rate per region and in total,
//!   the rate as a number formatted as a percentage, and the small-group
//!   flag of `canvass report` carried over with its note;
//! - "Kolonner": each answers column's header and its CSV name.
//!
//! Pure: answers and rates in, bytes out.

use chrono::Datelike;
use rust_xlsxwriter::{ExcelDateTime, Format, FormatAlign, Workbook, XlsxError};

use crate::analysis::export::{cells, columns_of, ordered, Col};
use crate::analysis::report::ResponseRates;
use crate::store::StoredResponse;
use crate::survey::Survey;

/// The sheet names, in order.
pub const SHEETS: [&str; 3] = ["Svar", "Svarprocent", "Kolonner"];

/// The answers sheet's header of a column: the question as a person reads it.
fn header(col: &Col<'_>) -> String {
    match col {
        Col::Row => "Nr.".to_string(),
        Col::Version => "Skemaversion".to_string(),
        Col::Region => "Region".to_string(),
        Col::Day => "Dato".to_string(),
        Col::Code(q) => format!("{}. {} (kode)", q.nr, q.text),
        Col::Label(q) | Col::Text(q) => format!("{}. {}", q.nr, q.text),
        Col::OptionText(q, o) => format!("{}. {} – tekst", q.nr, o.label),
        Col::Flag(q, o) => format!("{}. {}", q.nr, o.label),
        Col::Unplaced => "Svar, der ikke passer til skemaet (JSON)".to_string(),
    }
}

/// Whether a column holds numbers (written as numbers, not text).
fn numeric(col: &Col<'_>) -> bool {
    matches!(col, Col::Row | Col::Version | Col::Flag(..))
}

/// The workbook's bytes.
pub fn to_xlsx(
    survey: &Survey,
    responses: &[StoredResponse],
    rates: Option<&ResponseRates>,
    small_group_note: &str,
) -> Result<Vec<u8>, XlsxError> {
    let mut wb = Workbook::new();
    let bold = Format::new()
        .set_bold()
        .set_text_wrap()
        .set_align(FormatAlign::Top);
    let date = Format::new().set_num_format("yyyy-mm-dd");
    let pct = Format::new().set_num_format("0%");
    let cols = columns_of(survey);

    let ws = wb.add_worksheet();
    ws.set_name(SHEETS[0])?;
    for (c, col) in cols.iter().enumerate() {
        let c = c as u16;
        ws.write_string_with_format(0, c, header(col), &bold)?;
        ws.set_column_width(c, if numeric(col) { 10 } else { 24 })?;
    }
    ws.set_freeze_panes(1, 0)?;
    for (i, r) in ordered(responses).into_iter().enumerate() {
        let row = (i + 1) as u32;
        for (c, (col, value)) in cols.iter().zip(cells(&cols, i + 1, r)).enumerate() {
            let c = c as u16;
            if value.is_empty() {
                continue;
            }
            match col {
                Col::Day => {
                    let d = r.day;
                    let x =
                        ExcelDateTime::from_ymd(d.year() as u16, d.month() as u8, d.day() as u8)?;
                    ws.write_datetime_with_format(row, c, &x, &date)?;
                }
                _ if numeric(col) => match value.parse::<f64>() {
                    Ok(n) => {
                        ws.write_number(row, c, n)?;
                    }
                    Err(_) => {
                        ws.write_string(row, c, value.as_ref())?;
                    }
                },
                _ => {
                    ws.write_string(row, c, value.as_ref())?;
                }
            }
        }
    }

    let ws = wb.add_worksheet();
    ws.set_name(SHEETS[1])?;
    for (c, h) in [
        "Region",
        "Inviteret",
        "Svar",
        "Svarprocent",
        "Få svar: læs med forsigtighed",
    ]
    .iter()
    .enumerate()
    {
        ws.write_string_with_format(0, c as u16, *h, &bold)?;
    }
    ws.set_column_width(0, 16)?;
    ws.set_column_width(4, 40)?;
    let mut row = 1u32;
    if let Some(rates) = rates {
        for r in rates.regions.iter().chain(std::iter::once(&rates.total)) {
            ws.write_string(row, 0, &r.region)?;
            ws.write_number(row, 1, r.invited as f64)?;
            ws.write_number(row, 2, r.answered as f64)?;
            if r.invited > 0 {
                ws.write_number_with_format(row, 3, r.answered as f64 / r.invited as f64, &pct)?;
            }
            if r.small {
                ws.write_string(row, 4, "Ja")?;
            }
            row += 1;
        }
    }
    ws.write_string(row + 1, 0, small_group_note)?;

    let ws = wb.add_worksheet();
    ws.set_name(SHEETS[2])?;
    ws.write_string_with_format(0, 0, "Overskrift i arket Svar", &bold)?;
    ws.write_string_with_format(0, 1, "Kolonnenavn i CSV-eksporten", &bold)?;
    ws.set_column_width(0, 60)?;
    ws.set_column_width(1, 40)?;
    for (i, col) in cols.iter().enumerate() {
        ws.write_string(i as u32 + 1, 0, header(col))?;
        ws.write_string(i as u32 + 1, 1, col.name())?;
    }
    wb.save_to_buffer()
}
