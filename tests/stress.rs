//! Real threads: random 4 KiB – 4 MiB blocks on a 64 MiB heap with occupancy
//! held between 40 % and 90 %, a quarter of the frees done by another thread,
//! every block checked by a shadow bitmap and a tag at both ends.

mod common;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use common::{block_size, Mem, MIB, PAGE};
use magbuddy::Heap;
use magbuddy_checkers::{words_needed, ShadowBitmap};
use rand::{rngs::SmallRng, Rng, SeedableRng};

const HEAP: usize = 64 * MIB;

struct Shared<'h> {
    heap: &'h Heap,
    shadow: ShadowBitmap<'h>,
    live_bytes: AtomicUsize,
    capacity: usize,
    mailboxes: Vec<Mutex<Vec<(usize, usize)>>>,
    allocs: AtomicU64,
    failures: AtomicU64,
    refused_by_order: [AtomicU64; 11],
}

fn tag(p: usize) -> u64 {
    (p as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn release(s: &Shared, h: &mut magbuddy::Handle, p: usize, b: usize) {
    // SAFETY: the block is live and ours; its first and last word are in it.
    unsafe {
        assert_eq!(*(p as *const u64), tag(p), "block {p:#x} was overwritten");
        if b >= 16 {
            let tail = *((p + b - 8) as *const u64);
            assert_eq!(tail, !tag(p), "block {p:#x} tail overwritten");
        }
    }
    s.shadow.on_free_addr(p, b).unwrap();
    s.live_bytes.fetch_sub(b, Ordering::Relaxed);
    unsafe { h.free(p as *mut u8) };
}

fn worker(s: &Shared, me: usize, threads: usize, ops: usize) {
    let mut h = s.heap.handle().expect("a handle per thread");
    let mut rng = SmallRng::seed_from_u64(me as u64 * 7919);
    let mut mine: Vec<(usize, usize)> = Vec::new();
    let mut done = 0;
    let mut idle = 0u64;
    while done < ops {
        let occupancy = s.live_bytes.load(Ordering::Relaxed) as f64 / s.capacity as f64;
        let want_alloc = if occupancy < 0.4 {
            true
        } else if occupancy > 0.9 {
            false
        } else {
            rng.gen_bool(0.5)
        };
        let size = (PAGE << rng.gen_range(0..=10)) - rng.gen_range(0..PAGE);
        let b = block_size(size);
        // Reserve the budget first so occupancy never exceeds 90 %, even with
        // every thread allocating a large block at once.
        let budget = (want_alloc || mine.is_empty()) && {
            let before = s.live_bytes.fetch_add(b, Ordering::Relaxed);
            let fits = (before + b) as f64 <= 0.9 * s.capacity as f64;
            if !fits {
                s.live_bytes.fetch_sub(b, Ordering::Relaxed);
            }
            fits
        };
        if budget {
            done += 1;
            match h.alloc(size) {
                Some(p) => {
                    let p = p.as_ptr() as usize;
                    s.shadow.on_alloc_addr(p, b).unwrap();
                    unsafe {
                        *(p as *mut u64) = tag(p);
                        if b >= 16 {
                            *((p + b - 8) as *mut u64) = !tag(p);
                        }
                    }
                    s.allocs.fetch_add(1, Ordering::Relaxed);
                    if rng.gen_bool(0.25) && threads > 1 {
                        let other = (me + rng.gen_range(1..threads)) % threads;
                        s.mailboxes[other].lock().unwrap().push((p, b));
                    } else {
                        mine.push((p, b));
                    }
                }
                None => {
                    s.live_bytes.fetch_sub(b, Ordering::Relaxed);
                    s.failures.fetch_add(1, Ordering::Relaxed);
                    s.refused_by_order[(b.trailing_zeros() as usize).saturating_sub(12)]
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        } else if !mine.is_empty() {
            done += 1;
            let (p, b) = mine.swap_remove(rng.gen_range(0..mine.len()));
            release(s, &mut h, p, b);
        } else {
            // Everything this thread could free sits in others' mailboxes,
            // perhaps of threads that have finished: take some over.
            let victim = (me + 1 + (idle as usize % threads)) % threads;
            mine.append(&mut s.mailboxes[victim].lock().unwrap());
            idle += 1;
            assert!(idle < 100_000_000, "thread {me} starved");
            std::thread::yield_now();
        }
        if mine.is_empty() || rng.gen_ratio(1, 16) {
            mine.append(&mut s.mailboxes[me].lock().unwrap());
        }
    }
    for (p, b) in mine
        .drain(..)
        .chain(s.mailboxes[me].lock().unwrap().drain(..))
    {
        release(s, &mut h, p, b);
    }
}

fn run(threads: usize, total_ops: usize) {
    let mem = Mem::new(HEAP);
    let heap = unsafe { Heap::init(mem.ptr(), HEAP, threads) }.unwrap();
    let initial = heap.stats();
    let words: Vec<std::sync::atomic::AtomicU64> = (0..words_needed(HEAP, 8))
        .map(|_| Default::default())
        .collect();
    let shared = Shared {
        heap,
        shadow: ShadowBitmap::new(mem.ptr() as usize, HEAP, 8, HEAP, &words).unwrap(),
        live_bytes: AtomicUsize::new(0),
        capacity: initial.usable_bytes,
        mailboxes: (0..threads).map(|_| Mutex::new(Vec::new())).collect(),
        allocs: AtomicU64::new(0),
        failures: AtomicU64::new(0),
        refused_by_order: Default::default(),
    };
    std::thread::scope(|sc| {
        for me in 0..threads {
            let shared = &shared;
            sc.spawn(move || worker(shared, me, threads, total_ops / threads));
        }
    });
    // Frees left in mailboxes after their owner finished.
    let mut h = heap.handle().unwrap();
    for mb in &shared.mailboxes {
        for (p, b) in mb.lock().unwrap().drain(..) {
            release(&shared, &mut h, p, b);
        }
    }
    drop(h);
    assert!(shared.shadow.is_empty());
    // Released handles left their slabs abandoned; empty ones go back now.
    heap.reclaim();
    heap.validate().unwrap();
    let end = heap.stats();
    assert_eq!(end.free_bytes, initial.free_bytes, "everything came back");
    assert_eq!(
        end.free_blocks, initial.free_blocks,
        "and coalesced into the same blocks"
    );
    let largest = PAGE << initial.largest_free_order().unwrap();
    let big = heap
        .alloc(largest)
        .expect("largest block available after the run");
    unsafe { heap.free(big.as_ptr()) };
    let (a, f) = (
        shared.allocs.load(Ordering::Relaxed),
        shared.failures.load(Ordering::Relaxed),
    );
    let retries: u64 = (0..threads).map(|c| heap.cpu_stats(c).cas_retries).sum();
    println!(
        "{threads} threads, {total_ops} ops: {a} allocations succeeded, {f} refused \
         (success ratio {:.3}), {retries} CAS retries; refused by order: {:?}",
        a as f64 / (a + f) as f64,
        shared
            .refused_by_order
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect::<Vec<_>>()
    );
    // At most 90 % of the heap is live, so ≥ 6 MiB are free whenever a page is
    // asked for: refusing one would be a false out-of-memory.
    assert_eq!(
        shared.refused_by_order[0].load(Ordering::Relaxed),
        0,
        "page refused below 90 % occupancy"
    );
}

#[test]
fn stress_2_threads() {
    run(2, 1_000_000);
}

#[test]
fn stress_4_threads() {
    run(4, 1_000_000);
}

#[test]
fn stress_8_threads() {
    run(8, 1_000_000);
}
