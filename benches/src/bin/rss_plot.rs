//! Plots resident memory over time from `preload/eval.sh --rss`: one line
//! per allocator, RSS (MiB) against seconds since the program started, a
//! dot where each stage of `preload/bench/rss_phases.c` begins (numbered as
//! in the caption; allocators reach each stage at different times, so
//! every line carries its own dots).
//!
//! ```text
//! cargo run -q --release -p magbuddy-bench --bin rss_plot -- target/preload/rss.csv target/preload/rss.svg
//! ```
//!
//! Input columns: `allocator,ms,rss_mib,stage` (no quoted fields), rows of
//! one allocator in time order, allocators in the order they are drawn.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One allocator's samples: (seconds, MiB, stage).
struct Line {
    name: String,
    points: Vec<(f64, f64, String)>,
}

fn read(path: &str) -> Vec<Line> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let mut lines: Vec<Line> = Vec::new();
    for row in text.lines().skip(1).filter(|l| !l.is_empty()) {
        let f: Vec<&str> = row.split(',').collect();
        let [name, ms, mib, stage] = f.as_slice() else {
            panic!("{path}: expected 4 fields in {row:?}");
        };
        let point = (
            ms.parse::<f64>().expect("ms") / 1000.0,
            mib.parse::<f64>().expect("rss_mib"),
            stage.to_string(),
        );
        match lines.last_mut() {
            Some(l) if l.name == *name => l.points.push(point),
            _ => lines.push(Line {
                name: name.to_string(),
                points: vec![point],
            }),
        }
    }
    lines
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        eprintln!("usage: rss_plot <rss.csv> <out.svg>");
        std::process::exit(2);
    };
    let lines = read(input);
    // Stage names in the order they first appear: their numbers on the dots.
    let mut stages: Vec<&str> = Vec::new();
    for p in lines.iter().flat_map(|l| &l.points) {
        if !stages.contains(&p.2.as_str()) {
            stages.push(&p.2);
        }
    }
    let all = || lines.iter().flat_map(|l| &l.points);
    let t_max = all().map(|p| p.0).fold(1.0, f64::max);
    let y_max = all().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let caption: Vec<String> = stages
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{} {s}", i + 1))
        .collect();

    let root = SVGBackend::new(output, (1200, 560)).into_drawing_area();
    root.fill(&WHITE).expect("svg fill");
    let (top, body) = root.split_vertically(48);
    top.draw(&Text::new(
        "resident memory over time, no malloc_trim (lower is better)",
        (600, 6),
        TextStyle::from(("sans-serif", 18).into_font()).pos(Pos::new(HPos::Center, VPos::Top)),
    ))
    .expect("title");
    top.draw(&Text::new(
        format!("stages (dots): {}", caption.join(", ")),
        (600, 28),
        TextStyle::from(("sans-serif", 12).into_font()).pos(Pos::new(HPos::Center, VPos::Top)),
    ))
    .expect("stages");
    let mut chart = ChartBuilder::on(&body)
        .margin(8)
        .margin_right(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..t_max, 0f64..y_max)
        .expect("chart");
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc("RSS (MiB)")
        .draw()
        .expect("mesh");
    for (i, l) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                l.points.iter().map(|p| (p.0, p.1)),
                color.stroke_width(2),
            ))
            .expect("line")
            .label(&l.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
        // A dot and the stage's number where the line enters a stage.
        let starts = l
            .points
            .iter()
            .enumerate()
            .filter(|(j, p)| *j == 0 || l.points[j - 1].2 != p.2);
        chart
            .draw_series(starts.map(|(_, p)| {
                let n = stages.iter().position(|s| *s == p.2).unwrap_or(0) + 1;
                EmptyElement::at((p.0, p.1))
                    + Circle::new((0, 0), 3, color.filled())
                    + Text::new(format!("{n}"), (3, -14), ("sans-serif", 10).into_font())
            }))
            .expect("stage dots");
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .draw()
        .expect("legend");
    root.present().expect("write svg");
}
