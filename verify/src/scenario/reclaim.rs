//! `Heap::reclaim` racing a shared-path allocation (the soundness issue's
//! bug 7): `reclaim` adopts every abandoned slab with the SHARED token and
//! republishes the ones still in use only after it walked the whole stack,
//! so an allocation that pops the stack meanwhile finds it empty, finds the
//! tree full and returns `None` although every slab holds a free object.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use magbuddy::PAGE_SIZE;

use super::small_config;
use crate::{OwnedHeap, Tally};

/// One schedule: a heap of three [`super::SMALL`] areas (one 16 KiB slab each)
/// filled with 2 KiB objects (8 per slab) on the shared path, then one
/// object of each slab freed, so every slab is abandoned with one free
/// object and the tree has no room for another slab. Thread R runs
/// `reclaim()` once while thread A allocates a 2 KiB object on the shared
/// path, which must succeed (the no-false-OOM contract), and frees it.
pub fn reclaim_races_shared_alloc(tally: &Tally) {
    let config = small_config(1);
    let owned = Arc::new(OwnedHeap::with_config(config, 3));
    let heap = owned.heap();
    let slab = 4 * PAGE_SIZE;
    let mut live = Vec::new();
    while let Some(p) = heap.alloc(2048) {
        live.push(p.as_ptr() as usize);
    }
    assert!(heap.alloc(slab).is_none(), "no room for another slab");
    let mut slabs: Vec<usize> = live.iter().map(|&p| p & !(slab - 1)).collect();
    slabs.dedup();
    assert!(slabs.len() >= 2, "{} slabs", slabs.len());
    // The first object of each slab back: each slab abandoned with one
    // free object.
    for &s in &slabs {
        let i = live.iter().position(|&p| p & !(slab - 1) == s).unwrap();
        // SAFETY: allocated above, not used.
        unsafe { heap.try_free(live.swap_remove(i) as *mut u8) }.unwrap();
    }
    let free_objects = slabs.len();
    let reclaiming = Arc::new(AtomicBool::new(false));
    let overlapped = Arc::new(AtomicBool::new(false));
    let r = {
        let (owned, reclaiming) = (owned.clone(), reclaiming.clone());
        shuttle::thread::spawn(move || {
            reclaiming.store(true, Relaxed);
            owned.heap().reclaim();
            reclaiming.store(false, Relaxed);
        })
    };
    let a = {
        let (owned, reclaiming, overlapped) =
            (owned.clone(), reclaiming.clone(), overlapped.clone());
        shuttle::thread::spawn(move || {
            let heap = owned.heap();
            let before = reclaiming.load(Relaxed);
            let p = heap.alloc(2048);
            if before || reclaiming.load(Relaxed) {
                overlapped.store(true, Relaxed);
            }
            let p = p.unwrap_or_else(|| {
                panic!(
                    "false OOM: shared alloc(2048) returned None while reclaim() ran, \
                     with {free_objects} objects free"
                )
            });
            // SAFETY: just allocated, not used.
            unsafe { heap.try_free(p.as_ptr()) }.unwrap();
        })
    };
    r.join().unwrap();
    a.join().unwrap();
    tally.add(
        "allocations overlapping a reclaim",
        overlapped.load(Relaxed) as u64,
    );
    for p in live {
        // SAFETY: allocated above, not used.
        unsafe { heap.try_free(p as *mut u8) }.unwrap();
    }
    heap.reclaim();
    heap.validate().unwrap();
}
