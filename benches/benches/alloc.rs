//! `cargo bench` (at the repository root): every workload × threads (1, 2, 4,
//! 8) × allocator, as criterion benchmarks named `workload/allocator/threads`.
//! Filter as usual: `cargo bench -- small`, `cargo bench -- page/magbuddy/`.
//!
//! One iteration is one fixed-work run of [`PAIRS`] pairs per thread (see
//! `magbuddy_bench::workload`); threads start outside the timed part. The
//! settings keep the whole suite to a few minutes; the report command
//! (`cargo run --release -p magbuddy-bench --bin report`) runs more work per
//! point and adds latency, CAS retries, memory and plots.

use std::collections::HashMap;
use std::time::Duration;

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use magbuddy_bench::{BenchAlloc, Kind, NoProbe, RunConfig, Workload, MAX_THREADS, REGION};

/// Alloc+free pairs per thread per iteration.
const PAIRS: usize = 8_000;
/// Thread counts (2 cores: 4 and 8 oversubscribe).
const THREADS: [usize; 4] = [1, 2, 4, 8];

fn benches(c: &mut Criterion) {
    // Built on first use, so a filtered run builds only what it measures.
    let mut allocs: HashMap<Kind, Box<dyn BenchAlloc>> = HashMap::new();
    for wl in Workload::ALL {
        let mut group = c.benchmark_group(wl.name());
        // Flat: every sample runs the same number of iterations, so a slow
        // point costs 10 runs, not 55 (criterion's linear ramp).
        group.sampling_mode(SamplingMode::Flat);
        for kind in Kind::ALL {
            if !wl.fits_kind(kind) {
                continue;
            }
            for threads in THREADS {
                let cfg = RunConfig {
                    threads,
                    pairs: PAIRS,
                    seed: 42,
                    // A pure spinlock oversubscribed 4× can stall for whole
                    // time slices; cap an iteration instead of the suite (a
                    // capped iteration did less than the planned work, so
                    // its thrpt is overstated: the report marks such runs).
                    time_limit: Some(Duration::from_secs(1)),
                    keep: false,
                };
                group.throughput(Throughput::Elements(wl.planned_pairs(&cfg) as u64));
                let id = BenchmarkId::new(kind.name(), threads);
                group.bench_with_input(id, &cfg, |b, cfg| {
                    let a = allocs
                        .entry(kind)
                        .or_insert_with(|| kind.build(REGION, MAX_THREADS));
                    b.iter_custom(|iters| {
                        (0..iters)
                            .map(|_| wl.run::<NoProbe>(a.as_ref(), cfg).elapsed)
                            .sum()
                    });
                });
            }
        }
        group.finish();
    }
}

criterion_group! {
    name = suite;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_millis(400))
        .without_plots();
    targets = benches
}
criterion_main!(suite);
