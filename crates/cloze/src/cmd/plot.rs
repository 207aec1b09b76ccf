//! `cloze plot RUN_DIR`: PNG curves of loss, accuracy and learning rate from a
//! run's `metrics.jsonl`.
//!
//! Every axis is linear. A logarithmic y axis was never offered: the learning
//! rate starts at 0 during warm-up and accuracy at 0 before training, which a
//! log scale cannot show, and the masked-LM loss (from ln(vocabulary size)
//! down to about 2) spans less than a decade, where a log scale adds little.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use cloze_train::metrics::MetricsRecord;
use plotters::prelude::*;

/// Arguments of `cloze plot`.
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// A run directory written by `cloze pretrain` or `cloze finetune`.
    pub run_dir: PathBuf,
    /// Where the PNGs go (default: RUN_DIR/plots).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// One named curve.
struct Series {
    name: String,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

/// TrueType fonts tried, in order, for axis labels; `CLOZE_PLOT_FONT` wins.
const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Registers a system font as "sans-serif"; false when none is found, in which
/// case the plots are drawn without text.
pub(crate) fn register_font() -> bool {
    let env = std::env::var_os("CLOZE_PLOT_FONT").map(PathBuf::from);
    let candidates = env
        .into_iter()
        .chain(FONT_CANDIDATES.iter().map(PathBuf::from));
    for path in candidates {
        if let Ok(bytes) = std::fs::read(&path) {
            // plotters keeps fonts for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                tracing::debug!(font = %path.display(), "plot font");
                return true;
            }
        }
    }
    false
}

fn draw(path: &Path, title: &str, y_label: &str, series: &[Series], text: bool) -> Result<()> {
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|p| p.1.is_finite())
        .collect();
    if pts.is_empty() {
        bail!("nothing to plot for {title}");
    }
    let (mut x0, mut x1) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (mut y0, mut y1) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let pad = (y1 - y0) * 0.05;
    y0 -= pad;
    y1 += pad;
    x0 = x0.min(0.0);
    let root = BitMapBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).context("drawing background")?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(16);
    if text {
        builder
            .caption(title, ("sans-serif", 24))
            .x_label_area_size(40)
            .y_label_area_size(70);
    } else {
        builder.x_label_area_size(8).y_label_area_size(8);
    }
    let mut chart = builder
        .build_cartesian_2d(x0..x1, y0..y1)
        .context("building chart")?;
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc("optimizer step").y_desc(y_label);
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().context("drawing axes")?;
    for s in series {
        let color = s.color;
        let anno = chart
            .draw_series(LineSeries::new(
                s.points.iter().copied().filter(|p| p.1.is_finite()),
                color.stroke_width(2),
            ))
            .context("drawing a curve")?;
        if text {
            anno.label(s.name.as_str()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        }
    }
    if text {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .context("drawing the legend")?;
    }
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Reads a `metrics.jsonl`, naming the file line (from 1) of a record that does not
/// parse. Blank lines are skipped. An incomplete last line (no newline: the run is
/// writing it, or was killed mid-write) is skipped with a note rather than failing
/// the plot of everything before it.
fn read_metrics(path: &Path) -> Result<Vec<MetricsRecord>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let count = text.lines().count();
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match cloze_train::metrics::parse_record(line) {
            Ok(r) => records.push(r),
            Err(_) if i + 1 == count && !text.ends_with('\n') => {
                eprintln!(
                    "note: {} line {}: ignoring an incomplete last record",
                    path.display(),
                    i + 1
                );
            }
            Err(e) => {
                // serde_json counts lines within the one line it was given; say
                // where in the file instead.
                let suffix = format!(" at line {} column {}", e.line(), e.column());
                let msg = e.to_string();
                let msg = msg.strip_suffix(&suffix).unwrap_or(&msg);
                bail!(
                    "{} line {}, column {}: not a metrics record: {msg}",
                    path.display(),
                    i + 1,
                    e.column()
                );
            }
        }
    }
    Ok(records)
}

/// Colours for the curves, in the order series are added.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(23, 190, 207),
    RGBColor(127, 127, 127),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
];

/// Curves by name, in first-seen order.
#[derive(Default)]
struct Curves(Vec<Series>);

impl Curves {
    fn push(&mut self, name: String, point: (f64, f64)) {
        match self.0.iter_mut().find(|s| s.name == name) {
            Some(s) => s.points.push(point),
            None => self.0.push(Series {
                name,
                color: RGBColor(0, 0, 0),
                points: vec![point],
            }),
        }
    }

    /// Every named value of `values` at `step`, as `"{prefix} {name}"`.
    fn add_all<'a>(
        &mut self,
        prefix: &str,
        step: f64,
        values: impl IntoIterator<Item = (&'a String, &'a f64)>,
    ) {
        for (name, &v) in values {
            self.push(format!("{prefix} {name}"), (step, v));
        }
    }

    fn coloured(mut self) -> Vec<Series> {
        for (i, s) in self.0.iter_mut().enumerate() {
            s.color = PALETTE[i % PALETTE.len()];
        }
        self.0
    }
}

/// Writes `loss.png`, `accuracy.png` and `lr.png`; returns their paths.
///
/// Every loss and accuracy the objective (training lines) and the held-out
/// task (evaluation lines) reported becomes a curve, whatever its name.
pub fn plot_run(run_dir: &Path, out: &Path) -> Result<Vec<PathBuf>> {
    let metrics = cloze_train::metrics::metrics_path(run_dir);
    let records = read_metrics(&metrics)?;
    let (mut losses, mut accuracies, mut lr) = (Curves::default(), Curves::default(), vec![]);
    let mut trained = false;
    for r in &records {
        match r {
            MetricsRecord::Train(t) => {
                let s = t.step as f64;
                trained = true;
                losses.add_all("train", s, &t.report.losses);
                accuracies.add_all("train", s, &t.report.accuracies);
                lr.push((s, t.lr));
            }
            MetricsRecord::Eval(e) => {
                let s = e.step as f64;
                losses.add_all("held-out", s, &e.report.losses);
                accuracies.add_all("held-out", s, &e.report.accuracies);
            }
        }
    }
    if !trained {
        bail!("{} holds no training records yet", metrics.display());
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let text = register_font();
    if !text {
        eprintln!("note: no TrueType font found (set CLOZE_PLOT_FONT=/path/to/font.ttf): plots have no labels");
    }
    let mut written = Vec::new();
    let p = out.join("loss.png");
    draw(
        &p,
        "Losses (train: window means; held-out: fixed masks)",
        "cross-entropy (nats)",
        &losses.coloured(),
        text,
    )?;
    written.push(p);
    let accuracies = accuracies.coloured();
    if !accuracies.is_empty() {
        let p = out.join("accuracy.png");
        draw(&p, "Accuracy", "accuracy", &accuracies, text)?;
        written.push(p);
    }
    let p = out.join("lr.png");
    draw(
        &p,
        "Learning rate",
        "learning rate",
        &[Series {
            name: "lr".into(),
            color: RGBColor(255, 127, 14),
            points: lr,
        }],
        text,
    )?;
    written.push(p);
    Ok(written)
}

/// Runs `cloze plot`.
pub fn run(args: PlotArgs) -> Result<()> {
    let out = args.out.unwrap_or_else(|| args.run_dir.join("plots"));
    for p in plot_run(&args.run_dir, &out)? {
        println!("{}", p.display());
    }
    Ok(())
}
