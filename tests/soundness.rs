//! Regression tests for the soundness issue: ways to get one block handed to
//! two owners, a false `None`, or a crash, through the public API. Default
//! build; they also run with `--features checked`, where they must pass
//! too (the expectations only `checked` promises are in
//! `tests/soundness_checked.rs`). Each test's doc comment names its bug
//! (numbers as in the issue) and the mechanism.
//!
//! Run: `cargo test --profile verify --features std --test soundness`
//!
//! How each test fails on 5d3224e (default build, `--profile verify`, on
//! the 2-core VM; every one fails on every run):
//!
//! * `bug1_shared_free_of_a_never_carved_object_is_refused`: "shared free of
//!   a never-carved object: 0x... is not an allocated block, expected
//!   Err(NotAllocated) or Err(DoubleFree), got Ok(())".
//! * `bug1_handle_free_of_a_never_carved_object_is_refused`: "handle free of
//!   a never-carved object: ... got Ok(())".
//! * `bug2_racing_shared_double_frees_of_one_object_exactly_one_wins`:
//!   "shared/shared, 64 B: two racing frees of 0x... both returned Ok (round
//!   1; 101 of 512 contested blocks freed twice)": in round 1 to 3 of a
//!   3 s budget (a few ms).
//! * `bug4_handle_double_free_of_a_cached_object_is_refused` and
//!   `..._page_is_refused`: "assertion `left == right` failed: second handle
//!   free of a block in the magazine (64 B / 4096 B); left: Ok(()), right:
//!   Err(DoubleFree(..))". (Both pass with `checked`.)
//! * `bug4_shared_free_of_an_object_in_a_handle_magazine_is_refused` and
//!   `..._a_page_...`: "shared free of a refilled block that was never
//!   handed out (64 B / 4096 B): 0x... is not an allocated block, expected
//!   Err(NotAllocated) or Err(DoubleFree), got Ok(())".
//! * `bug5_top_slab_of_a_region_just_under_4_tib`: panics in `Heap::alloc`
//!   at src/heap/slabs.rs:41, "slab id names a published region" (about 2 s
//!   to get there).
//! * `bug5_top_slab_of_a_region_just_under_4_tib_with_a_second_region`:
//!   "alloc(64) returned 0x..., outside the only free slab-sized block 0x...
//!   (grid page 0x40000078); held block containing it: Some(..)": the object
//!   was carved from region 1, inside a 16 KiB block the test holds.
//! * `bug6_shared_alloc_after_a_handle_release_finds_the_depot_objects`:
//!   "false OOM: shared alloc(64) #0 of 1 returned None (Geometry {
//!   chunk_order: 5, area_order: 8 }, 1 objects freed by a released
//!   handle)".
//! * `bug7_reclaim_does_not_hide_abandoned_slabs_from_shared_alloc` and
//!   `..._from_a_handle`: "false OOM: shared (handle) alloc(64) returned
//!   None while reclaim() ran, with 254 objects free (after 866 allocations
//!   and 10 reclaims)", within 0.05 - 0.35 s.
//! * `bug8_every_accepted_geometry_serves_or_is_refused`: "geometry (0, 1):
//!   attempt to subtract with overflow" (at src/buddy/area.rs:66, in
//!   `Area::free` called by `give_up_slab` from `reclaim`).
//! * `extra_a_live_object_holding_the_free_mark_pattern_can_be_freed` (found
//!   while attacking, not in the issue): "assertion `left == right` failed:
//!   usable_size of a live 8 B object holding the mark pattern; left:
//!   Err(DoubleFree(..)), right: Ok(8)".

mod common;
mod soundness_support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::Mem;
use magbuddy::{FreeError, Geometry, Heap, HeapConfig, InitError};
use soundness_support::{
    exactly_one_ok, exercise_geometry, free_all_and_validate, panic_text, pin_to_cpu, race_frees,
    refused_as_free, slab_base, Live, Side, TopSlab, Twins, KIB, MIB, PAGE, SLAB, TIB,
};

/// The tests that keep both cores busy (real-thread races, the 4 TiB
/// heaps) run one at a time, so a race is not starved by its neighbours.
static HEAVY: Mutex<()> = Mutex::new(());

/// Heap config with small, fixed magazines, so a refill takes
/// `ROUNDS.div_ceil(2)` = 4 rounds and leaves three in the magazine.
const ROUNDS: usize = 8;

fn config(cpus: usize) -> HeapConfig {
    HeapConfig {
        magazine_rounds: Some(ROUNDS),
        ..HeapConfig::new(cpus)
    }
}

fn heap(mem: &Mem, cpus: usize) -> &Heap {
    unsafe { Heap::init_with(mem.ptr(), mem.len(), config(cpus)) }.unwrap()
}

/// Allocates `n` blocks of `size` through `alloc`, recording each in `live`
/// (which panics on a block handed out twice).
fn alloc_unique(
    live: &mut Live,
    n: usize,
    what: &str,
    mut alloc: impl FnMut() -> Option<std::ptr::NonNull<u8>>,
) {
    for i in 0..n {
        let p = alloc().unwrap_or_else(|| panic!("{what}: allocation {i} failed"));
        live.add(p.as_ptr() as usize, what);
    }
}

/// Bug 1 (src/heap/free.rs `check_object` checks only alignment): a free of
/// an object of a live slab that was never handed out is accepted on the
/// shared path; it lands on the slab's return list, and the slab later
/// hands that object out twice (once from the list, once from the bump
/// index). Expected: refused with an error naming the pointer, nothing
/// changed, and no block handed out twice afterwards.
#[test]
fn bug1_shared_free_of_a_never_carved_object_is_refused() {
    let mem = Mem::new(8 * MIB);
    let heap = heap(&mem, 2);
    let mut live = Live::new();
    let p = heap.alloc(64).unwrap().as_ptr() as usize;
    live.add(p, "first shared alloc");
    // The slab is fresh: the shared path carved only `p` (object 0).
    let bad = slab_base(p) + 64 * 5;
    assert_ne!(bad, p);
    let before = heap.stats();
    refused_as_free(
        unsafe { heap.try_free(bad as *mut u8) },
        bad,
        "shared free of a never-carved object",
    );
    refused_as_free(
        heap.usable_size(bad as *const u8),
        bad,
        "usable_size of a never-carved object",
    );
    assert_eq!(
        heap.stats().free_bytes,
        before.free_bytes,
        "nothing changed"
    );
    // Two slabs' worth: every object of the slab, each once.
    alloc_unique(
        &mut live,
        2 * 256,
        "shared allocs after the bad free",
        || heap.alloc(64),
    );
    assert_eq!(heap.corruptions().0, 0);
    free_all_and_validate(heap, &mut live);
}

/// Bug 1 on the handle path: the handle accepts the free of a never-carved
/// object of its own current slab into its magazine and hands it out again,
/// and the slab's bump index later hands out the same object.
#[test]
fn bug1_handle_free_of_a_never_carved_object_is_refused() {
    let mem = Mem::new(8 * MIB);
    let heap = heap(&mem, 2);
    let mut h = heap.handle_for(0).unwrap();
    let mut live = Live::new();
    let p = h.alloc(64).unwrap().as_ptr() as usize;
    live.add(p, "first handle alloc");
    // A refill carves ROUNDS / 2 objects; the last ones of the slab are not
    // among them. (The very last 64 B slot holds the slab's free bitmap
    // since the fix: a free of it is refused as `Metadata`.)
    let bad = slab_base(p) + SLAB - 2 * 64;
    refused_as_free(
        unsafe { h.try_free(bad as *mut u8) },
        bad,
        "handle free of a never-carved object",
    );
    refused_as_free(
        unsafe { heap.try_free(bad as *mut u8) },
        bad,
        "shared free of a never-carved object of a handle's slab",
    );
    refused_as_free(
        heap.usable_size(bad as *const u8),
        bad,
        "usable_size of a never-carved object",
    );
    alloc_unique(
        &mut live,
        2 * 256,
        "handle allocs after the bad free",
        || h.alloc(64),
    );
    drop(h);
    assert_eq!(heap.corruptions().0, 0);
    free_all_and_validate(heap, &mut live);
}

/// Bug 2 (src/heap/slabs.rs `mark_free` is a plain read then write): two
/// threads free the same 64 B object on the shared path at the same time;
/// both can read "not marked", both write the mark and both push the object
/// on its slab's return list (a cycle, or one object on a list twice).
/// Expected (README, "Of two racing frees of one block, exactly one
/// succeeds"): exactly one `Ok` per block, and later allocations neither
/// panic nor hand a block out twice.
///
/// Pairs: only shared/shared is here. Without `checked`, a handle's free
/// into its magazine is documented to detect double frees only when the
/// block reaches its slab (README, "Double frees of small blocks"), and its
/// fast path does no atomic read-modify-write, so the default build cannot
/// promise exactly one winner for handle/handle or handle/shared races;
/// those pairs are in `tests/soundness_checked.rs` (`checked` builds).
#[test]
fn bug2_racing_shared_double_frees_of_one_object_exactly_one_wins() {
    let _one_at_a_time = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let mem = Mem::new(16 * MIB);
    let heap = heap(&mem, 2);
    let r = race_frees(
        heap,
        &[Side::Shared, Side::Shared],
        64,
        512,
        100_000,
        Duration::from_millis(3000),
    );
    exactly_one_ok(&r, "shared/shared, 64 B");
    let mut live = Live::new();
    alloc_unique(&mut live, 4096, "shared allocs after the race", || {
        heap.alloc(64)
    });
    assert_eq!(heap.corruptions().0, 0);
    free_all_and_validate(heap, &mut live);
}

/// Bug 4, default build (a block freed into a magazine carries no mark
/// without `checked`): a second free of a block that sits in the handle's
/// magazine is accepted, so the magazine holds it twice and hands it out to
/// two owners. Expected (the requirement for the default build):
/// the second free returns `DoubleFree(ptr)`, as the `checked` build does,
/// on the handle and on the shared path. Note that README ("Double frees of
/// small blocks") and `Handle::try_free`'s doc still promise this only with
/// `checked`; the fix has to change that promise.
fn handle_double_free_of_a_cached_block(size: usize) {
    let mem = Mem::new(8 * MIB);
    let heap = heap(&mem, 2);
    let mut h = heap.handle_for(0).unwrap();
    let mut live = Live::new();
    let p = h.alloc(size).unwrap().as_ptr();
    let q = h.alloc(size).unwrap().as_ptr();
    live.add(q as usize, "second alloc");
    unsafe { h.try_free(p) }.unwrap();
    // p is in the loaded magazine now.
    assert_eq!(
        unsafe { h.try_free(p) },
        Err(FreeError::DoubleFree(p as usize)),
        "second handle free of a block in the magazine ({size} B)"
    );
    assert_eq!(
        unsafe { heap.try_free(p) },
        Err(FreeError::DoubleFree(p as usize)),
        "shared free of a block in a handle's magazine ({size} B)"
    );
    alloc_unique(&mut live, 64, "handle allocs after the double free", || {
        h.alloc(size)
    });
    alloc_unique(&mut live, 16, "shared allocs after the double free", || {
        heap.alloc(size)
    });
    drop(h);
    assert_eq!(heap.corruptions().0, 0);
    free_all_and_validate(heap, &mut live);
}

/// Bug 4, default build, 64 B object: see `handle_double_free_of_a_cached_block`.
#[test]
fn bug4_handle_double_free_of_a_cached_object_is_refused() {
    handle_double_free_of_a_cached_block(64);
}

/// Bug 4, default build, 4 KiB page: see `handle_double_free_of_a_cached_block`.
#[test]
fn bug4_handle_double_free_of_a_cached_page_is_refused() {
    handle_double_free_of_a_cached_block(4096);
}

/// Bug 4 (src/heap/cache.rs `refill` leaves the blocks it puts in a
/// magazine unmarked), stale shared free: a refill hands out one block and
/// keeps the others in the magazine, never handed out; `heap.try_free` of
/// one of them is accepted (the object goes on its slab's return list, the
/// page back to the tree) while the magazine still holds it, so it is later
/// handed out twice. The same for a block the handle freed into its
/// magazine. Expected: both refused, no block handed out twice.
///
/// Which blocks the magazine holds is read off a twin heap: the same calls
/// on an identical heap place blocks at the same offsets, and there the
/// handle's next allocation pops the magazine's top round.
fn shared_free_of_a_block_in_a_handle_magazine(size: usize) {
    let twins = Twins::new(8 * MIB, config(2));
    let first_two = |heap: &Heap| {
        let mut h = heap.handle_for(0).unwrap();
        let p = h.alloc(size).unwrap().as_ptr() as usize;
        let q = h.alloc(size).unwrap().as_ptr() as usize;
        (p, q)
    };
    let (_, q_a) = first_two(twins.a());
    let heap = twins.b();
    let mut h = heap.handle_for(0).unwrap();
    let mut live = Live::new();
    let p = h.alloc(size).unwrap().as_ptr() as usize;
    live.add(p, "first handle alloc");
    // Refilled into the magazine, never handed out.
    let q = twins.in_b(q_a);
    assert_ne!(q, p);
    refused_as_free(
        unsafe { heap.try_free(q as *mut u8) },
        q,
        &format!("shared free of a refilled block that was never handed out ({size} B)"),
    );
    // Freed into the magazine by the handle, then freed on the shared path.
    unsafe { h.try_free(p as *mut u8) }.unwrap();
    live.remove(p);
    refused_as_free(
        unsafe { heap.try_free(p as *mut u8) },
        p,
        &format!("shared free of a block the handle freed into its magazine ({size} B)"),
    );
    alloc_unique(&mut live, 64, "handle allocs after the stale frees", || {
        h.alloc(size)
    });
    alloc_unique(&mut live, 16, "shared allocs after the stale frees", || {
        heap.alloc(size)
    });
    drop(h);
    assert_eq!(heap.corruptions().0, 0);
    free_all_and_validate(heap, &mut live);
}

/// Bug 4, stale shared free of a 64 B object in a handle's magazine.
#[test]
fn bug4_shared_free_of_an_object_in_a_handle_magazine_is_refused() {
    shared_free_of_a_block_in_a_handle_magazine(64);
}

/// Bug 4, stale shared free of a 4 KiB page in a handle's magazine.
#[test]
fn bug4_shared_free_of_a_page_in_a_handle_magazine_is_refused() {
    shared_free_of_a_block_in_a_handle_magazine(4096);
}

/// A heap over a region of 4 TiB - 4 KiB (the largest 5d3224e accepted)
/// starting 512 KiB above an area boundary, so its grid starts below
/// `start` and its top pages have grid indices of 2^30 and more, filled
/// but for its top 16 KiB block (see `TopSlab`); `extra` bytes after it for
/// the caller. `None` if init refused the region as too large (a fix).
fn top_of_4_tib(extra: usize, before_slabs: impl FnOnce(&Heap, usize)) -> Option<TopSlab> {
    let len = 4 * TIB - PAGE;
    let t = match TopSlab::build(512 * KIB, len, extra, true, |heap, end| {
        before_slabs(heap, end);
        Vec::new()
    }) {
        Err(InitError::TooLarge) => return None,
        Err(e) => panic!("init of a 4 TiB - 4 KiB region: {e:?}"),
        Ok(t) => t,
    };
    assert!(
        t.end - t.base > 4 * TIB,
        "the top pages have grid index 2^30 or more"
    );
    let top = t.top;
    assert!(
        top - t.base >= 4 * TIB,
        "the top 16 KiB block {top:#x} has grid page {:#x} >= 2^30",
        (top - t.base) / PAGE
    );
    Some(t)
}

/// Bug 5 (src/heap/region.rs `check_range` limits the region's own pages to
/// < 2^30, but slab ids in src/heap/slabs.rs `slab_id` use the grid page
/// index, counted from the area-aligned base below `start`, which reaches
/// 2^30 and spills into the 4-bit region number): the top slab of a valid
/// region of 4 TiB - 4 KiB starting 512 KiB above an area boundary gets
/// the id of a slab of region 1. Expected: init refuses the region with
/// `InitError::TooLarge`, or the top slab works.
///
/// The related wrap (a slab at the top of region 15 gets id 0xFFFF_FFFF, and
/// `id + 1`, which `reclaim`'s keep list and the handles' `current` slabs
/// use with 0 meaning "none", wraps to 0, stranding the slab) is not tested:
/// it needs a region 15 of about 4 TiB, and `add_region` ignores `zeroed`,
/// so it would write about 8 GiB of metadata (4-byte page and 16-byte slab
/// descriptors for 2^30 pages).
#[test]
fn bug5_top_slab_of_a_region_just_under_4_tib() {
    let _one_at_a_time = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(t) = top_of_4_tib(0, |_, _| {}) {
        t.check_top_slab();
    }
}

/// Bug 5 with a second region: the spilled slab id names region 1, so the
/// shared path carves its object from region 1's memory, inside a 16 KiB
/// block the test holds: two owners of one block, no panic.
#[test]
fn bug5_top_slab_of_a_region_just_under_4_tib_with_a_second_region() {
    let _one_at_a_time = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let t = top_of_4_tib(8 * MIB, |heap, end| {
        // Region 1 (a small one after region 0, in the same mapping),
        // filled by the 16 KiB fill like the rest.
        let start = end.next_multiple_of(MIB) + MIB;
        unsafe { heap.add_region(start as *mut u8, 4 * MIB) }.unwrap();
    });
    if let Some(t) = t {
        t.check_top_slab();
    }
}

/// Bug 6 (src/heap/slabs.rs `adopt_or_new` pops the abandoned stacks once;
/// on failure it runs `reclaim`, which empties the depot and republishes the
/// slabs with free objects, but then retries only the buddy tree): a handle
/// fills the heap with 64 B objects, frees a few (they stay in its
/// magazines) and is released, so the freed objects sit in the depot and
/// their slabs are abandoned-full, on no stack. The next shared `alloc(64)`
/// returns `None` although objects are free; the one after succeeds.
/// Expected: every freed object can be allocated again on the shared path.
/// (The version frees every object before the release: that does
/// not reproduce, since the frees that overflow the magazines reach their
/// slabs and publish them, so the stack is not empty.)
#[test]
fn bug6_shared_alloc_after_a_handle_release_finds_the_depot_objects() {
    for g in [Geometry::DEFAULT, Geometry::new(1, 2).unwrap()] {
        for freed in [1, 2, ROUNDS] {
            let cfg = HeapConfig {
                geometry: g,
                ..config(1)
            };
            let mem = Mem::new(Heap::min_region_len(cfg));
            let heap = unsafe { Heap::init_with(mem.ptr(), mem.len(), cfg) }.unwrap();
            let mut h = heap.handle_for(0).unwrap();
            let mut objs = Vec::new();
            while let Some(p) = h.alloc(64) {
                objs.push(p.as_ptr() as usize);
            }
            assert!(heap.alloc(SLAB).is_none(), "the tree is full");
            let mut live = Live::new();
            for &p in &objs[freed..] {
                live.add(p, "fill");
            }
            for &p in &objs[..freed] {
                unsafe { h.try_free(p as *mut u8) }.unwrap();
            }
            drop(h);
            for i in 0..freed {
                let p = heap.alloc(64).unwrap_or_else(|| {
                    panic!(
                        "false OOM: shared alloc(64) #{i} of {freed} returned None \
                         ({g:?}, {freed} objects freed by a released handle)"
                    )
                });
                live.add(p.as_ptr() as usize, "shared alloc after the release");
            }
            free_all_and_validate(heap, &mut live);
        }
    }
}

/// Bug 7 (src/heap/slabs.rs `reclaim` adopts every abandoned slab with the
/// SHARED token and republishes the ones in use only after it has walked
/// the whole stack): while it runs, a shared `alloc(64)` finds the
/// abandoned stack empty and the tree full and returns `None` with hundreds
/// of objects free. One thread loops `reclaim()` while another loops
/// `alloc(64)` / `free`. Expected: the allocation never fails (the
/// no-false-OOM contract: every slab holds free objects all along).
#[test]
fn bug7_reclaim_does_not_hide_abandoned_slabs_from_shared_alloc() {
    reclaim_race(false);
}

/// Bug 7 on the handle path: a handle that needs a slab pops the abandoned
/// stack in `adopt_or_new`, and after a failure its own reclaim and one
/// more refill, so the concurrent reclaim must hold the slabs a little
/// longer; the handle allocates and frees 64 objects at a time (one free
/// per slab, magazines of one round), so it adopts slabs all the time.
#[test]
fn bug7_reclaim_does_not_hide_abandoned_slabs_from_a_handle() {
    reclaim_race(true);
}

/// A full heap of 64 B objects, every slab abandoned with one free one;
/// one thread loops `reclaim()`, the other allocates (`alloc(64)` on the
/// shared path or through a handle) and frees for up to 3 s; asserts that
/// no allocation returned `None`.
fn reclaim_race(via_handle: bool) {
    let _one_at_a_time = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let mem = Mem::new(4 * MIB);
    let cfg = HeapConfig {
        magazine_rounds: Some(1),
        ..HeapConfig::new(1)
    };
    let heap = unsafe { Heap::init_with(mem.ptr(), mem.len(), cfg) }.unwrap();
    let mut objs = Vec::new();
    while let Some(p) = heap.alloc(64) {
        objs.push(p.as_ptr() as usize);
    }
    assert!(heap.alloc(SLAB).is_none(), "the tree is full");
    // The first object of each slab back (the shared path fills one slab at
    // a time): each slab is abandoned with one free object, so allocations
    // adopt slab after slab.
    let mut live = Live::new();
    let mut free_objects = 0;
    for (i, &p) in objs.iter().enumerate() {
        if i % 256 == 0 {
            unsafe { heap.try_free(p as *mut u8) }.unwrap();
            free_objects += 1;
        } else {
            live.add(p, "fill");
        }
    }
    let stop = AtomicBool::new(false);
    let reclaims = AtomicUsize::new(0);
    let budget = Duration::from_secs(3);
    let path = if via_handle { "handle" } else { "shared" };
    let (allocs, failed) = std::thread::scope(|s| {
        s.spawn(|| {
            pin_to_cpu(1);
            while !stop.load(Ordering::Relaxed) {
                heap.reclaim();
                reclaims.fetch_add(1, Ordering::Relaxed);
            }
        });
        pin_to_cpu(0);
        let mut h = via_handle.then(|| heap.handle_for(0).unwrap());
        let start = Instant::now();
        let mut allocs = 0usize;
        let mut failed = false;
        // A handle keeps slabs while it has objects of them to hand out:
        // take many before freeing, so it keeps needing new ones.
        let n = if via_handle { 64 } else { 1 };
        let mut batch = Vec::with_capacity(n);
        while start.elapsed() < budget && !failed {
            for _ in 0..n {
                let p = match &mut h {
                    Some(h) => h.alloc(64),
                    None => heap.alloc(64),
                };
                match p {
                    Some(p) => batch.push(p.as_ptr()),
                    None => {
                        failed = true;
                        break;
                    }
                }
                allocs += 1;
            }
            for p in batch.drain(..) {
                match &mut h {
                    Some(h) => unsafe { h.try_free(p) }.unwrap(),
                    None => unsafe { heap.try_free(p) }.unwrap(),
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        (allocs, failed)
    });
    let reclaims = reclaims.load(Ordering::Relaxed);
    println!("{path}: {allocs} allocations, {reclaims} reclaims");
    assert!(
        !failed,
        "false OOM: {path} alloc(64) returned None while reclaim() ran, with \
         {free_objects} objects free (after {allocs} allocations and {reclaims} reclaims)"
    );
    free_all_and_validate(heap, &mut live);
}

/// Bug 8 (src/buddy/mod.rs `Geometry::new` accepts geometries whose areas
/// are smaller than a slab, e.g. `Geometry::new(0, 1)`: a 16 KiB slab is
/// then carved from a run of two areas, and `give_up_slab` frees it as an
/// order-2 block inside one 2-page area, underflowing in
/// src/buddy/area.rs). Expected: every geometry `Geometry::new` accepts
/// either serves every size through both paths (exhausting and freeing
/// objects, pages and multi-area blocks, then `validate()` and all memory
/// back), or `Heap::init_with` refuses it with an `InitError`. Geometries
/// with areas of at least a slab (4 pages), which the verify suites use,
/// must be served.
#[test]
fn bug8_every_accepted_geometry_serves_or_is_refused() {
    let mut accepted = 0;
    for chunk_order in 0..=6 {
        for area_order in 0..=11 {
            let Some(g) = Geometry::new(chunk_order, area_order) else {
                continue;
            };
            accepted += 1;
            let cfg = HeapConfig {
                geometry: g,
                ..config(2)
            };
            let len = Heap::min_region_len(cfg) + 4 * (g.area_pages() as usize) * PAGE;
            match std::panic::catch_unwind(|| exercise_geometry(cfg, len)) {
                Ok(counts) => println!("{g:?}: {counts:?}"),
                Err(e) => panic!(
                    "geometry ({chunk_order}, {area_order}): {}",
                    panic_text(&*e)
                ),
            }
        }
    }
    assert!(accepted > 10, "{accepted} geometries accepted");
}

/// Stores in a live object the value the allocator keeps in free objects:
/// on 5d3224e the free mark of src/heap/slabs.rs (the address xor
/// "magbuddy" at bytes 8..16, or 4..8 of an 8 B object); since then the free
/// tag of src/slab.rs (`tag_of`: the address's low half xor 0x6d627501 at
/// bytes 4..8), now the constant 0x6d627501 there (`FREE_TAG`). The mark
/// and the current tag are written, so the test keeps attacking whichever
/// the allocator uses.
fn forge_free_mark(p: *mut u8, size: usize) {
    let mark = (p as u64) ^ 0x6d61_6762_7564_6479;
    let tag = magbuddy::testing::FREE_TAG;
    unsafe {
        if size == 8 {
            (p.add(4) as *mut u32).write(mark as u32);
        } else {
            (p.add(8) as *mut u64).write(mark);
        }
        (p.add(4) as *mut u32).write(tag);
    }
}

/// Extra A (found while attacking; src/heap/slabs.rs `is_marked`): the
/// free mark lives in the object itself (bytes 8..16, or 4..8 of an 8 B
/// object, holding the address xor "magbuddy"), so a live object whose
/// contents equal it is taken for a freed one. Its legitimate free is
/// refused with `DoubleFree` on the shared path (and on the handle path
/// with `checked`); the `GlobalAlloc` adapter then aborts the process, so
/// safe Rust code storing one chosen `u64` can kill its program, and for
/// 8 B objects a random value matches with probability 2^-32 per free.
/// Without `checked`, the handle path takes the free, but flushing the
/// magazine counts the object as a corruption and drops it: its slab leaks.
/// Expected: a live object is freed whatever it holds.
#[test]
fn extra_a_live_object_holding_the_free_mark_pattern_can_be_freed() {
    let mem = Mem::new(8 * MIB);
    let heap = heap(&mem, 2);
    let free_at_start = heap.stats().free_bytes;
    for size in [8, 64, 2048] {
        let p = heap.alloc(size).unwrap().as_ptr();
        forge_free_mark(p, size);
        assert_eq!(
            heap.usable_size(p),
            Ok(size),
            "usable_size of a live {size} B object holding the mark pattern"
        );
        assert_eq!(
            unsafe { heap.try_free(p) },
            Ok(()),
            "shared free of a live {size} B object holding the mark pattern"
        );
        let mut h = heap.handle_for(0).unwrap();
        let q = h.alloc(size).unwrap().as_ptr();
        forge_free_mark(q, size);
        assert_eq!(
            unsafe { h.try_free(q) },
            Ok(()),
            "handle free of a live {size} B object holding the mark pattern"
        );
        drop(h);
        heap.reclaim();
        assert_eq!(
            heap.corruptions().0,
            0,
            "flushing the magazine holding the freed {size} B object"
        );
    }
    heap.validate().unwrap();
    assert_eq!(
        heap.stats().free_bytes,
        free_at_start,
        "every slab released"
    );
}

/// Extra B (found by an outside attack, 2026-11-30; src/magazine/rounds.rs
/// `drain`): a flush kept every round of a magazine listed until the whole
/// magazine was done, but each round was already back on its slab's lists,
/// so another thread could take it again, hand it out and see its user
/// free it while the magazine still listed it. If that user's object held
/// the tag value at bytes 4..8 (any program may store it), the exact check
/// found it in the magazine and refused the free as a `DoubleFree`, and
/// `GlobalAlloc` and the shim abort on that. Here one thread fills the
/// depot (a handle's batch of 64 B objects, freed, the handle released),
/// one empties it (`reclaim`) in a loop, and one allocates on the shared
/// path, stores the tag and frees once. On 1aaac3a a refusal came within
/// the 3 s budget in every run (5 of 5 with `--release`). Expected: no
/// refusal; the heap validates.
#[test]
fn extra_b_a_live_object_holding_the_tag_is_freed_while_its_old_magazine_drains() {
    let _serial = HEAVY.lock();
    let mem = Mem::new(64 * MIB);
    let heap = heap(&mem, 2);
    let stop = AtomicBool::new(false);
    let refused = Mutex::new(None);
    let budget = Duration::from_secs(3);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let mut h = heap.handle_for(0).unwrap();
                let v: Vec<_> = (0..256).map(|_| h.alloc(64).unwrap()).collect();
                for p in v {
                    unsafe { h.try_free(p.as_ptr()) }.unwrap();
                }
            }
        });
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                heap.reclaim();
            }
        });
        let t0 = Instant::now();
        while t0.elapsed() < budget {
            let Some(p) = heap.alloc(64) else { continue };
            let p = p.as_ptr();
            forge_free_mark(p, 64);
            if let Err(e) = unsafe { heap.try_free(p) } {
                *refused.lock().unwrap() = Some(e);
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(
        refused.into_inner().unwrap(),
        None,
        "the free of a live 64 B object holding the tag was refused"
    );
    heap.reclaim();
    heap.validate().unwrap();
}
