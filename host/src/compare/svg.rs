//! `--svg`: median barrier time against P count, one chart per workload, one line per
//! strategy, each floor a dashed line. The time axis is logarithmic: barrier times span
//! from tens of nanoseconds to milliseconds, and a linear axis would flatten every
//! difference below the slowest line.

use std::path::Path;

use plotters::prelude::*;
use plotters::series::DashedLineSeries;

use super::{Comparison, Outcome};

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

/// Draws the comparison into an SVG file at `path`.
pub fn write_svg(comparison: &Comparison, path: &Path) -> Result<(), String> {
    let mut workloads: Vec<&str> = Vec::new();
    let mut strategies: Vec<&str> = Vec::new();
    let mut procs: Vec<usize> = Vec::new();
    for row in &comparison.rows {
        if !workloads.contains(&row.workload.as_str()) {
            workloads.push(&row.workload);
        }
        if !strategies.contains(&row.strategy.as_str()) {
            strategies.push(&row.strategy);
        }
        if !procs.contains(&row.procs) {
            procs.push(row.procs);
        }
    }
    procs.sort_unstable();
    let medians: Vec<u64> = comparison
        .rows
        .iter()
        .filter_map(|r| match r.outcome {
            Outcome::Measured(ref m) => Some(m.time.p50_ns),
            _ => None,
        })
        .chain(comparison.floors.iter().map(|f| f.time.p50_ns))
        .collect();
    let (lo, hi) = (
        medians.iter().copied().min().unwrap_or(1).max(1) as f64 / 2.0,
        medians.iter().copied().max().unwrap_or(1000) as f64 * 2.0,
    );
    let x_range = 0.0..(procs.len().max(1) as f64 - 1.0).max(1.0);
    let height = 360 * workloads.len().max(1) as u32;
    let root = SVGBackend::new(path, (960, height)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("cannot draw {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let areas = root.split_evenly((workloads.len().max(1), 1));
    for (area, workload) in areas.iter().zip(&workloads) {
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!("barrier time (p50) by P count, workload {workload}"),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(x_range.clone(), (lo..hi).log_scale())
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_labels(procs.len())
            .x_label_formatter(&|x| {
                procs
                    .get(x.round() as usize)
                    .map_or(String::new(), |p| format!("{p} Ps"))
            })
            .y_desc("ns (log scale)")
            .y_label_formatter(&|y| super::human_ns(*y as u64))
            .draw()
            .map_err(|e| err(&e))?;
        for (i, floor) in comparison.floors.iter().enumerate() {
            let color = PALETTE[(PALETTE.len() - 1 - i) % PALETTE.len()];
            let y = floor.time.p50_ns.max(1) as f64;
            chart
                .draw_series(DashedLineSeries::new(
                    [(x_range.start, y), (x_range.end, y)],
                    6,
                    4,
                    color.stroke_width(1),
                ))
                .map_err(|e| err(&e))?
                .label(format!("floor: {}", floor.floor))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color));
        }
        for (i, strategy) in strategies.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let points: Vec<(f64, f64)> = comparison
                .rows
                .iter()
                .filter(|r| r.workload == *workload && r.strategy == *strategy)
                .filter_map(|r| match r.outcome {
                    Outcome::Measured(ref m) => {
                        let x = procs.iter().position(|p| *p == r.procs)? as f64;
                        Some((x, m.time.p50_ns.max(1) as f64))
                    }
                    _ => None,
                })
                .collect();
            if points.is_empty() {
                continue;
            }
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(strategy.to_string())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart
                .draw_series(
                    points
                        .into_iter()
                        .map(|p| Circle::new(p, 3, color.filled())),
                )
                .map_err(|e| err(&e))?;
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
