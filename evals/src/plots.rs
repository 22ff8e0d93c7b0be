//! PNG plots of an evaluation: latent density and mean-activation histograms, FVU against CE-loss increase (the paper's Figure 1
//! axes), and lines such as held-out FVU against training tokens. Text is drawn with the DejaVu Sans font of
//! the system (Debian's fonts-dejavu-core).

use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::Path;
use std::sync::OnceLock;

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Registers the font once; an error names the file to install.
fn font() -> Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let bytes = std::fs::read(FONT)
            .map_err(|e| format!("{FONT}: {e} (install Debian's fonts-dejavu-core)"))?;
        plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            Box::leak(bytes.into_boxed_slice()),
        )
        .map_err(|_| format!("{FONT}: not a usable TrueType font"))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// One coder's firing counts over `rows` held-out rows, and its latents' mean activations over those rows.
pub struct Density<'a> {
    pub name: &'a str,
    pub fired: &'a [u64],
    pub mean_activation: &'a [f64],
    pub rows: u64,
}

/// Per coder, a histogram line of log10(v) over its latents' values in `lo..hi` (bins of 0.25; values below
/// `lo` in the first bin, above `hi` in the last), dead latents (v = 0) counted in the legend.
fn log10_lines(
    coders: &[Density],
    value: impl Fn(&Density, usize) -> f64,
    lo: f64,
    hi: f64,
) -> Vec<(String, Vec<(f64, f64)>)> {
    const BIN: f64 = 0.25;
    let bins = ((hi - lo) / BIN) as usize;
    coders
        .iter()
        .map(|c| {
            let (mut counts, mut dead) = (vec![0f64; bins], 0);
            for l in 0..c.fired.len() {
                let v = value(c, l);
                if v <= 0.0 {
                    dead += 1;
                    continue;
                }
                let at = ((v.log10() - lo) / BIN).max(0.0) as usize;
                counts[at.min(bins - 1)] += 1.0;
            }
            let pts = counts
                .iter()
                .enumerate()
                .map(|(i, &n)| (lo + (i as f64 + 0.5) * BIN, n))
                .collect();
            (format!("{} (dead {dead})", c.name), pts)
        })
        .collect()
}

fn top(series: &[(String, Vec<(f64, f64)>)]) -> f64 {
    series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .fold(1.0, f64::max)
        * 1.1
}

/// Two histograms side by side, one line per coder (the paper's Appendix B): log10 firing frequency, and log10
/// mean activation over all held-out tokens.
pub fn density_histograms(path: &Path, coders: &[Density]) -> Result<()> {
    let density = log10_lines(
        coders,
        |c, l| c.fired[l] as f64 / c.rows.max(1) as f64,
        -6.0,
        0.0,
    );
    let mean = log10_lines(coders, |c, l| c.mean_activation[l], -6.0, 1.0);
    figure(path, (1500, 560), |root| {
        let (left, right) = root.split_horizontally(750);
        let axes = Axes {
            caption: "Latent density on held-out tokens",
            x_desc: "log10(firing frequency)",
            y_desc: "latents",
            x: -6.0..0.0,
            y: 0.0..top(&density),
        };
        draw_lines(&left, &axes, &density)?;
        let axes = Axes {
            caption: "Mean activation over held-out tokens",
            x_desc: "log10(mean activation)",
            y_desc: "latents",
            x: -6.0..1.0,
            y: 0.0..top(&mean),
        };
        draw_lines(&right, &axes, &mean)
    })
}

/// A chart's title, axis names and ranges.
pub struct Axes<'a> {
    pub caption: &'a str,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
    pub x: std::ops::Range<f64>,
    pub y: std::ops::Range<f64>,
}

/// One line per named series of (x, y) points, with a legend.
pub fn lines(path: &Path, axes: &Axes, series: &[(String, Vec<(f64, f64)>)]) -> Result<()> {
    figure(path, (900, 560), |root| draw_lines(root, axes, series))
}

/// A part of a figure, or all of it.
type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// A white figure of `size` pixels drawn by `draw`, then written to `path` as PNG.
fn figure(path: &Path, size: (u32, u32), draw: impl FnOnce(&Area) -> Result<()>) -> Result<()> {
    font()?;
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE)?;
    draw(&root)?;
    root.present()
        .with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(())
}

/// [`lines`] drawn on an area of a figure.
fn draw_lines(area: &Area, axes: &Axes, series: &[(String, Vec<(f64, f64)>)]) -> Result<()> {
    let mut chart = ChartBuilder::on(area)
        .caption(axes.caption, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(axes.x.clone(), axes.y.clone())?;
    chart
        .configure_mesh()
        .x_desc(axes.x_desc)
        .y_desc(axes.y_desc)
        .label_style(("sans-serif", 14))
        .draw()?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    Ok(())
}

/// Each coder's absorption fraction per letter (x: a = 0 … z = 25; letters that do not count are left out).
pub fn absorption_by_letter(path: &Path, a: &crate::absorption::AbsorptionResult) -> Result<()> {
    let series: Vec<(String, Vec<(f64, f64)>)> = a
        .coders
        .iter()
        .map(|c| {
            let pts = c
                .letters
                .iter()
                .enumerate()
                .filter(|(_, l)| l.counted)
                .map(|(i, l)| (i as f64, l.absorption_fraction))
                .collect();
            (c.name.clone(), pts)
        })
        .collect();
    let top = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .fold(0.05f64, f64::max);
    let axes = Axes {
        caption: "Absorption fraction per first letter (letters whose probe counts)",
        x_desc: "letter (a = 0 … z = 25)",
        y_desc: "mean absorption fraction",
        x: 0.0..25.0,
        y: 0.0..top * 1.1,
    };
    lines(path, &axes, &series)
}

/// FVU (x) against CE-loss increase in % (y), one labelled point per coder.
pub fn fvu_vs_ce(path: &Path, points: &[(String, f64, f64)]) -> Result<()> {
    let (xmax, ymax) = points
        .iter()
        .fold((0.1f64, 0.1f64), |(a, b), p| (a.max(p.1), b.max(p.2)));
    let ymin = points.iter().map(|p| p.2).fold(0.0f64, f64::min);
    figure(path, (900, 560), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                "FVU vs CE-loss increase with the coder patched in",
                ("sans-serif", 22),
            )
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..xmax * 1.15, ymin * 1.15..ymax * 1.15)?;
        chart
            .configure_mesh()
            .x_desc("FVU (held out)")
            .y_desc("CE increase (%)")
            .label_style(("sans-serif", 14))
            .draw()?;
        for (i, (name, x, y)) in points.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            // The label sits beside its point (pixel offsets), alternating above and below for crowded points.
            let dy = if i % 2 == 0 { -18 } else { 6 };
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at((*x, *y))
                        + Circle::new((0, 0), 6, color.filled())
                        + Text::new(name.clone(), (9, dy), ("sans-serif", 14).into_font()),
                ))?
                .label(name.as_str())
                .legend(move |(x, y)| Circle::new((x + 8, y), 5, color.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()?;
        Ok(())
    })
}
