//! Charts for people: line charts (a metric over training steps, one line per segment)
//! and grouped bar charts with intervals (a metric per cell, one bar per model), each
//! written as SVG and PNG. Inputs are plain numbers; the comparison decides what to plot.
//!
//! Text layout needs a TrueType font: the file named by `MFH_FONT`, else the first of a
//! few usual system fonts (Debian: `fonts-dejavu-core`). Without one no chart is drawn
//! and [`fonts_available`] says why; the numbers are all in the tables anyway.

pub mod tensorboard;

use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// One line of a line chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// One bar: a value and an optional interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    pub value: f64,
    pub interval: Option<(f64, f64)>,
}

const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Whether charts can be drawn (a font was found).
pub fn fonts_available() -> bool {
    font_ready()
}

/// Registers a system font once; false when none is found.
fn font_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        let env = std::env::var("MFH_FONT").ok();
        let candidates = env
            .iter()
            .map(String::as_str)
            .chain(FONT_PATHS.iter().copied());
        for p in candidates {
            if let Ok(bytes) = std::fs::read(p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.08).max(1e-3);
    (lo - pad, hi + pad)
}

fn draw_lines<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    curves: &[Curve],
) -> Result<(), String> {
    root.fill(&WHITE).map_err(err)?;
    let (x0, x1) = bounds(curves.iter().flat_map(|c| c.points.iter().map(|p| p.0)));
    let (y0, y1) = bounds(curves.iter().flat_map(|c| c.points.iter().map(|p| p.1)));
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(err)?;
    for (i, c) in curves.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(
                c.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(c.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart
            .draw_series(c.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

#[allow(clippy::too_many_arguments)]
fn draw_bars<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    y_desc: &str,
    groups: &[String],
    series: &[String],
    bars: &[Vec<Option<Bar>>],
) -> Result<(), String> {
    root.fill(&WHITE).map_err(err)?;
    let all = bars.iter().flatten().flatten().flat_map(|b| {
        let (lo, hi) = b.interval.unwrap_or((b.value, b.value));
        [b.value, lo, hi]
    });
    let (y0, y1) = bounds(all);
    let n = groups.len().max(1);
    let groups_owned = groups.to_vec();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(60)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), y0..y1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                groups_owned.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(y_desc)
        .draw()
        .map_err(err)?;
    let k = series.len().max(1) as f64;
    let width = 0.8 / k;
    for (j, name) in series.iter().enumerate() {
        let color = PALETTE[j % PALETTE.len()];
        let mut first = true;
        for (g, row) in bars.iter().enumerate() {
            let Some(Some(b)) = row.get(j) else { continue };
            let left = g as f64 - 0.4 + j as f64 * width;
            let rect = Rectangle::new([(left, y0), (left + width * 0.9, b.value)], color.filled());
            let ann = chart.draw_series(std::iter::once(rect)).map_err(err)?;
            if first {
                ann.label(name.clone()).legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
                first = false;
            }
            if let Some((lo, hi)) = b.interval {
                let mid = left + width * 0.45;
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(mid, lo), (mid, hi)],
                        BLACK.stroke_width(1),
                    )))
                    .map_err(err)?;
            }
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// A line chart: one line per curve.
pub fn line_chart(
    stem: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    curves: &[Curve],
) -> Result<Vec<PathBuf>, String> {
    if !font_ready() {
        return Ok(Vec::new());
    }
    let size = (960, 560);
    let (svg, png) = (stem.with_extension("svg"), stem.with_extension("png"));
    draw_lines(
        SVGBackend::new(&svg, size).into_drawing_area(),
        title,
        x_desc,
        y_desc,
        curves,
    )?;
    draw_lines(
        BitMapBackend::new(&png, size).into_drawing_area(),
        title,
        x_desc,
        y_desc,
        curves,
    )?;
    Ok(vec![svg, png])
}

/// A grouped bar chart: `bars[group][series]`, with optional intervals as whiskers.
pub fn bar_chart(
    stem: &Path,
    title: &str,
    y_desc: &str,
    groups: &[String],
    series: &[String],
    bars: &[Vec<Option<Bar>>],
) -> Result<Vec<PathBuf>, String> {
    if !font_ready() {
        return Ok(Vec::new());
    }
    let size = (1100, 560);
    let (svg, png) = (stem.with_extension("svg"), stem.with_extension("png"));
    draw_bars(
        SVGBackend::new(&svg, size).into_drawing_area(),
        title,
        y_desc,
        groups,
        series,
        bars,
    )?;
    draw_bars(
        BitMapBackend::new(&png, size).into_drawing_area(),
        title,
        y_desc,
        groups,
        series,
        bars,
    )?;
    Ok(vec![svg, png])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_written_as_svg_and_png() {
        // CI installs a font; a machine without one must say so rather than pass quietly.
        assert!(
            fonts_available(),
            "no TrueType font found: install fonts-dejavu-core or set MFH_FONT"
        );
        let dir = tempfile::tempdir().unwrap();
        let curves = vec![
            Curve {
                label: "all".into(),
                points: vec![(100.0, 0.70), (200.0, 0.72), (300.0, 0.71)],
            },
            Curve {
                label: "user=new".into(),
                points: vec![(100.0, 0.66), (200.0, 0.69), (300.0, 0.70)],
            },
        ];
        let files = line_chart(
            &dir.path().join("curves"),
            "valid AUC",
            "step",
            "AUC",
            &curves,
        )
        .unwrap();
        let svg = std::fs::read_to_string(&files[0]).unwrap();
        assert!(svg.contains("<svg") && svg.contains("user=new"));
        let groups = vec!["a".to_string(), "b".to_string()];
        let series = vec!["mmoe".to_string(), "mfh".to_string()];
        let bars = vec![
            vec![
                Some(Bar {
                    value: 0.7,
                    interval: Some((0.68, 0.72)),
                }),
                Some(Bar {
                    value: 0.71,
                    interval: None,
                }),
            ],
            vec![
                None,
                Some(Bar {
                    value: 0.65,
                    interval: Some((0.6, 0.7)),
                }),
            ],
        ];
        let files = bar_chart(
            &dir.path().join("bars"),
            "AUC per cell",
            "AUC",
            &groups,
            &series,
            &bars,
        )
        .unwrap();
        assert!(std::fs::read_to_string(&files[0]).unwrap().contains("mfh"));
        assert_eq!(files.len(), 2);
        let png = std::fs::read(&files[1]).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }
}
