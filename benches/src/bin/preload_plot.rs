//! Plots `preload/eval.sh`'s CSV as grouped bars of ratios to glibc (log
//! scale, bars start at 1.0 so "slower/bigger than glibc" points up and
//! "faster/smaller" down).
//!
//! ```text
//! cargo run -q --release -p magbuddy-bench --bin preload_plot -- target/preload/eval.csv target/preload/eval.svg
//! ```
//!
//! `eval.csv` (one row per program × allocator) gives two panels, time and
//! peak RSS; `workloads.csv` (one row per workload × threads × allocator) one
//! panel, ns per pair. glibc's own rows (ratio 1) are left out. The series
//! (bars per group, their colours and the legend) are the CSV's allocator
//! names in the order they first appear, so any allocators the script adds
//! show up without changes here; the figure widens with the number of bars.

use std::path::{Path, PathBuf};

use clap::Parser;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Command-line arguments.
#[derive(Parser, Debug)]
#[command(about = "Bars of preload/eval.sh's ratios to glibc, as SVG")]
struct Args {
    /// `eval.csv` (programs: time and peak RSS panels) or `workloads.csv`
    /// (workloads: ns per pair), told apart by the first column's name.
    input: PathBuf,
    /// The SVG file to write.
    output: PathBuf,
}

/// A CSV file: header names and rows of fields.
struct Csv {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Csv {
    /// Reads `path` (quoted fields may hold commas, as program names do).
    fn read(path: &Path) -> Result<Self, csv::Error> {
        let mut reader = csv::Reader::from_path(path)?;
        let head = reader.headers()?.iter().map(str::to_string).collect();
        let rows = reader
            .records()
            .map(|r| r.map(|r| r.iter().map(str::to_string).collect()))
            .collect::<Result<_, _>>()?;
        Ok(Self { head, rows })
    }

    /// Column `name` of `row`.
    fn get<'a>(&self, row: &'a [String], name: &str) -> &'a str {
        let i = self
            .head
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name}"));
        &row[i]
    }
}

/// Bars to draw: group labels (two lines each), series names, and
/// `value[group][series]`.
struct Bars {
    groups: Vec<(String, String)>,
    series: Vec<String>,
    value: Vec<Vec<Option<f64>>>,
}

/// Collects column `ratio` per (group, allocator), groups and series in file
/// order, skipping glibc (the baseline).
fn bars(csv: &Csv, group: impl Fn(&[String]) -> (String, String), ratio: &str) -> Bars {
    let mut b = Bars {
        groups: Vec::new(),
        series: Vec::new(),
        value: Vec::new(),
    };
    let mut cells = Vec::new();
    for row in &csv.rows {
        let alloc = csv.get(row, "allocator");
        if alloc == "glibc" {
            continue;
        }
        let g = group(row);
        let gi = b.groups.iter().position(|x| *x == g).unwrap_or_else(|| {
            b.groups.push(g);
            b.groups.len() - 1
        });
        let si = b.series.iter().position(|x| x == alloc).unwrap_or_else(|| {
            b.series.push(alloc.to_string());
            b.series.len() - 1
        });
        cells.push((gi, si, csv.get(row, ratio).parse::<f64>().ok()));
    }
    b.value = vec![vec![None; b.series.len()]; b.groups.len()];
    for (g, s, v) in cells {
        b.value[g][s] = v.filter(|v| *v > 0.0);
    }
    b
}

/// The SVG's width for `b`: 1200 px, or more when the bars (groups x series)
/// would get narrower than about 26 px, the width of a value label.
fn width(b: &Bars) -> u32 {
    let bars = u32::try_from(b.groups.len() * b.series.len()).unwrap_or(u32::MAX);
    1200u32.max(bars.saturating_mul(26).saturating_add(160))
}

/// One panel: grouped bars from 1.0 to each ratio on a log axis, a line at
/// 1.0, the value over (or under) each bar, and the group names below.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    b: &Bars,
) {
    let vals = || b.value.iter().flatten().flatten().copied();
    let lo = vals().fold(1.0, f64::min) / 1.15;
    let top = vals().fold(1.0, f64::max) * 1.15;
    // The top quarter of the (log) axis is kept free for the legend.
    let hi = top * (top / lo).powf(0.35);
    // plotters' log axis labels only powers of ten and what lies above
    // them, so nothing between 0.1 and 1: fixed ticks instead.
    let ticks: Vec<f64> = [
        0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 7.0, 10.0, 20.0, 50.0,
    ]
    .into_iter()
    .filter(|t| (lo..=hi).contains(t))
    .collect();
    let n = b.groups.len().max(1) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(8)
        .margin_right(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..n, (lo..hi).log_scale().with_key_points(ticks))
        .expect("chart");
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .x_label_formatter(&|_| String::new())
        .y_desc("ratio to glibc (log)")
        .y_label_formatter(&|y| format!("{y}"))
        .draw()
        .expect("mesh");
    let k = b.series.len().max(1) as f64;
    let width = 0.8 / k;
    for (si, name) in b.series.iter().enumerate() {
        let color = Palette99::pick(si).to_rgba();
        let rects: Vec<_> = b
            .value
            .iter()
            .enumerate()
            .filter_map(|(gi, v)| v[si].map(|r| (gi as f64 + 0.1 + si as f64 * width, r)))
            .collect();
        chart
            .draw_series(
                rects
                    .iter()
                    .map(|&(x, r)| Rectangle::new([(x, 1.0), (x + width, r)], color.filled())),
            )
            .expect("bars")
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        chart
            .draw_series(rects.iter().map(|&(x, r)| {
                let v = if r >= 1.0 { VPos::Bottom } else { VPos::Top };
                Text::new(
                    format!("{r:.2}"),
                    (x + width / 2.0, r),
                    TextStyle::from(("sans-serif", 10).into_font()).pos(Pos::new(HPos::Center, v)),
                )
            }))
            .expect("values");
    }
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(0.0, 1.0), (n, 1.0)],
            BLACK.stroke_width(1),
        )))
        .expect("1.0 line");
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 11))
        .draw()
        .expect("legend");
    // Group names centred under each group, in the x label area (the mesh's
    // own labels sit at round numbers, not at group centres).
    let base = area.get_base_pixel();
    let style =
        TextStyle::from(("sans-serif", 12).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    for (gi, (l1, l2)) in b.groups.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(gi as f64 + 0.5, lo));
        let (x, y) = (x - base.0, y - base.1 + 6);
        area.draw(&Text::new(l1.as_str(), (x, y), style.clone()))
            .expect("label");
        area.draw(&Text::new(l2.as_str(), (x, y + 15), style.clone()))
            .expect("label");
    }
}

fn main() {
    let args = Args::parse();
    let csv = Csv::read(&args.input).unwrap_or_else(|e| {
        eprintln!("preload_plot: {}: {e}", args.input.display());
        std::process::exit(1);
    });
    let output = &args.output;
    if csv.head.first().map(String::as_str) == Some("program") {
        // "python3 (json, dicts)" -> "python3" over "(json, dicts)".
        let group = |row: &[String]| {
            let p = csv.get(row, "program");
            let (a, b) = p.split_once(" (").map_or((p, ""), |(a, b)| (a, b));
            let b = if b.is_empty() {
                String::new()
            } else {
                format!("({b}")
            };
            (a.to_string(), b)
        };
        let (time, rss) = (
            bars(&csv, group, "time_ratio"),
            bars(&csv, group, "rss_ratio"),
        );
        let root = SVGBackend::new(output, (width(&time), 900)).into_drawing_area();
        root.fill(&WHITE).expect("svg fill");
        let (top, bottom) = root.split_vertically(450);
        panel(&top, "wall time, ratio to glibc (lower is better)", &time);
        panel(&bottom, "peak RSS, ratio to glibc (lower is better)", &rss);
        root.present().expect("write svg");
    } else {
        let group = |row: &[String]| {
            (
                csv.get(row, "workload").to_string(),
                format!("{} thr", csv.get(row, "threads")),
            )
        };
        let ns = bars(&csv, group, "ratio");
        let root = SVGBackend::new(output, (width(&ns), 450)).into_drawing_area();
        root.fill(&WHITE).expect("svg fill");
        panel(
            &root,
            "ns per alloc+free pair, ratio to glibc (lower is better)",
            &ns,
        );
        root.present().expect("write svg");
    }
}
