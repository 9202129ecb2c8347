//! The SVG chart of a `cargo xtask bench` report: throughput and p99 latency per workload,
//! one bar per target (plotters' SVG backend, no fonts needed).

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

/// One bar colour per target, in the order the targets are given.
const COLOURS: [RGBColor; 4] = [
    RGBColor(0x41, 0x7e, 0xc4),
    RGBColor(0xe0, 0x6c, 0x2e),
    RGBColor(0x4c, 0xa8, 0x5a),
    RGBColor(0x8e, 0x5c, 0xb8),
];

/// Width of one group of bars on the chart's integer x axis.
const SLOT: i32 = 100;

/// Bars of one panel: per target, one value (or none) per group.
pub(crate) struct Panel<'a> {
    /// The panel's title, with its unit.
    pub(crate) title: &'a str,
    /// `(target, value per group)`.
    pub(crate) series: Vec<(String, Vec<Option<f64>>)>,
}

/// Writes an SVG with one panel of grouped bars per entry of `panels`, groups labelled by
/// `groups`.
pub(crate) fn write(path: &Path, groups: &[String], panels: &[Panel<'_>]) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    let width = (220 * groups.len() as u32).clamp(900, 2400);
    let height = 380 * panels.len().max(1) as u32;
    let root = SVGBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let areas = root.split_evenly((panels.len().max(1), 1));
    for (panel, area) in panels.iter().zip(areas.iter()) {
        draw_panel(area, groups, panel).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    groups: &[String],
    panel: &Panel<'_>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let max = panel
        .series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten())
        .fold(0.0f64, |a, &b| a.max(b));
    // Headroom above the tallest bar for the legend.
    let top = if max > 0.0 { max * 1.3 } else { 1.0 };
    // Each group is SLOT units wide on an integer axis, labelled at its centre.
    let n = groups.len().max(1) as i32;
    let centres: Vec<i32> = (0..n).map(|g| g * SLOT + SLOT / 2).collect();
    let x = (0..n * SLOT).with_key_points(centres);
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x, 0f64..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .x_label_formatter(&|v| {
            usize::try_from(v / SLOT)
                .ok()
                .and_then(|g| groups.get(g).cloned())
                .unwrap_or_default()
        })
        .y_label_formatter(&|v| short(*v))
        .draw()?;
    let bars = panel.series.len().max(1) as i32;
    let width = (SLOT * 8 / 10) / bars;
    for (t, (name, values)) in panel.series.iter().enumerate() {
        let colour = COLOURS[t % COLOURS.len()];
        let rects = values.iter().enumerate().filter_map(|(g, v)| {
            let v = (*v)?;
            let x0 = g as i32 * SLOT + SLOT / 10 + t as i32 * width;
            Some(Rectangle::new(
                [(x0, 0.0), (x0 + width - 1, v)],
                colour.filled(),
            ))
        });
        chart
            .draw_series(rects)?
            .label(name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// A short axis label: 1.2K, 3.4M, 0.52.
fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}K", v / 1e3)
    } else if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn writes_an_svg_with_every_label() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chart.svg");
        let groups = vec!["put 1c".to_owned(), "range l".to_owned()];
        let panels = [
            Panel {
                title: "throughput (ops/s)",
                series: vec![
                    ("etcd".into(), vec![Some(1000.0), Some(5000.0)]),
                    ("ferrocd-lmdb".into(), vec![Some(1500.0), None]),
                ],
            },
            Panel {
                title: "p99 latency (ms)",
                series: vec![("etcd".into(), vec![Some(1.5), Some(0.5)])],
            },
        ];
        write(&path, &groups, &panels).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
        for label in ["put 1c", "range l", "ferrocd-lmdb", "p99 latency (ms)"] {
            assert!(svg.contains(label), "{label} missing");
        }
    }

    #[test]
    fn axis_labels_are_short() {
        assert_eq!(short(1_500_000.0), "1.5M");
        assert_eq!(short(2_500.0), "2.5K");
        assert_eq!(short(42.0), "42");
        assert_eq!(short(0.5), "0.50");
    }
}
