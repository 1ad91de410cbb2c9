//! A stale free racing the reuse of its block inside the heap (found by
//! the random lin suite, `verify/regressions/`): a program frees a 16 KiB
//! block twice while another thread's allocation takes the same block from
//! the tree to make a slab or to fill a page magazine.
//!
//! A double free racing a reallocation *to a user* cannot be told from a
//! legitimate free, so the stale free may free the new owner's block. But a
//! block on its way into a slab or a magazine belongs to no user yet: a
//! free that lands then must be refused. Before the fix the tree's
//! allocation published a live head first and the slab or magazine wrote
//! its own descriptor after, so the stale free in between released the
//! block to the tree while the slab or magazine kept it: one block, two
//! owners.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use magbuddy::testing::{yield_in_claims, FREE_TAG};
use magbuddy::{FreeError, HeapConfig, PAGE_SIZE};
use shuttle::rand::{thread_rng, Rng};

use super::small_config;
use crate::{OwnedHeap, Tally};

/// What the racing allocation turns the block into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reuse {
    /// A slab of 2 KiB objects, made by a shared-path allocation.
    Slab,
    /// A page-magazine round, taken by a handle's allocation of 16 KiB.
    Magazine,
}

/// One schedule: a 16 KiB block is allocated and freed on the shared path;
/// then thread S frees it again (stale) while thread A allocates (`reuse`).
/// S may only succeed if A was handed that very block (then A's own free is
/// the refused one). Afterwards A frees what it got, and the heap must be
/// whole: `validate()`, no corruption, no slab left after `reclaim()`, and
/// as many free blocks as at the start.
pub fn stale_free_races_reuse(reuse: Reuse, tally: &Tally) {
    let config = small_config(1);
    let owned = Arc::new(OwnedHeap::with_config(config, 2));
    let heap = owned.heap();
    let start = heap.stats().free_blocks;
    let block = 4 * PAGE_SIZE;
    let stale = heap.alloc(block).expect("room").as_ptr() as usize;
    // SAFETY: allocated above, not used.
    unsafe { heap.try_free(stale as *mut u8) }.expect("the first free");
    let got = Arc::new(AtomicUsize::new(0));
    let s = {
        let owned = owned.clone();
        shuttle::thread::spawn(move || {
            // A random delay spreads the free over the allocation's steps
            // (otherwise the random scheduler mostly runs it first).
            for _ in 0..thread_rng().gen_range(0..32) {
                shuttle::thread::yield_now();
            }
            // SAFETY: a stale pointer: the heap must refuse it or, if the
            // block went to a user meanwhile, free that user's block.
            unsafe { owned.heap().try_free(stale as *mut u8) }
        })
    };
    let a = {
        let (owned, got) = (owned.clone(), got.clone());
        shuttle::thread::spawn(move || {
            let heap = owned.heap();
            let p = match reuse {
                Reuse::Slab => heap.alloc(2048),
                Reuse::Magazine => heap.handle_for(0).expect("CPU 0").alloc(block),
            };
            got.store(p.expect("room").as_ptr() as usize, SeqCst);
        })
    };
    let stale_result = s.join().unwrap();
    a.join().unwrap();
    let p = got.load(SeqCst);
    // SAFETY: A's block (or object), not used; a stale free that won may
    // have freed it already, which the heap then refuses.
    let own_result = unsafe { heap.try_free(p as *mut u8) };
    match (stale_result, own_result) {
        (Err(e), Ok(())) => {
            assert!(
                matches!(e, FreeError::DoubleFree(q) | FreeError::NotAllocated(q) if q == stale),
                "{reuse:?}: the stale free of {stale:#x} names it as free: {e}"
            );
            tally.add("stale free refused", 1);
        }
        (Ok(()), Err(FreeError::DoubleFree(q) | FreeError::NotAllocated(q)))
            if p == stale && q == p =>
        {
            tally.add("stale free took the block handed to the user", 1);
        }
        other => {
            panic!("{reuse:?}: stale free of {stale:#x} and the user's free of {p:#x}: {other:?}")
        }
    }
    if p == stale {
        tally.add("block reused at the stale address", 1);
    }
    heap.reclaim();
    heap.validate().expect("validate");
    assert_eq!(heap.corruptions().0, 0, "{reuse:?}: corruptions");
    assert_eq!(heap.slabs_in_use(), 0, "{reuse:?}: slabs left");
    assert_eq!(heap.stats().free_blocks, start, "{reuse:?}: merged back");
}

/// One schedule: a stale free of a 64 B object whose slab goes back to the
/// tree and comes back as a slab of 2 KiB objects while the free runs (the
/// heap has one area, so the new slab is at the same address). Thread S
/// frees the object again, through a handle if `handle`, else on the shared
/// path; thread A runs `reclaim()` (which releases the empty slab), takes
/// every 2 KiB object of the new slab and fills them. The stale pointer is inside A's object, never
/// its start, so the free must be refused; A's object must stay A's, and the
/// heap whole. A free that read the old slab's descriptor and touched the
/// object after the reuse would compute its bit and return-list index in the
/// old class: a corrupted slab, or A's object handed out twice.
pub fn stale_object_free_races_slab_reuse(handle: bool, tally: &Tally) {
    /// 2 KiB objects in a 16 KiB slab.
    const OBJECTS: usize = 8;
    /// Claims yield while the schedule runs (see `yield_in_claims`).
    struct Yielding;
    impl Drop for Yielding {
        fn drop(&mut self) {
            yield_in_claims(false);
        }
    }
    yield_in_claims(true);
    let _yielding = Yielding;
    let config = small_config(1);
    let owned = Arc::new(OwnedHeap::with_config(config, 1));
    let heap = owned.heap();
    let start = heap.stats().free_blocks;
    // Two objects, so that the stale one is not at the slab's start.
    let first = heap.alloc(64).expect("room").as_ptr() as usize;
    let stale = heap.alloc(64).expect("room").as_ptr() as usize;
    for p in [first, stale] {
        // SAFETY: allocated above, not used.
        unsafe { heap.try_free(p as *mut u8) }.expect("the first free");
    }
    let got = Arc::new(AtomicUsize::new(0));
    let s = {
        let owned = owned.clone();
        shuttle::thread::spawn(move || {
            let heap = owned.heap();
            for _ in 0..thread_rng().gen_range(0..8) {
                shuttle::thread::yield_now();
            }
            // SAFETY: a stale pointer: the heap must refuse it.
            if handle {
                let mut h = heap.handle_for(0).expect("CPU 0");
                unsafe { h.try_free(stale as *mut u8) }
            } else {
                unsafe { heap.try_free(stale as *mut u8) }
            }
        })
    };
    let a = {
        let (owned, got) = (owned.clone(), got.clone());
        shuttle::thread::spawn(move || {
            let heap = owned.heap();
            heap.reclaim();
            // The whole new slab, filled: no byte of the old one survives.
            let objects: Vec<usize> = (0..OBJECTS)
                .map(|_| heap.alloc(2048).expect("room").as_ptr() as usize)
                .collect();
            for &p in &objects {
                // SAFETY: a live 2 KiB object of ours.
                unsafe { (p as *mut u8).write_bytes(0xa5, 2048) };
            }
            got.store(objects[0], SeqCst);
            objects
        })
    };
    let stale_result = s.join().unwrap();
    let objects = a.join().unwrap();
    let p = got.load(SeqCst);
    if p < stale && stale < p + 2048 {
        tally.add("stale object inside the new slab's object", 1);
    }
    assert!(
        stale_result.is_err(),
        "handle {handle}: the stale free of {stale:#x} succeeded (a 2 KiB object at {p:#x})"
    );
    tally.add("stale object free refused", 1);
    for p in objects {
        // SAFETY: A's object, not used.
        unsafe { heap.try_free(p as *mut u8) }.expect("the new owner's free");
    }
    heap.reclaim();
    heap.validate().expect("validate");
    assert_eq!(heap.corruptions().0, 0, "handle {handle}: corruptions");
    assert_eq!(heap.slabs_in_use(), 0, "handle {handle}: slabs left");
    assert_eq!(
        heap.stats().free_blocks,
        start,
        "handle {handle}: merged back"
    );
}

/// Rounds per magazine in [`forged_tag_free_races_drain`].
const DRAIN_ROUNDS: usize = 4;

/// One schedule (found by an outside attack): CPU 0's handle frees four
/// 64 B objects into its magazine and is released, so the magazine goes to
/// the depot; then thread D empties the depot (`reclaim`) while thread U
/// allocates four objects on the shared path, stores the free tag in each,
/// as any program may, and frees each once. Every free must succeed: a
/// flush that put a round back on its slab's lists while the magazine still
/// listed it made the exact check behind the tag take U's live object for
/// a free one. Afterwards the heap must be whole.
pub fn forged_tag_free_races_drain(tally: &Tally) {
    let config = HeapConfig {
        magazine_rounds: Some(DRAIN_ROUNDS),
        depot_magazines: Some(2),
        ..small_config(1)
    };
    // Two areas: room for a fresh slab beside the old one, so the shared
    // path never has to wait for the slab the drain holds.
    let owned = Arc::new(OwnedHeap::with_config(config, 2));
    let heap = owned.heap();
    let start = heap.stats().free_blocks;
    let mut h = heap.handle_for(0).expect("CPU 0");
    let old: Vec<usize> = (0..DRAIN_ROUNDS)
        .map(|_| h.alloc(64).expect("room").as_ptr() as usize)
        .collect();
    for &p in &old {
        // SAFETY: allocated above, not used.
        unsafe { h.try_free(p as *mut u8) }.expect("the first free");
    }
    drop(h);
    let drained = Arc::new(AtomicBool::new(false));
    let d = {
        let (owned, drained) = (owned.clone(), drained.clone());
        shuttle::thread::spawn(move || {
            owned.heap().reclaim();
            drained.store(true, SeqCst);
        })
    };
    let u = {
        let (owned, drained) = (owned.clone(), drained.clone());
        shuttle::thread::spawn(move || {
            let heap = owned.heap();
            let mut reused = 0;
            for _ in 0..DRAIN_ROUNDS {
                let p = heap.alloc(64).expect("room").as_ptr();
                if !drained.load(SeqCst) && old.contains(&(p as usize)) {
                    reused += 1;
                }
                // SAFETY: a live 64 B object of ours.
                unsafe { p.add(4).cast::<u32>().write_unaligned(FREE_TAG) };
                // SAFETY: as above; freed once.
                let r = unsafe { heap.try_free(p) };
                assert_eq!(r, Ok(()), "the free of a live object holding the tag");
            }
            reused
        })
    };
    d.join().unwrap();
    tally.add("old round reused during the drain", u.join().unwrap());
    heap.reclaim();
    heap.validate().expect("validate");
    assert_eq!(heap.corruptions().0, 0, "corruptions");
    assert_eq!(heap.stats().free_blocks, start, "merged back");
}
