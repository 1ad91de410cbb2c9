//! Memory: metadata bytes by component per heap size, bytes held in caches,
//! and fragmentation after the mixed workload.

use std::alloc::Layout;
use std::fmt::Write as _;
use std::path::Path;

use magbuddy::baseline::{LockMode, SpinHeap};
use magbuddy::{Heap, Stats};
use magbuddy_bench::region::{Region, PAGE};
use magbuddy_bench::{Kind, NoProbe, RunConfig, ThreadAlloc, Workload, MAX_THREADS, REGION};
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// The metadata section and magbuddy's share per heap size (for targets).
pub struct Metadata {
    pub markdown: String,
    /// (heap bytes, metadata percent) for magbuddy.
    pub magbuddy_percent: Vec<(usize, f64)>,
}

/// Builds magbuddy and SpinHeap at 64 MiB, 1 GiB and 4 GiB (lazily mapped
/// regions: only metadata pages are touched) and lists their metadata.
pub fn metadata(csv: &Path) -> Metadata {
    let mut md = String::from(
        "\n## Memory: metadata by component\n\n\
         `cargo run --release -p magbuddy-bench --bin report` (8 CPU slots). In caches: bytes \
         held in per-CPU caches of these fresh heaps (none yet; once CPUs allocate, each may \
         keep up to `Heap::cpu_cache_cap()` bytes, sized from the heap and CPU count).\n\n\
         | heap | allocator | component | bytes | % of heap |\n|---:|---|---|---:|---:|\n",
    );
    let mut rows = String::from("heap_bytes,allocator,component,bytes,percent\n");
    let mut percent = Vec::new();
    for len in [64usize << 20, 1 << 30, 4 << 30] {
        let region = Region::lazy(len);
        // SAFETY: the region is ours and outlives the heap's use here.
        let heap = unsafe { Heap::init(region.start(), len, MAX_THREADS) }.expect("magbuddy");
        let s = heap.stats();
        percent.push((len, s.metadata_percent()));
        emit(&mut md, &mut rows, len, "magbuddy", &s);
        drop(region);
        let region = Region::lazy(len);
        // SAFETY: as above.
        let spin = unsafe { SpinHeap::init(region.start(), len, MAX_THREADS, LockMode::Spin) }
            .expect("SpinHeap");
        emit(&mut md, &mut rows, len, "spinheap", &spin.stats());
    }
    std::fs::write(csv, rows).expect("write memory.csv");
    Metadata {
        markdown: md,
        magbuddy_percent: percent,
    }
}

fn emit(md: &mut String, csv: &mut String, len: usize, name: &str, s: &Stats) {
    let pct = |b: usize| b as f64 * 100.0 / len as f64;
    let size = if len >= 1 << 30 {
        format!("{} GiB", len >> 30)
    } else {
        format!("{} MiB", len >> 20)
    };
    let comps = s.metadata.iter().chain([("in caches", 0)]);
    for (comp, bytes) in comps {
        let _ = writeln!(
            md,
            "| {size} | {name} | {comp} | {bytes} | {:.4} |",
            pct(bytes)
        );
        let _ = writeln!(csv, "{len},{name},{comp},{bytes},{:.6}", pct(bytes));
    }
    let total = s.metadata.total();
    let _ = writeln!(
        md,
        "| {size} | {name} | **total** | **{total}** | **{:.3}** |",
        pct(total)
    );
    let _ = writeln!(csv, "{len},{name},total,{total},{:.6}", pct(total));
}

/// Largest power-of-two block (≥ a page) that `t` can allocate right now.
fn largest(t: &mut dyn ThreadAlloc, region: usize) -> usize {
    let mut size = region;
    while size >= PAGE {
        let l = Layout::from_size_align(size, PAGE).expect("layout");
        let p = t.alloc(l);
        if !p.is_null() {
            // SAFETY: just allocated with `l`.
            unsafe { t.dealloc(p, l) };
            return size;
        }
        size /= 2;
    }
    0
}

/// Allocates greedily, largest blocks first, until not even a page fits;
/// returns the blocks taken.
fn fill(t: &mut dyn ThreadAlloc, region: usize) -> Vec<(*mut u8, Layout)> {
    let mut got = Vec::new();
    let mut size = region;
    while size >= PAGE {
        let l = Layout::from_size_align(size, PAGE).expect("layout");
        let p = t.alloc(l);
        if p.is_null() {
            size /= 2;
        } else {
            got.push((p, l));
        }
    }
    got
}

/// After the mixed workload (2 threads, live sets kept): the largest block
/// and, after freeing a random half of the live objects, the bytes still
/// allocatable. Fixed-region allocators only, each on a fresh region.
pub fn fragmentation(csv: &Path, kinds: &[Kind], pairs: usize) -> String {
    let mut md = format!(
        "\n## Fragmentation after `mixed`\n\n\
         Fresh {} MiB region per allocator; `mixed` on 2 threads ({pairs} pairs each) with the \
         final live sets kept; then the largest power-of-two block that allocates (and, where \
         the allocator reports it, its largest free order); then a random half of the live \
         objects is freed and blocks are allocated greedily, largest first, down to one page.\n\n\
         | allocator | live objects | live bytes (requested) | largest free (stats) | largest allocatable | after freeing half: largest | after freeing half: allocatable bytes (% of region) |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
        REGION >> 20
    );
    let mut rows = String::from(
        "allocator,live_objects,live_bytes,largest_free_stats,largest_alloc,largest_after_half,allocatable_after_half\n",
    );
    for &kind in kinds {
        let a = kind.build(REGION, MAX_THREADS);
        if a.region_len().is_none() || !Workload::Mixed.fits(a.as_ref()) {
            continue;
        }
        let cfg = RunConfig {
            threads: 2,
            pairs,
            seed: 42,
            time_limit: None,
            keep: true,
        };
        let mut live = Workload::Mixed.run::<NoProbe>(a.as_ref(), &cfg).leftover;
        let live_bytes: usize = live.iter().map(|(_, l)| l.size()).sum();
        let n = live.len();
        let stats_largest = a
            .stats()
            .and_then(|s| s.largest_free_order())
            .map(|k| PAGE << k);
        let mut t = a.thread(0);
        let before = largest(t.as_mut(), REGION);
        live.shuffle(&mut rand::rngs::SmallRng::seed_from_u64(7));
        let rest = live.split_off(n / 2);
        for (p, l) in live {
            // SAFETY: live objects of this allocator, freed once.
            unsafe { t.dealloc(p as *mut u8, l) };
        }
        let after = largest(t.as_mut(), REGION);
        let greedy = fill(t.as_mut(), REGION);
        let total: usize = greedy.iter().map(|(_, l)| l.size()).sum();
        let rest = rest.into_iter().map(|(p, l)| (p as *mut u8, l));
        for (p, l) in greedy.into_iter().chain(rest) {
            // SAFETY: as above.
            unsafe { t.dealloc(p, l) };
        }
        let mib = |b: usize| format!("{:.2} MiB", b as f64 / (1 << 20) as f64);
        let _ = writeln!(
            md,
            "| {} | {n} | {} | {} | {} | {} | {} ({:.1} %) |",
            kind.name(),
            mib(live_bytes),
            stats_largest.map_or("–".into(), mib),
            mib(before),
            mib(after),
            mib(total),
            total as f64 * 100.0 / REGION as f64
        );
        let _ = writeln!(
            rows,
            "{},{n},{live_bytes},{},{before},{after},{total}",
            kind.name(),
            stats_largest.map_or(String::new(), |b| b.to_string())
        );
    }
    std::fs::write(csv, rows).expect("write fragmentation.csv");
    md
}
