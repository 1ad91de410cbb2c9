//! The counting facade (`--cfg magbuddy_count_atomics`) counts what the code
//! says it does: each wrapper one access of the right kind, per thread, and
//! the paths whose read-modify-writes the docs promise (a handle's magazine
//! hits, SpinHeap's lock) exactly those. Empty in every other build:
//!
//! ```text
//! RUSTFLAGS="--cfg magbuddy_count_atomics" CARGO_TARGET_DIR=target/count-atomics \
//!   cargo test --release -p magbuddy --features std --test atomic_counts
//! ```
#![cfg(magbuddy_count_atomics)]

use magbuddy::baseline::{LockMode, SpinHeap};
use magbuddy::sync::{
    counts, for_each_site, raw, reset_sites, AtomicBool, AtomicCounts, AtomicU32, AtomicU64,
    Ordering,
};
use magbuddy::{Heap, HeapConfig};

/// This thread's accesses during `f` (its result dropped).
fn counted<R>(f: impl FnOnce() -> R) -> AtomicCounts {
    let before = counts().expect("a counting build");
    let _ = f();
    counts().expect("a counting build").since(before)
}

fn c(rmw: u64, cas_failed: u64, stores: u64, loads: u64) -> AtomicCounts {
    AtomicCounts {
        rmw,
        cas_failed,
        stores,
        loads,
    }
}

#[test]
fn each_wrapper_counts_one_access_of_its_kind() {
    let a = AtomicU64::new(1);
    assert_eq!(counted(|| a.load(Ordering::Relaxed)), c(0, 0, 0, 1));
    assert_eq!(counted(|| a.store(2, Ordering::Release)), c(0, 0, 1, 0));
    assert_eq!(counted(|| a.swap(3, Ordering::AcqRel)), c(1, 0, 0, 0));
    assert_eq!(counted(|| a.fetch_add(1, Ordering::Relaxed)), c(1, 0, 0, 0));
    let fail = || a.compare_exchange(0, 9, Ordering::AcqRel, Ordering::Acquire);
    assert_eq!(counted(fail), c(1, 1, 0, 0), "a failed CAS is an RMW");
    let ok = || a.compare_exchange_weak(4, 5, Ordering::AcqRel, Ordering::Relaxed);
    let n = counted(ok);
    assert!(n == c(1, 0, 0, 0) || n == c(1, 1, 0, 0), "{n:?}");
    // `fetch_update`: one load, then one CAS per attempt (one, alone).
    let b = AtomicU32::new(7);
    let up = || b.fetch_update(Ordering::AcqRel, Ordering::Acquire, |x| Some(x + 1));
    let n = counted(up);
    assert_eq!((n.loads, n.rmw - n.cas_failed), (1, 1), "{n:?}");
    assert_eq!(b.load(Ordering::Relaxed), 8);
    let none = || b.fetch_update(Ordering::AcqRel, Ordering::Acquire, |_| None);
    assert_eq!(counted(none), c(0, 0, 0, 1));
    let f = AtomicBool::new(false);
    assert_eq!(
        counted(|| f.fetch_or(true, Ordering::AcqRel)),
        c(1, 0, 0, 0)
    );
    // Plain access to an owned atomic is no atomic access.
    let mut g = AtomicU32::new(1);
    assert_eq!(counted(|| *g.get_mut() += 1), c(0, 0, 0, 0));
    assert_eq!(g.into_inner(), 2);
}

/// The overlay type keeps the hardware atomic's layout (it is laid over
/// freed objects and slab bitmaps) and is counted like the others.
#[test]
fn raw_atomics_overlay_and_count() {
    assert_eq!(size_of::<raw::AtomicU32>(), 4);
    assert_eq!(align_of::<raw::AtomicU32>(), 4);
    assert_eq!(size_of::<AtomicU64>(), 8);
    let r = raw::AtomicU32::new(0);
    assert_eq!(counted(|| r.fetch_or(2, Ordering::AcqRel)), c(1, 0, 0, 0));
    assert_eq!(counted(|| r.load(Ordering::Acquire)), c(0, 0, 0, 1));
}

/// Counters are per thread: another thread's accesses never show here.
#[test]
fn counts_are_per_thread() {
    let a = AtomicU64::new(0);
    let n = counted(|| {
        std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..1000 {
                    a.fetch_add(1, Ordering::Relaxed);
                }
            });
        });
    });
    assert_eq!(n, c(0, 0, 0, 0));
}

/// A handle's alloc+free of a small object that hits the loaded magazine
/// does no atomic read-modify-write (`src/magazine/mod.rs`: "without any
/// atomic read-modify-write"), only five stores, all to lines of this CPU's
/// magazine or of the object itself: the magazine's count on the pop, the
/// object's free tag cleared (`slab::hand_out_object`) and set again
/// (`Heap::fast_claim`), the slot and the count on the push. A page's pair
/// has one RMW, before its magazine push: the free claims the block's
/// descriptor with a CAS (`Heap::claim_block`, which decides between
/// racing frees of the block), and the allocation stores the descriptor
/// back as a live head (`Heap::hand_out_block_at`): one RMW, four stores.
#[test]
fn magazine_hits_do_no_read_modify_write() {
    let len = Heap::min_region_len(HeapConfig::new(1));
    let mut ram = vec![0u8; len];
    // SAFETY: `ram` is ours and outlives the heap's use.
    let heap = unsafe { Heap::init(ram.as_mut_ptr(), len, 1) }.unwrap();
    let mut h = heap.handle_for(0).unwrap();
    for (size, rmw, stores) in [(64, 0, 5), (4096, 1, 4)] {
        // Warm: the first pair loads a magazine of the class.
        let p = h.alloc(size).unwrap();
        // SAFETY: `p` came from this heap and is not used afterwards.
        unsafe { h.free(p.as_ptr()) };
        let n = counted(|| {
            for _ in 0..10 {
                let p = h.alloc(size).unwrap();
                // SAFETY: as above.
                unsafe { h.free(p.as_ptr()) };
            }
        });
        assert_eq!(n.rmw, 10 * rmw, "{size} B: {n:?}");
        assert_eq!(n.cas_failed, 0, "{size} B: {n:?}");
        assert_eq!(n.stores, 10 * stores, "{size} B: {n:?}");
    }
    // Per site: the small pair's stores are the magazine's (count, slot)
    // and the object's tag; the sites add up to the totals.
    reset_sites();
    let n = counted(|| {
        let p = h.alloc(64).unwrap();
        // SAFETY: as above.
        unsafe { h.free(p.as_ptr()) };
    });
    let mut sum = AtomicCounts::default();
    let mut files = Vec::new();
    for_each_site(|loc, c| {
        sum = sum.plus(c);
        if c.stores > 0 {
            files.push(loc.file());
        }
    });
    assert_eq!(sum, n);
    files.sort();
    files.dedup();
    assert_eq!(
        files,
        [
            "src/heap/free.rs",
            "src/magazine/rounds.rs",
            "src/slab/mark.rs"
        ]
    );
}

/// SpinHeap: one lock acquisition (one CAS, uncontended) and one release
/// store per call, so two RMWs per pair on the lock's line.
#[test]
fn spinheap_takes_its_lock_once_per_call() {
    let mut ram = vec![0u8; 4 << 20];
    // SAFETY: `ram` is ours and outlives the heap's use.
    let heap = unsafe { SpinHeap::init(ram.as_mut_ptr(), ram.len(), 1, LockMode::Spin) }.unwrap();
    for size in [64, 4096] {
        let p = heap.alloc(size).unwrap();
        // SAFETY: `p` came from this heap and is not used afterwards.
        unsafe { heap.free(p.as_ptr()) };
        let n = counted(|| {
            for _ in 0..10 {
                let p = heap.alloc(size).unwrap();
                // SAFETY: as above.
                unsafe { heap.free(p.as_ptr()) };
            }
        });
        assert_eq!((n.rmw, n.cas_failed), (20, 0), "{size} B: {n:?}");
        assert!(n.stores >= 20, "{size} B: at least the releases: {n:?}");
    }
}
