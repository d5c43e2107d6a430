//! `--trace-svg FILE`: the slowest barriers of a trace, one panel each, one row per P (and
//! one for the requester), time from the barrier's begin on the x axis. For each P: a grey
//! line from the barrier's begin to its safe point, a bar for `f` coloured by how it was
//! reached, a dot where the strategy armed it, a red cross for each signal.

use std::path::Path;

use plotters::prelude::*;

use super::{ReachedBy, RequestKind, Timeline, Trace, timelines};

/// Panels drawn: the slowest barriers.
const SLOWEST: usize = 6;

fn color(how: ReachedBy) -> RGBColor {
    match how {
        ReachedBy::Poll => RGBColor(31, 119, 180),
        ReachedBy::Transition => RGBColor(44, 160, 44),
        ReachedBy::Requester => RGBColor(255, 127, 14),
        ReachedBy::SignalHandler => RGBColor(148, 103, 189),
        ReachedBy::Own => RGBColor(127, 127, 127),
    }
}

/// Draws the slowest barriers of `trace` into an SVG file at `path`.
pub fn write_svg(trace: &Trace, path: &Path) -> Result<(), String> {
    let mut slowest: Vec<Timeline> = timelines(trace)
        .into_iter()
        .filter(|t| t.kind == RequestKind::Barrier && t.end_ns.is_some())
        .collect();
    slowest.sort_by_key(|t| std::cmp::Reverse(t.duration()));
    slowest.truncate(SLOWEST);
    let procs = trace.ps.len();
    let panel_height = (60 + 22 * (procs as u32 + 1)).max(160);
    let height = panel_height * slowest.len().max(1) as u32;
    let root = SVGBackend::new(path, (960, height)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("cannot draw {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    if slowest.is_empty() {
        root.draw(&Text::new(
            "no completed barrier in the trace",
            (20, 40),
            ("sans-serif", 18),
        ))
        .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
        return Ok(());
    }
    let areas = root.split_evenly((slowest.len(), 1));
    for (area, timeline) in areas.iter().zip(&slowest) {
        let us = |ns: u64| ns.saturating_sub(timeline.begin_ns) as f64 / 1000.0;
        let end = us(timeline.end_ns.unwrap_or(timeline.begin_ns));
        let x_range = 0.0..(end * 1.05).max(0.001);
        // Row 0 is the requester, row i + 1 is P i; drawn top down.
        let rows = procs as f64 + 1.0;
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!(
                    "barrier {} [{}], strategy {}: {:.1} µs",
                    timeline.request, timeline.reason, timeline.strategy, end
                ),
                ("sans-serif", 16),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(80)
            .build_cartesian_2d(x_range, -0.5..rows - 0.5)
            .map_err(|e| err(&e))?;
        let row_y = |row: usize| rows - 1.0 - row as f64;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(procs + 1)
            .y_label_formatter(&|y| {
                let row = (rows - 1.0 - y).round();
                if (y - y.round()).abs() > 0.01 || row < 0.0 {
                    String::new()
                } else if row == 0.0 {
                    "requester".to_owned()
                } else {
                    format!("P{}", row as usize - 1)
                }
            })
            .x_desc("µs since the barrier began")
            .draw()
            .map_err(|e| err(&e))?;
        let y0 = row_y(0);
        chart
            .draw_series([Rectangle::new(
                [(0.0, y0 - 0.3), (end, y0 + 0.3)],
                BLACK.mix(0.5).filled(),
            )])
            .map_err(|e| err(&e))?;
        for p in &timeline.ps {
            let y = row_y(p.p.index() + 1);
            if let Some((reached, how)) = p.reached {
                let at = us(reached);
                chart
                    .draw_series(LineSeries::new(
                        [(0.0, y), (at, y)],
                        BLACK.mix(0.3).stroke_width(1),
                    ))
                    .map_err(|e| err(&e))?;
                let f_end = p.fn_end_ns.map_or(at, us).max(at + end * 0.004);
                chart
                    .draw_series([Rectangle::new(
                        [(at, y - 0.3), (f_end, y + 0.3)],
                        color(how).filled(),
                    )])
                    .map_err(|e| err(&e))?;
            }
            if let Some(armed) = p.armed_ns {
                chart
                    .draw_series([Circle::new((us(armed), y), 3, BLACK.filled())])
                    .map_err(|e| err(&e))?;
            }
            chart
                .draw_series(
                    p.signals
                        .iter()
                        .map(|&(at, _)| Cross::new((us(at), y), 5, RED.stroke_width(2))),
                )
                .map_err(|e| err(&e))?;
        }
        for how in [
            ReachedBy::Poll,
            ReachedBy::Transition,
            ReachedBy::Requester,
            ReachedBy::SignalHandler,
            ReachedBy::Own,
        ] {
            let c = color(how);
            chart
                .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())
                .map_err(|e| err(&e))?
                .label(format!("f, reached by {how}"))
                .legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 12, y + 4)], c.filled()));
        }
        chart
            .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
            .map_err(|e| err(&e))?
            .label("armed")
            .legend(|(x, y)| Circle::new((x + 6, y), 3, BLACK.filled()));
        chart
            .draw_series(std::iter::empty::<Cross<(f64, f64), i32>>())
            .map_err(|e| err(&e))?
            .label("signal")
            .legend(|(x, y)| Cross::new((x + 6, y), 4, RED.stroke_width(2)));
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.85))
            .position(SeriesLabelPosition::LowerRight)
            .label_font(("sans-serif", 11))
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
