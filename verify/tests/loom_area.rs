//! loom: one area of 4 pages in three words (area word + two 2-page chunk
//! words), so reservation in the area word and allocation in a chunk word
//! interleave exhaustively within the preemption bound. Each page carries a
//! loom-tracked cell written by its owner: if a free's Release did not reach
//! the next allocation's Acquire, loom reports a data race.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p verify --profile verify --test loom_area`
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use magbuddy::sync::AtomicU64;
use magbuddy::testing::{AreaView, Geometry};

struct World {
    top: AtomicU64,
    chunks: [AtomicU64; 2],
    frees: AtomicU64,
    pages: [UnsafeCell<u64>; 4],
}

impl World {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            top: AtomicU64::new(0),
            chunks: [AtomicU64::new(0), AtomicU64::new(0)],
            frees: AtomicU64::new(0),
            pages: core::array::from_fn(|_| UnsafeCell::new(0)),
        })
    }

    fn area(&self) -> AreaView<'_> {
        AreaView::new(
            &self.top,
            &self.chunks,
            &self.frees,
            Geometry::new(1, 2).unwrap(),
        )
    }

    /// Allocates order `k`, writes every page of the block, frees it.
    fn use_block(&self, k: u32, tag: u64) -> bool {
        let Some(off) = self.area().alloc(k) else {
            return false;
        };
        for p in off..off + (1 << k) {
            self.pages[p as usize].with_mut(|v| unsafe { *v = tag });
        }
        assert!(self.area().free(off, k));
        true
    }

    fn assert_all_free(&self) {
        use magbuddy::sync::Ordering::Relaxed;
        assert_eq!(self.top.load(Relaxed), 0, "area word back to free");
        assert!(
            self.chunks.iter().all(|c| c.load(Relaxed) == 0),
            "chunk words back to free"
        );
        assert_eq!(
            self.area().alloc(2),
            Some(0),
            "whole area allocatable again"
        );
    }
}

#[test]
fn page_and_pair_never_overlap_and_coalesce() {
    loom::model(|| {
        let w = World::new();
        let w2 = w.clone();
        let t = loom::thread::spawn(move || assert!(w2.use_block(0, 1)));
        assert!(w.use_block(1, 2), "a pair always fits beside one page");
        t.join().unwrap();
        w.assert_all_free();
    });
}

#[test]
fn whole_area_excludes_chunk_allocations() {
    loom::model(|| {
        let w = World::new();
        let w2 = w.clone();
        let t = loom::thread::spawn(move || w2.use_block(0, 1));
        let big = w.use_block(2, 2);
        let small = t.join().unwrap();
        assert!(big || small, "at least one of them succeeds");
        w.assert_all_free();
    });
}

#[test]
fn reuse_after_remote_free_is_ordered() {
    // Thread A allocates and writes a page, frees it; the main thread's later
    // allocation of the same page must happen-after A's write.
    loom::model(|| {
        let w = World::new();
        let w2 = w.clone();
        let t = loom::thread::spawn(move || w2.use_block(0, 1));
        let mine = w.use_block(0, 2) && w.use_block(0, 3);
        t.join().unwrap();
        assert!(mine);
        w.assert_all_free();
    });
}
