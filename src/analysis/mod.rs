//! What canvass reports, to the operator, the managers and the analysts:
//! figures computed by pure functions from the store's counters and the
//! anonymous answers, then rendered. Where things live:
//!
//! - [`status`]: the figures of `canvass status`, computed from stored counters.
//! - [`digest`]: the managers' digest figures (pure) and the context its
//!   templates (`digest.txt`, `digest.html`) see.
//! - [`chart`]: the digest's PNG bar chart (plotters, bundled font).
//! - [`report`]: the agency's analysis (response rate, figures 1–4) as text or one HTML page (pure).
//! - [`export`]: the answers as CSV (for Excel) or JSON, one row per answer (pure).
//! - [`export_xlsx`]: the answers and response rates as an Excel workbook (pure).
//! - [`percent`]: the one percent rule (whole, half up, "50 %" with a no-break space) of status, digest and report.

pub mod chart;
pub mod digest;
pub mod export;
pub mod export_xlsx;
pub mod percent;
pub mod report;
pub mod status;
