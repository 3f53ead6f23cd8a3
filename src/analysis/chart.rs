//! The digest's bar chart: response rate per region as a PNG, drawn with
//! plotters on a bitmap with a bundled font (DejaVu Sans), so it renders the
//! same on a server with no fonts installed. Sent inline (CID) in the digest.

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::analysis::percent;

const WIDTH: u32 = 640;
const HEIGHT: u32 = 320;
const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

#[derive(Debug, thiserror::Error)]
#[error("cannot draw the chart: {0}")]
pub struct ChartError(String);

fn err(e: impl std::fmt::Display) -> ChartError {
    ChartError(e.to_string())
}

fn register() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Bars of `(label, answered, invited)`: the response rate in percent.
pub fn response_rates_png(title: &str, bars: &[(String, u64, u64)]) -> Result<Vec<u8>, ChartError> {
    register();
    let mut rgb = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let n = bars.len().max(2) as u32;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            // A segmented range 0..k has k + 1 segments.
            .build_cartesian_2d((0u32..n - 1).into_segmented(), 0u32..100u32)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(WHITE)
            .y_desc("Svarprocent")
            .y_label_formatter(&|v| percent::format(Some(u64::from(*v))))
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => bars
                    .get(*i as usize)
                    .map(|b| b.0.clone())
                    .unwrap_or_default(),
                _ => String::new(),
            })
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(err)?;
        let colour = RGBColor(0, 69, 110);
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, answered, invited))| {
                let pct = percent::whole(*answered, *invited).map_or(0, |p| p.min(100) as u32);
                let i = i as u32;
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0),
                        (SegmentValue::Exact(i + 1), pct),
                    ],
                    colour.filled(),
                );
                bar.set_margin(0, 0, 12, 12);
                bar
            }))
            .map_err(err)?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, answered, invited))| {
                let whole = percent::whole(*answered, *invited).map(|p| p.min(100));
                let pct = whole.map_or(0, |p| p as u32);
                let label = percent::format(whole);
                Text::new(
                    label,
                    (SegmentValue::CenterOf(i as u32), (pct + 6).min(97)),
                    ("sans-serif", 13).into_font(),
                )
            }))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    let mut png = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png, WIDTH, HEIGHT);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(err)?;
        w.write_image_data(&rgb).map_err(err)?;
    }
    Ok(png)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_valid_png_with_bars() {
        let bars = vec![
            ("Hovedstaden".to_string(), 20, 40),
            ("Sjælland".to_string(), 12, 30),
            ("Syddanmark".to_string(), 20, 35),
            ("Midtjylland".to_string(), 0, 0),
        ];
        let png = response_rates_png("Svarprocent pr. region", &bars).unwrap();
        if let Ok(path) = std::env::var("CANVASS_CHART_OUT") {
            std::fs::write(path, &png).unwrap();
        }
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let decoder = png::Decoder::new(std::io::Cursor::new(&png));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (WIDTH, HEIGHT));
        // The bars' colour is present: something was drawn.
        let bar_pixels = buf.chunks(3).filter(|p| p == &[0, 69, 110]).count();
        assert!(bar_pixels > 1000, "{bar_pixels}");
    }
}
