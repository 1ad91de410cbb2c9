//! In-place grow (`Heap::resize_in_place`) racing an allocation that wants
//! the grower's buddy and the free of that buddy.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use magbuddy::PAGE_SIZE;
use magbuddy_checkers::Event;
use shuttle::rand::{thread_rng, Rng};

use super::heap::{finish, free, WIDE};
use crate::{Tally, Via, World};

/// Orders that can grow by one in [`WIDE`] (4-page chunks, 16-page areas):
/// 0 and 1 inside a chunk word (reserve, then the chunk CAS), 2 from a
/// chunk root into a top leaf (area word, then chunk word), 3 in the area
/// word, 4 (a whole area) into a run of two areas.
const ORDERS: [u32; 5] = [0, 1, 2, 3, 4];

/// One schedule: the main thread allocates two buddies `x` (lower) and `n`
/// of a random order `k` on the shared path (and frees what else it had to
/// take first); then thread 0 grows `x` to
/// order `k + 1` (and shrinks it back, then frees it), thread 1 allocates
/// two blocks of order `k` (it may get `n`'s pages once they are free),
/// thread 2 frees `n` and allocates one block of order `k`. Every block
/// goes through the shadow bitmap (a grow is recorded as the old block
/// freed and the grown one allocated, after the call; a shrink before it,
/// as a free is), so two owners of a page fail the schedule; the end checks
/// `validate()`, the trace replay, the free-byte balance and that every
/// buddy merged back.
pub fn grow_races(tally: &Tally) {
    let world = Arc::new(World::new(WIDE, 1, 4));
    let start_blocks = world.heap().stats().free_blocks;
    let k = ORDERS[thread_rng().gen_range(0..ORDERS.len())];
    let size = PAGE_SIZE << k;
    // The main thread (client 3) allocates until two blocks are buddies
    // (the usable range starts after the metadata, so the first block may
    // be an upper half) and frees the others.
    let mut setup_buf = vec![Event::EMPTY; 16];
    let (x, n) = {
        let mut main = world.client(3, &mut setup_buf);
        let heap = world.heap();
        let mut via = Via::Shared(heap);
        let mut got: Vec<usize> = Vec::new();
        let pair = loop {
            let a = main
                .alloc(size, || heap.alloc(size))
                .expect("room for a pair");
            let lower = got.iter().position(|&b| {
                let lo = a.min(b);
                lo % (2 * size) == 0 && a.max(b) == lo + size
            });
            if let Some(i) = lower {
                let b = got.swap_remove(i);
                break (a.min(b), a.max(b));
            }
            got.push(a);
        };
        for a in got {
            free(&mut main, &mut via, a, size);
        }
        pair
    };
    // Grown, refused, buddy taken by thread 1.
    let seen: Arc<[AtomicU64; 3]> = Arc::default();
    let counts = seen.clone();
    let run = world.run(3, 16, move |t, c| {
        let heap = c.world_heap();
        let mut via = Via::Shared(heap);
        match t {
            0 => {
                let p = NonNull::new(x as *mut u8).unwrap();
                // SAFETY: `x` is this thread's block (handed over by main).
                match unsafe { heap.resize_in_place(p, 2 * size, 1) } {
                    Ok(Some(got)) => {
                        assert_eq!(got, 2 * size);
                        c.freeing(x, size);
                        c.allocated(p, 2 * size);
                        counts[0].fetch_add(1, Relaxed);
                        shuttle::thread::yield_now();
                        c.freeing(x, 2 * size);
                        c.allocated(p, size);
                        // SAFETY: ours; the upper half was given up above.
                        let back = unsafe { heap.resize_in_place(p, size, 1) };
                        assert_eq!(back, Ok(Some(size)), "shrink back");
                    }
                    Ok(None) => {
                        counts[1].fetch_add(1, Relaxed);
                    }
                    Err(e) => panic!("grow of a live block refused as bad: {e}"),
                }
                free(c, &mut via, x, size);
            }
            1 => {
                let got: Vec<_> = (0..2)
                    .filter_map(|_| c.alloc(size, || heap.alloc(size)))
                    .collect();
                if got.contains(&n) {
                    counts[2].fetch_add(1, Relaxed);
                }
                for a in got {
                    free(c, &mut via, a, size);
                }
            }
            _ => {
                free(c, &mut via, n, size);
                if let Some(a) = c.alloc(size, || heap.alloc(size)) {
                    free(c, &mut via, a, size);
                }
            }
        }
    });
    let all = crate::Run {
        trace: run.trace.iter().chain(setup_buf.iter()).copied().collect(),
        ops: run.ops,
    };
    finish(&world, &all, start_blocks, tally);
    tally.add("grown in place", seen[0].load(Relaxed));
    let level = match k {
        0 | 1 => "grown in place: chunk word",
        2 => "grown in place: chunk root into a top leaf",
        3 => "grown in place: area word",
        _ => "grown in place: area into a run",
    };
    tally.add(level, seen[0].load(Relaxed));
    tally.add("grow refused", seen[1].load(Relaxed));
    tally.add("racing allocation took the buddy", seen[2].load(Relaxed));
}
