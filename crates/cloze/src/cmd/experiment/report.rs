//! What experiments report: means and standard deviations over seeds,
//! Markdown tables and bar charts with error bars.

use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;

/// The mean and sample standard deviation of one metric over seeds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Arithmetic mean.
    pub mean: f64,
    /// Sample standard deviation (n - 1 in the denominator); 0 for one value.
    pub sd: f64,
    /// How many values.
    pub n: usize,
}

impl Summary {
    /// The summary of `values`; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Self> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let sd = if n > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Some(Self { mean, sd, n })
    }

    /// `mean ± sd` of a fraction, in percent with one decimal.
    pub fn percent(&self) -> String {
        format!("{:.1} ± {:.1}", self.mean * 100.0, self.sd * 100.0)
    }
}

/// A fraction in percent with one decimal, or "n/a".
pub fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{:.1}", v * 100.0))
}

/// `mean ± sd` of `values` times `scale` with `digits` decimals; the mean
/// alone for one value, "n/a" for none.
pub fn cell(values: &[f64], scale: f64, digits: usize) -> String {
    match Summary::of(values) {
        None => "n/a".into(),
        Some(s) if s.n == 1 => format!("{:.*}", digits, s.mean * scale),
        Some(s) => format!(
            "{:.*} ± {:.*}",
            digits,
            s.mean * scale,
            digits,
            s.sd * scale
        ),
    }
}

/// A Markdown table; `right` says which columns are right-aligned.
pub fn markdown_table(header: &[&str], right: &[bool], rows: &[Vec<String>]) -> String {
    let mut s = format!("| {} |\n|", header.join(" | "));
    for i in 0..header.len() {
        s.push_str(if right.get(i).copied().unwrap_or(false) {
            "---:|"
        } else {
            "---|"
        });
    }
    s.push('\n');
    for r in rows {
        s.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    s
}

/// One panel of a bar chart: a bar (mean, with a ± sd error bar) per label.
pub struct Panel {
    /// Caption.
    pub title: String,
    /// (label, summary) in drawing order; values are fractions, drawn in percent.
    pub bars: Vec<(String, Summary)>,
}

/// Bar colours, one per bar position.
const COLOURS: &[RGBColor] = &[
    RGBColor(120, 120, 120),
    RGBColor(66, 133, 244),
    RGBColor(52, 168, 83),
    RGBColor(234, 67, 53),
    RGBColor(251, 188, 5),
    RGBColor(155, 89, 182),
];

/// Draws the panels side by side into one PNG. The y axis of each panel
/// spans its own bars (it does not start at 0), so small differences are
/// visible; the error bars are ± one standard deviation over seeds.
pub fn bar_chart(path: &Path, panels: &[Panel]) -> Result<()> {
    let text = super::super::plot::register_font();
    let width = 360 * u32::try_from(panels.len().max(1)).unwrap_or(1);
    let root = BitMapBackend::new(path, (width, 420)).into_drawing_area();
    root.fill(&WHITE).context("drawing background")?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    for (panel, area) in panels.iter().zip(areas.iter()) {
        draw_panel(area, panel, text)?;
    }
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn draw_panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    panel: &Panel,
    text: bool,
) -> Result<()> {
    let n = u32::try_from(panel.bars.len().max(1)).unwrap_or(1);
    let lo = panel
        .bars
        .iter()
        .map(|(_, s)| (s.mean - s.sd) * 100.0)
        .fold(f64::MAX, f64::min);
    let hi = panel
        .bars
        .iter()
        .map(|(_, s)| (s.mean + s.sd) * 100.0)
        .fold(f64::MIN, f64::max);
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (0.0, 1.0) };
    let pad = ((hi - lo) * 0.15).max(0.5);
    let (y0, y1) = ((lo - pad).max(0.0), (hi + pad).min(100.0));
    let mut builder = ChartBuilder::on(area);
    builder.margin(12);
    if text {
        builder
            .caption(&panel.title, ("sans-serif", 18))
            .x_label_area_size(36)
            .y_label_area_size(48);
    } else {
        builder.x_label_area_size(8).y_label_area_size(8);
    }
    let mut chart = builder
        .build_cartesian_2d((0..n).into_segmented(), y0..y1)
        .context("building chart")?;
    let labels: Vec<String> = panel.bars.iter().map(|(l, _)| l.clone()).collect();
    let formatter = |v: &SegmentValue<u32>| match v {
        SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
        _ => String::new(),
    };
    let mut mesh = chart.configure_mesh();
    mesh.disable_x_mesh();
    if text {
        // Horizontal labels under their bars: rotated ones were drawn
        // upwards from the axis, into the plot and behind the bars.
        mesh.y_desc("%")
            .x_label_formatter(&formatter)
            .x_label_style(("sans-serif", 12));
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().context("drawing axes")?;
    for (i, (_, s)) in panel.bars.iter().enumerate() {
        let x = u32::try_from(i).unwrap_or(0);
        let colour = COLOURS[i % COLOURS.len()];
        let mut bar = Rectangle::new(
            [
                (SegmentValue::Exact(x), y0),
                (SegmentValue::Exact(x + 1), s.mean * 100.0),
            ],
            colour.filled(),
        );
        bar.set_margin(0, 0, 6, 6);
        chart
            .draw_series(std::iter::once(bar))
            .context("drawing a bar")?;
        if s.n > 1 {
            let (a, b) = ((s.mean - s.sd) * 100.0, (s.mean + s.sd) * 100.0);
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![
                        (SegmentValue::CenterOf(x), a),
                        (SegmentValue::CenterOf(x), b),
                    ],
                    BLACK.stroke_width(2),
                )))
                .context("drawing an error bar")?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn summary_uses_the_sample_standard_deviation() {
        let s = Summary::of(&[0.70, 0.74, 0.78]).unwrap();
        assert!((s.mean - 0.74).abs() < 1e-12);
        assert!((s.sd - 0.04).abs() < 1e-12);
        assert_eq!(s.n, 3);
        assert_eq!(s.percent(), "74.0 ± 4.0");
        let one = Summary::of(&[0.5]).unwrap();
        assert_eq!(one.sd, 0.0);
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn markdown_tables_align_the_numeric_columns() {
        let t = markdown_table(
            &["model", "acc"],
            &[false, true],
            &[vec!["a".into(), "1.0".into()]],
        );
        assert_eq!(t, "| model | acc |\n|---|---:|\n| a | 1.0 |\n");
    }

    #[test]
    fn a_bar_chart_is_a_png() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bars.png");
        let s = |m| Summary::of(&[m - 0.01, m, m + 0.01]).unwrap();
        bar_chart(
            &path,
            &[
                Panel {
                    title: "one".into(),
                    bars: vec![("a".into(), s(0.5)), ("b".into(), s(0.6))],
                },
                Panel {
                    title: "two".into(),
                    bars: vec![("a".into(), s(0.8))],
                },
            ],
        )
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    }
}
