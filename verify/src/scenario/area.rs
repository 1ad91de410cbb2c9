//! Bodies over one area's words alone (no heap, no page descriptors), for
//! the buddy layer's own contract.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use magbuddy::sync::AtomicU64;
use magbuddy::testing::AreaView;

use super::SMALL;
use crate::Tally;

/// One [`SMALL`] area: its area word and two chunk words.
struct Words {
    top: AtomicU64,
    chunks: [AtomicU64; 2],
    frees: AtomicU64,
}

impl Words {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            top: AtomicU64::new(0),
            chunks: [AtomicU64::new(0), AtomicU64::new(0)],
            frees: AtomicU64::new(0),
        })
    }

    fn area(&self) -> AreaView<'_> {
        AreaView::new(&self.top, &self.chunks, &self.frees, SMALL)
    }

    /// Quiet-point check: well formed, invariant R, and everything free
    /// again (the whole area allocatable as one block).
    fn assert_all_free(&self) {
        let area = self.area();
        if let Err(e) = area.check() {
            panic!("area words inconsistent: {e}");
        }
        assert_eq!(area.area_word(), 0, "area word back to free");
        assert_eq!(area.alloc(2), Some(0), "the whole area merged back");
        assert!(area.free(0, 2));
    }
}

fn spawn(f: impl FnOnce() + Send + 'static) -> shuttle::thread::JoinHandle<()> {
    shuttle::thread::spawn(f)
}

/// Double frees at the buddy layer: two threads free the same page and the
/// same pair while a third frees the page's buddy (a merge). `Area::free`
/// must refuse a block that is not allocated, so exactly one free of each
/// block succeeds and the words end all-free. (In the heap the page
/// descriptor's CAS stops double frees before they reach the tree; this is
/// the tree's own check behind it.)
pub fn area_double_free(tally: &Tally) {
    let w = Words::new();
    let area = w.area();
    let page = area.alloc(0).expect("page");
    let buddy = area.alloc(0).expect("buddy");
    let pair = area.alloc(1).expect("pair");
    assert_eq!(
        page ^ 1,
        buddy,
        "best fit puts the second page beside the first"
    );
    let wins = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let threads: Vec<_> = (0..3)
        .map(|t| {
            let (w, wins) = (w.clone(), wins.clone());
            spawn(move || {
                let area = w.area();
                if t == 2 {
                    assert!(area.free(buddy, 0), "the buddy's own free");
                    return;
                }
                let mut blocks = [(page, 0, 0), (pair, 1, 1)];
                if t == 1 {
                    blocks.reverse();
                }
                for (off, k, i) in blocks {
                    if area.free(off, k) {
                        wins[i].fetch_add(1, Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for (i, what) in ["page", "pair"].iter().enumerate() {
        let n = wins[i].load(Relaxed);
        assert_eq!(n, 1, "{n} frees of the {what} succeeded, exactly one may");
    }
    w.assert_all_free();
    tally.add("double frees refused by the tree", 2);
}

/// Invariant R seen from outside: while one thread frees a page, an
/// observer reads the page's chunk count and then the chunk word. A count
/// of 0 means nothing is allocated or in flight in that chunk (module docs
/// of `buddy`), so the chunk word must be all-zero by then. The other chunk
/// holds a pair throughout.
pub fn r_observer(tally: &Tally) {
    let w = Words::new();
    let area = w.area();
    let page = area.alloc(0).expect("page");
    let pair = area.alloc(1).expect("pair");
    let j = page >> SMALL.chunk_order();
    assert_ne!(j, pair >> SMALL.chunk_order());
    let seen = Arc::new(Mutex::new((0u64, 0u64)));
    let w2 = w.clone();
    let freer = spawn(move || assert!(w2.area().free(page, 0)));
    let (w3, s) = (w.clone(), seen.clone());
    let observer = spawn(move || {
        let area = w3.area();
        for _ in 0..3 {
            if area.used(j) == 0 {
                let word = area.chunk_word(j);
                assert_eq!(
                    word, 0,
                    "chunk {j} count is 0 but its word is {word:#b}: a block is still in it"
                );
                s.lock().unwrap().0 += 1;
            } else {
                s.lock().unwrap().1 += 1;
            }
        }
    });
    freer.join().unwrap();
    observer.join().unwrap();
    assert!(area.free(pair, 1));
    w.assert_all_free();
    let (zero, busy) = *seen.lock().unwrap();
    tally.add("observer saw the count at 0", zero);
    tally.add("observer saw the page counted", busy);
}
