//! SVG plots (plotters' SVG backend: text is left to the viewer's fonts, so
//! no font files are needed here). One panel per workload, one line per
//! allocator, thread counts on the x axis; where a point has several runs,
//! a vertical bar spans their interquartile range.

use std::path::Path;

use magbuddy_bench::Workload;
use plotters::prelude::*;

use crate::spread::Spread;
use crate::Point;

/// Median throughput (Mops/s) against threads, with IQR error bars.
pub fn scaling(path: &Path, points: &[Point], threads: &[usize]) {
    grid(path, points, threads, "Mops/s", false, |p| p.mops);
}

/// Median p99.9 latency per call (ns, log scale) against threads, with IQR
/// error bars over the latency runs.
pub fn latency(path: &Path, points: &[Point], threads: &[usize]) {
    grid(path, points, threads, "p99.9 ns per call", true, |p| {
        p.tail.p999
    });
}

fn grid(
    path: &Path,
    points: &[Point],
    threads: &[usize],
    y_label: &str,
    log: bool,
    y: impl Fn(&Point) -> Spread,
) {
    let wls: Vec<Workload> = Workload::ALL
        .into_iter()
        .filter(|w| points.iter().any(|p| p.wl == *w))
        .collect();
    let mut allocs: Vec<&str> = Vec::new();
    for p in points {
        if !allocs.contains(&p.alloc.as_str()) {
            allocs.push(&p.alloc);
        }
    }
    let cols = 2;
    let rows = wls.len().div_ceil(cols).max(1);
    let root = SVGBackend::new(path, (1200, 380 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).expect("svg fill");
    for (panel, wl) in root.split_evenly((rows, cols)).iter().zip(&wls) {
        let pts: Vec<&Point> = points.iter().filter(|p| p.wl == *wl).collect();
        let top = pts.iter().map(|p| y(p).q3).fold(1e-9, f64::max) * 1.1;
        let bottom = pts
            .iter()
            .map(|p| y(p).q1)
            .fold(f64::MAX, f64::min)
            .max(1.0)
            * 0.8;
        let x_range = 0f64..(threads.len().max(2) - 1) as f64;
        let mut chart = ChartBuilder::on(panel);
        chart
            .caption(wl.name(), ("sans-serif", 18))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(60);
        // The x axis is the index into `threads`, labelled with the count, so
        // 1, 2, 4, 8 are evenly spaced (a log2 axis).
        let label = |x: &f64| {
            threads
                .get(x.round() as usize)
                .filter(|_| (x - x.round()).abs() < 1e-6)
                .map_or(String::new(), |t| format!("{t} thr"))
        };
        let series = |alloc: &str| -> Vec<(f64, Spread)> {
            threads
                .iter()
                .enumerate()
                .filter_map(|(i, &t)| {
                    pts.iter()
                        .find(|p| p.threads == t && p.alloc == alloc)
                        .map(|p| (i as f64, y(p)))
                })
                .collect()
        };
        macro_rules! draw {
            ($chart:expr) => {{
                let mut chart = $chart.expect("chart");
                chart
                    .configure_mesh()
                    .x_labels(threads.len())
                    .x_label_formatter(&label)
                    .y_desc(y_label)
                    .draw()
                    .expect("mesh");
                for (i, alloc) in allocs.iter().enumerate() {
                    let data = series(alloc);
                    if data.is_empty() {
                        continue;
                    }
                    let color = Palette99::pick(i).to_rgba();
                    chart
                        .draw_series(data.iter().filter(|(_, s)| s.q1 < s.q3).map(|&(x, s)| {
                            ErrorBar::new_vertical(x, s.q1, s.median, s.q3, color, 6)
                        }))
                        .expect("error bars");
                    let line = data.iter().map(|&(x, s)| (x, s.median));
                    chart
                        .draw_series(LineSeries::new(line, color.stroke_width(2)))
                        .expect("series")
                        .label(*alloc)
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                        });
                }
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .label_font(("sans-serif", 11))
                    .draw()
                    .expect("legend");
            }};
        }
        if log {
            draw!(chart.build_cartesian_2d(x_range, (bottom..top).log_scale()));
        } else {
            draw!(chart.build_cartesian_2d(x_range, 0f64..top));
        }
    }
    root.present().expect("write svg");
}
