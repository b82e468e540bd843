//! `timeline.png`: an autoscaled run over time in three stacked panels: demand (arrivals/s),
//! replicas (desired, ready, billed) and mean TTFT of the requests sent each second.

use std::path::Path;

use plotters::prelude::*;

use super::SimRun;
use super::fleet_report::rows;
use crate::live::plot::register;

const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const GREEN: RGBColor = RGBColor(44, 160, 44);
const RED: RGBColor = RGBColor(214, 39, 40);

/// One line of a panel: legend, colour, points.
type Line<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

/// Draws `run`'s timeline into `path` (PNG, 1000×900) under `title`; the error is the
/// backend's message.
pub fn timeline_png(path: &Path, run: &SimRun, title: &str) -> Result<(), String> {
    register();
    let rows = rows(run);
    let end = rows.last().map_or(1.0, |r| r.sample.t).max(1.0);
    let root = BitMapBackend::new(path, (1000, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root
        .titled(title, ("sans-serif", 22))
        .map_err(|e| e.to_string())?;
    let panels = root.split_evenly((3, 1));
    let demand: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (r.sample.t, r.arrivals_per_s))
        .collect();
    panel(
        &panels[0],
        "arrivals / s",
        end,
        &[("arrivals/s", BLUE, demand)],
    )?;
    let line = |f: &dyn Fn(&super::TimelineSample) -> u32| -> Vec<(f64, f64)> {
        rows.iter()
            .map(|r| (r.sample.t, f64::from(f(&r.sample))))
            .collect()
    };
    panel(
        &panels[1],
        "replicas",
        end,
        &[
            ("billed", RED, line(&|s| s.ready + s.starting + s.draining)),
            ("ready", GREEN, line(&|s| s.ready)),
            ("desired", ORANGE, line(&|s| s.desired)),
        ],
    )?;
    let ttft: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.ttft_ms.map(|v| (r.sample.t, v)))
        .collect();
    panel(&panels[2], "mean TTFT (ms)", end, &[("TTFT", BLUE, ttft)])?;
    root.present().map_err(|e| e.to_string())
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    y_desc: &str,
    end: f64,
    lines: &[Line<'_>],
) -> Result<(), String> {
    let top = lines
        .iter()
        .flat_map(|l| l.2.iter().map(|p| p.1))
        .fold(0.0_f64, f64::max);
    let top = if top > 0.0 { top * 1.1 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..end, 0.0..top)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .light_line_style(RGBColor(238, 238, 238))
        .x_desc("virtual time (s)")
        .y_desc(y_desc)
        .y_label_formatter(&|v| {
            if top > 20.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.1}")
            }
        })
        .draw()
        .map_err(|e| e.to_string())?;
    // Earlier lines drawn wider, so equal values stay visible under later ones.
    for (i, (label, c, points)) in lines.iter().enumerate() {
        let c = c.stroke_width(2 * (lines.len() - i) as u32);
        chart
            .draw_series(LineSeries::new(points.iter().copied(), c))
            .map_err(|e| e.to_string())?
            .label(*label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| e.to_string())
}
