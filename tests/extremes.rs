//! Extremes of the configuration space, each exhausted and recovered:
//! every `Geometry` the API accepts at 1 and `MAX_CPUS` CPUs and at the
//! minimum region length; regions from `Heap::min_region_len` up to the
//! largest `init` accepts (just under 4 TiB of grid), each down to its top
//! slab; `MAX_REGIONS` regions with the top slab of the last one; every one
//! of `MAX_CPUS` handles caching at once. A configuration is either refused
//! at init with an error or served completely.
//!
//! Run: `cargo test --profile verify --features std --test extremes`
//! (about 30 s: multi-TiB regions are reserved with `MAP_NORESERVE` and
//! built with `HeapConfig::zeroed`, so they cost address space, not memory;
//! the halving fills of the 4 TiB regions claim millions of area words).
//! The geometry sweep extends `bug8_...` and the 4 TiB fill `bug5_...` of
//! `tests/soundness.rs` (shared code in `tests/soundness_support`).
//!
//! On 5d3224e: the geometry sweep fails at its first heap, `Geometry::new(0,
//! 1)` at 1 CPU and the minimum length, "attempt to subtract with overflow"
//! (bug 8, src/buddy/area.rs); the region ladder finds that init accepts up
//! to 4 TiB - 1 B at any start, and 512 KiB above an area boundary the
//! region of that length less 72 KiB panics in `Heap::alloc` with "slab id
//! names a published region" (bug 5: its top slabs' grid pages reach 2^30).
//! 16 regions and 64 handles pass there.

mod soundness_support;

use std::sync::Mutex;

use magbuddy::{Geometry, Heap, HeapConfig, InitError, MAX_CPUS, MAX_REGIONS};
use soundness_support::{
    alloc_until_none, exercise_geometry, fill_by_halving, panic_text, Live, Mapping, TopSlab, GIB,
    KIB, MIB, PAGE, SLAB, TIB,
};

/// The multi-TiB tests run one at a time (each touches a few hundred MiB
/// of area words while it fills).
static BIG: Mutex<()> = Mutex::new(());

/// Every geometry `Geometry::new` accepts, at 1 and `MAX_CPUS` CPUs, over
/// the minimum region and one four areas larger: refused at init (only
/// areas smaller than a slab may be) or serving every size on both paths.
#[test]
fn every_accepted_geometry_at_1_and_max_cpus_serves_or_is_refused() {
    let mut accepted = Vec::new();
    for chunk_order in 0..=40 {
        for area_order in 0..=40 {
            if let Some(g) = Geometry::new(chunk_order, area_order) {
                accepted.push(g);
            }
        }
    }
    assert!(Geometry::new(u32::MAX, u32::MAX).is_none());
    let mut refused = 0;
    for &g in &accepted {
        for cpus in [1, MAX_CPUS] {
            let cfg = HeapConfig {
                geometry: g,
                ..HeapConfig::new(cpus)
            };
            let area = (g.area_pages() as usize) * PAGE;
            for len in [
                Heap::min_region_len(cfg),
                Heap::min_region_len(cfg) + 4 * area,
            ] {
                let what = format!("{g:?}, {cpus} CPUs, {len} B");
                match std::panic::catch_unwind(|| exercise_geometry(cfg, len)) {
                    Ok(counts) if counts.is_empty() => refused += 1,
                    Ok(counts) => println!("{what}: {counts:?}"),
                    Err(e) => panic!("{what}: {}", panic_text(&*e)),
                }
            }
        }
    }
    println!(
        "{} geometries accepted by Geometry::new; {refused} of their heaps refused at init",
        accepted.len()
    );
    assert!(accepted.len() >= 20, "{accepted:?}");
}

/// `MAX_CPUS` handles claimed at once, each with objects and pages in its
/// caches; one handle exhausts the heap with pages. It must get everything
/// but what the others may keep (`cpu_cache_cap` each, the no-false-OOM
/// contract), and after the others call in (and honour the drain) all but
/// their current slabs. Then everything goes back and every slot can be
/// claimed again.
#[test]
fn max_cpus_every_handle_caches_and_the_heap_still_exhausts_and_recovers() {
    let map = Mapping::reserve(64 * MIB);
    let cfg = HeapConfig {
        zeroed: true,
        ..HeapConfig::new(MAX_CPUS)
    };
    // SAFETY: our fresh zero-filled mapping, alive until the end.
    let heap = unsafe { Heap::init_with(map.ptr(), map.len(), cfg) }.unwrap();
    let free_at_start = heap.stats().free_bytes;
    let cap = heap.cpu_cache_cap();
    let mut handles: Vec<_> = (0..MAX_CPUS)
        .map(|c| heap.handle_for(c).expect("a free slot"))
        .collect();
    assert!(heap.handle_for(MAX_CPUS).is_none() && heap.handle().is_none());
    let sizes = [8, 64, 2048, PAGE, 4 * PAGE];
    for h in &mut handles {
        for size in sizes {
            let blocks: Vec<_> = (0..6).map(|_| h.alloc(size).unwrap()).collect();
            for p in blocks {
                // SAFETY: allocated above, unused.
                unsafe { h.try_free(p.as_ptr()) }.unwrap();
            }
        }
    }
    let mut live = Live::new();
    alloc_until_none(&mut live, "handle 0, pages", || handles[0].alloc(PAGE));
    let first = live.len() * PAGE;
    assert!(
        first + MAX_CPUS * cap >= free_at_start,
        "false OOM: {first} of {free_at_start} B as pages with {} other handles of at most \
         {cap} B of caches each",
        MAX_CPUS - 1
    );
    // The others call in: each honours the drain its OOM raised.
    for (i, h) in handles.iter_mut().enumerate().skip(1) {
        if let Some(p) = h.alloc(PAGE) {
            live.add(p.as_ptr() as usize, &format!("handle {i} after the drain"));
        }
    }
    alloc_until_none(&mut live, "handle 0, pages after the drain", || {
        handles[0].alloc(PAGE)
    });
    // What is left: every handle's current slabs (one per class it used).
    let slabs = MAX_CPUS * 3 * SLAB;
    assert!(
        live.len() * PAGE + slabs >= free_at_start,
        "after the drain {} of {free_at_start} B as pages (current slabs: at most {slabs} B)",
        live.len() * PAGE
    );
    println!(
        "{MAX_CPUS} CPUs: {first} B before the drain, {} B after, of {free_at_start} B \
         (cache cap {cap} B)",
        live.len() * PAGE
    );
    for (i, p) in live.drain().into_iter().enumerate() {
        // SAFETY: allocated above, unused.
        unsafe { handles[i % MAX_CPUS].try_free(p as *mut u8) }.unwrap();
    }
    drop(handles);
    heap.reclaim();
    heap.validate().unwrap();
    assert_eq!(heap.stats().free_bytes, free_at_start);
    assert_eq!(heap.corruptions().0, 0);
    assert_eq!(heap.slabs_in_use(), 0);
    let again: Vec<_> = (0..MAX_CPUS).rev().map(|c| heap.handle_for(c)).collect();
    assert!(
        again.iter().all(Option::is_some),
        "every slot claimable again"
    );
}

/// The largest region `init` accepts at `start` (area-aligned or not):
/// found by bisection between two lengths near 4 TiB, each attempt on the
/// reservation made to read as zeros again. Asserts the lengths around it
/// are accepted and refused as `TooLarge`.
fn largest_accepted(map: &Mapping, start: usize) -> usize {
    let cfg = HeapConfig {
        zeroed: true,
        ..HeapConfig::new(1)
    };
    let accepts = |len: usize| {
        map.reset();
        // SAFETY: a range of our mapping, zero again; the heap is dropped
        // (never used) before the next attempt resets the memory.
        match unsafe { Heap::init_with(start as *mut u8, len, cfg) } {
            Ok(_) => true,
            Err(InitError::TooLarge) => false,
            Err(e) => panic!("init of {len:#x} B at {start:#x}: {e:?}"),
        }
    };
    let (mut lo, mut hi) = (4 * TIB - 64 * MIB, 4 * TIB + MIB);
    assert!(accepts(lo) && !accepts(hi));
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if accepts(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    map.reset();
    lo
}

/// Regions from `Heap::min_region_len` to the largest `init` accepts, at
/// an area-aligned start and 512 KiB above one: each filled (largest
/// blocks first, then 16 KiB blocks), its top slab serving objects on both
/// paths, then emptied and filled again with the same blocks. The largest
/// accepted is just under 4 TiB of grid (slab ids keep 28 bits, see
/// `InitError::TooLarge`).
#[test]
fn regions_from_the_minimum_to_the_largest_accepted_serve_their_top_slab() {
    let _one_at_a_time = BIG.lock().unwrap_or_else(|e| e.into_inner());
    let min = Heap::min_region_len(HeapConfig::new(1));
    for offset in [0, 512 * KIB] {
        let started = std::time::Instant::now();
        let largest = {
            let map = Mapping::reserve(4 * TIB + 4 * MIB);
            let start = map.addr().next_multiple_of(MIB) + offset;
            largest_accepted(&map, start)
        };
        println!(
            "offset {offset:#x}: largest accepted region {largest:#x} B (found in {:.1} s)",
            started.elapsed().as_secs_f64()
        );
        // A partial last area (`largest - 72 KiB`): the top slab lies in
        // the grid's last area, at the highest slab ids a grid has.
        let lens: &[usize] = if offset == 0 {
            &[min, 64 * MIB + 8, 64 * GIB, largest - 72 * KIB, largest]
        } else {
            &[min, min + MIB + 3 * PAGE + 8, GIB, TIB, largest - 72 * KIB]
        };
        for &len in lens {
            let started = std::time::Instant::now();
            let what = format!("offset {offset:#x}, {len:#x} B");
            let mut t = TopSlab::build(offset, len, 0, true, |_, _| Vec::new())
                .unwrap_or_else(|e| panic!("{what}: init refused: {e:?}"));
            if len == largest - 72 * KIB {
                assert!(
                    t.top + MIB > t.end,
                    "{what}: the top slab {:#x} lies in the last area",
                    t.top
                );
            }
            t.check_top_slab();
            t.free_all_and_refill();
            if len <= GIB {
                t.heap().validate().unwrap();
            }
            println!(
                "{what}: {} large blocks, {} slabs of 16 KiB, top slab at grid page {:#x} \
                 ({:.1} s)",
                t.big.len(),
                t.held.len() + 1,
                (t.top - t.base) / PAGE,
                started.elapsed().as_secs_f64()
            );
        }
        // The grid (from the area boundary at or below the start) is just
        // under 4 TiB (`InitError::TooLarge`). Checked after the ladder, so
        // a heap that accepts more shows first what goes wrong at its top.
        let grid = offset + largest;
        assert!(
            grid <= 4 * TIB && grid > 4 * TIB - 2 * MIB,
            "offset {offset:#x}: largest region {largest:#x} B: its grid is not just under 4 TiB"
        );
    }
}

/// `MAX_REGIONS` regions (the first 8 MiB, then 14 small ones at odd
/// alignments, the last 4 GiB); one more is refused with `TooManyRegions`.
/// Filled largest blocks first across all of them, the top slab of the last
/// region serves objects on both paths; emptied and filled again with the
/// same blocks, and `validate()`.
#[test]
fn max_regions_fill_serve_the_top_slab_of_the_last_and_recover() {
    let _one_at_a_time = BIG.lock().unwrap_or_else(|e| e.into_inner());
    let min = Heap::min_region_len(HeapConfig::new(1));
    let spacing = 64 * MIB;
    // A partial last area, so the top slab is the region's top.
    let last = 4 * GIB - 72 * KIB;
    let extra = (MAX_REGIONS - 1) * spacing + last + 2 * MIB;
    let mut regions = Vec::new();
    let mut t = TopSlab::build(0, 8 * MIB, extra, false, |heap, end| {
        let first = end.next_multiple_of(spacing);
        for i in 1..MAX_REGIONS - 1 {
            let start = first + (i - 1) * spacing + i * (PAGE + 8);
            let len = min + i * MIB + i * 8;
            // SAFETY: disjoint ranges of the test's reservation.
            unsafe { heap.add_region(start as *mut u8, len) }.unwrap();
            regions.push((start, start + len));
        }
        let start = first + (MAX_REGIONS - 2) * spacing;
        // SAFETY: as above.
        unsafe { heap.add_region(start as *mut u8, last) }.unwrap();
        regions.push((start, start + last));
        let more = start + last + MIB;
        assert_eq!(
            // SAFETY: refused before the range is touched.
            unsafe { heap.add_region(more as *mut u8, min) },
            Err(InitError::TooManyRegions)
        );
        fill_by_halving(heap, MIB)
    })
    .unwrap();
    let (_, e) = *regions.last().unwrap();
    assert!(
        (e - MIB..e).contains(&t.top),
        "the top slab {:#x} lies in the last area of the last region",
        t.top
    );
    for &(s, e) in &regions {
        let used = t.big.iter().map(|b| b.0).chain(t.held.iter().copied());
        assert!(
            used.into_iter().any(|p| (s..e).contains(&p)),
            "region {s:#x} served"
        );
    }
    t.check_top_slab();
    t.free_all_and_refill();
    t.heap().validate().unwrap();
    assert_eq!(t.heap().corruptions().0, 0);
    println!(
        "{MAX_REGIONS} regions: {} large blocks, {} slabs of 16 KiB",
        t.big.len(),
        t.held.len() + 1
    );
}
