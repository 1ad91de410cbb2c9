//! Benchmark suite of magbuddy: workloads, the allocator boundary, and the
//! harness shared by the criterion benchmarks (`benches/alloc.rs`), the report
//! command (`src/bin/report`) and, later, the preload evaluation.
//!
//! * [`alloc`]: the `dyn` call boundary ([`alloc::BenchAlloc`],
//!   [`alloc::ThreadAlloc`]) and every allocator behind it ([`alloc::Kind`]).
//! * [`workload`]: the workloads ([`workload::Workload`]).
//! * [`run`]: threads, barrier, clocks, latency probes, results.
//! * [`region`]: the memory fixed-region allocators manage.
//! * [`xv6`]: seed 002's per-CPU page lists with stealing.

pub mod alloc;
pub mod region;
pub mod run;
pub mod workload;
pub mod xv6;

pub use alloc::{BenchAlloc, Kind, ThreadAlloc};
pub use run::{Latency, NoProbe, RunConfig, RunResult};
pub use workload::Workload;

/// Region length every fixed-region allocator gets in the timed runs.
pub const REGION: usize = 256 << 20;
/// Threads (and handles) every allocator is built for.
pub const MAX_THREADS: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every allocator runs every workload it fits, at 1 and 3 threads
    /// (3: an odd count leaves a `remote` thread idle) without a failed
    /// allocation, and every pair is counted and timed.
    #[test]
    fn every_allocator_runs_every_workload() {
        for kind in Kind::ALL {
            let a = kind.build(64 << 20, 4);
            for wl in Workload::ALL.into_iter().filter(|w| w.fits(a.as_ref())) {
                for threads in [1, 3] {
                    let cfg = RunConfig {
                        threads,
                        pairs: 1_600,
                        seed: 7,
                        time_limit: None,
                        keep: false,
                    };
                    let r = wl.run::<Latency>(a.as_ref(), &cfg);
                    let name = format!("{}/{}/{threads}", wl.name(), kind.name());
                    assert_eq!(r.failed, 0, "{name}: allocations failed");
                    assert_eq!(r.pairs as usize, wl.planned_pairs(&cfg), "{name}");
                    let h = r.hist.expect("latency probe");
                    assert_eq!(h.len(), 2 * r.pairs, "{name}: one sample per call");
                }
            }
        }
    }
}
