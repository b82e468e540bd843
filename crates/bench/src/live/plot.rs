//! The comparison plots, each drawn once per backend (PNG and SVG) from the same function:
//! the TTFT CDF of every run, and latency against load (one line per series, so a rate sweep
//! draws its latency-throughput curve).
//!
//! PNG text needs a rasterised font; DejaVu Sans is embedded (the `dejavu` crate) and
//! registered once, so a plot looks the same on any machine, with or without system fonts.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

/// A run's TTFT values, sorted, for the CDF.
pub(crate) struct CdfLine<'a> {
    /// Legend text.
    pub(crate) label: &'a str,
    /// Successful requests' TTFT, ascending.
    pub(crate) sorted_ms: &'a [f64],
}

/// One run's point on a latency-against-load panel.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LoadPoint {
    /// Completed requests/s.
    pub(crate) rps: f64,
    /// Median latency, ms.
    pub(crate) p50: f64,
    /// 99th percentile latency, ms.
    pub(crate) p99: f64,
}

/// One series of runs (a sweep, or one run) for latency against load.
pub(crate) struct LoadLine<'a> {
    /// Legend text.
    pub(crate) label: &'a str,
    /// TTFT per run, in load order.
    pub(crate) ttft: Vec<LoadPoint>,
    /// End-to-end latency per run, in load order.
    pub(crate) e2e: Vec<LoadPoint>,
}

const COLORS: [RGBColor; 10] = [
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

fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// Why a plot could not be drawn; plotters' errors are generic over the backend, so they are
/// kept as text here, named by the file.
#[derive(Debug, thiserror::Error)]
#[error("drawing {path}: {message}")]
pub struct PlotError {
    /// The file.
    pub path: String,
    /// What the backend said.
    pub message: String,
}

/// Registers the embedded DejaVu Sans as `sans-serif`, once per process (every PNG Brix
/// draws, live or virtual, calls this first).
pub(crate) fn register() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        // The embedded font always parses; if it did not, PNG text would be missing, not wrong.
        let _ = register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
}

/// A figure that can draw itself on any backend.
trait Figure {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>;
}

/// Draws `figure` into `stem.png` (1000×600) and `stem.svg`.
fn both(stem: &Path, figure: &impl Figure) -> Result<(), PlotError> {
    register();
    let size = (1000, 600);
    let fail = |path: &Path, message: String| PlotError {
        path: path.display().to_string(),
        message,
    };
    let png = stem.with_extension("png");
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        figure.draw(&root).map_err(|m| fail(&png, m))?;
        root.present().map_err(|e| fail(&png, e.to_string()))?;
    }
    let svg = stem.with_extension("svg");
    let root = SVGBackend::new(&svg, size).into_drawing_area();
    figure.draw(&root).map_err(|m| fail(&svg, m))?;
    root.present().map_err(|e| fail(&svg, e.to_string()))
}

/// `ttft_cdf.png` and `.svg` under `dir`: for each run, the fraction of requests whose TTFT is
/// at most x, on a log time axis (strategies differ by orders of magnitude under load).
pub(crate) fn ttft_cdf(dir: &Path, lines: &[CdfLine<'_>]) -> Result<(), PlotError> {
    let all = lines.iter().flat_map(|l| l.sorted_ms.iter().copied());
    let (lo, hi) = all.fold((f64::INFINITY, 0.0_f64), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let (lo, hi) = if lo.is_finite() && hi > 0.0 {
        ((lo * 0.8).max(0.01), hi * 1.25)
    } else {
        (1.0, 10.0)
    };
    both(&dir.join("ttft_cdf"), &Cdf { lines, lo, hi })
}

struct Cdf<'a> {
    lines: &'a [CdfLine<'a>],
    lo: f64,
    hi: f64,
}

impl Figure for Cdf<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let (lines, lo, hi) = (self.lines, self.lo, self.hi);
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(root)
            .caption("Time to first token, CDF", ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d((lo..hi).log_scale(), 0.0..1.0)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_labels(8)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .light_line_style(RGBColor(238, 238, 238))
            .x_desc("time to first token (ms, log scale)")
            .y_desc("fraction of requests")
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, line) in lines.iter().enumerate() {
            let n = line.sorted_ms.len() as f64;
            let points = line
                .sorted_ms
                .iter()
                .enumerate()
                .map(|(k, v)| (*v, (k + 1) as f64 / n));
            let c = color(i);
            chart
                .draw_series(LineSeries::new(points, c.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(line.label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 15))
            .draw()
            .map_err(|e| e.to_string())
    }
}

/// `latency_vs_load.png` and `.svg` under `dir`: TTFT (left) and end-to-end latency (right),
/// p50 solid with filled points and p99 dashed with hollow ones, against completed
/// requests/s.
pub(crate) fn latency_vs_load(dir: &Path, lines: &[LoadLine<'_>]) -> Result<(), PlotError> {
    both(&dir.join("latency_vs_load"), &Load { lines })
}

struct Load<'a> {
    lines: &'a [LoadLine<'a>],
}

impl Figure for Load<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let lines = self.lines;
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let root = root
            .titled(
                "Latency against load (solid, filled: p50; dashed, hollow: p99)",
                ("sans-serif", 22),
            )
            .map_err(|e| e.to_string())?;
        let panels = root.split_evenly((1, 2));
        let ttft: Vec<_> = lines.iter().map(|l| (l.label, &l.ttft[..])).collect();
        let e2e: Vec<_> = lines.iter().map(|l| (l.label, &l.e2e[..])).collect();
        panel_chart(&panels[0], "time to first token (ms)", &ttft)?;
        panel_chart(&panels[1], "end-to-end latency (ms)", &e2e)
    }
}

fn panel_chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    desc: &str,
    lines: &[(&str, &[LoadPoint])],
) -> Result<(), String> {
    let pts = lines.iter().flat_map(|(_, p)| p.iter().copied());
    let (xmax, ymax) = pts.fold((0.0_f64, 0.0_f64), |(x, y), p| (x.max(p.rps), y.max(p.p99)));
    let xmax = if xmax > 0.0 { xmax * 1.15 } else { 1.0 };
    let ymax = if ymax > 0.0 { ymax * 1.1 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..xmax, 0.0..ymax)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .light_line_style(RGBColor(238, 238, 238))
        .x_desc("completed requests/s")
        .y_desc(desc)
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, (label, points)) in lines.iter().enumerate() {
        let c = color(i);
        let p50 = points.iter().map(|p| (p.rps, p.p50));
        let p99 = points.iter().map(|p| (p.rps, p.p99));
        chart
            .draw_series(LineSeries::new(p50, c.stroke_width(2)).point_size(4))
            .map_err(|e| e.to_string())?
            .label(*label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(DashedLineSeries::new(p99.clone(), 6, 4, c.stroke_width(1)))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(p99.map(|p| Circle::new(p, 4, c.stroke_width(1))))
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(|e| e.to_string())
}
