//! Real threads (std, core atomics) on a small heap: objects from 8 B to
//! 32 KiB through handles and the shared path, a third of the frees done by
//! another thread, every event recorded client-side (after alloc returned,
//! before free) and checked online by a shadow bitmap; afterwards the merged
//! trace is replayed in sequence order, the caches are reclaimed, and the
//! heap must validate with every byte back. Sized so that miri runs it too
//! (`-Zmiri-many-seeds` explores thread schedules and weak-memory outcomes).

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::thread;

use magbuddy::Geometry;
use magbuddy_checkers::{replay, words_needed, Event, Recorder, SeqClock, ShadowBitmap};
use verify_threads::{OwnedHeap, Rng};

const THREADS: usize = 3;
const OPS: usize = if cfg!(miri) { 40 } else { 20_000 };

fn size(rng: &mut Rng) -> usize {
    match rng.below(10) {
        0..=5 => 8 << rng.below(8),      // 8 B – 1 KiB: slabs
        6..=8 => 4096 << rng.below(3),   // 4 – 16 KiB: page magazines
        _ => 4096 << (3 + rng.below(2)), // 32 – 64 KiB: the tree
    }
}

#[test]
fn trace_replay_over_real_threads() {
    let g = Geometry::new(2, 4).unwrap();
    let owned = OwnedHeap::new(g, THREADS - 1, if cfg!(miri) { 3 } else { 12 });
    let heap = owned.heap();
    heap.reclaim();
    let free_before = heap.stats().free_bytes;
    let (base, len) = owned.region();
    let words: Vec<AtomicU64> = (0..words_needed(len, 8))
        .map(|_| AtomicU64::new(0))
        .collect();
    let shadow = ShadowBitmap::new(base, len, 8, 1 << 30, &words).unwrap();
    let clock = SeqClock::new();
    let mailbox: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());
    let cap = 2 * OPS + 64;
    let mut traces: Vec<Vec<Event>> = (0..THREADS).map(|_| vec![Event::EMPTY; cap]).collect();
    thread::scope(|s| {
        for (t, buf) in traces.iter_mut().enumerate() {
            let (shadow, clock, mailbox) = (&shadow, &clock, &mailbox);
            s.spawn(move || {
                let mut rec = Recorder::new(clock, buf);
                let mut handle = if t + 1 < THREADS {
                    heap.handle_for(t)
                } else {
                    None
                };
                let mut rng = Rng::new(t as u64 + 1);
                let mut live: Vec<(usize, usize)> = Vec::new();
                for _ in 0..OPS {
                    if live.len() < 8 && rng.below(2) == 0 {
                        let size = size(&mut rng);
                        let p = match handle.as_mut() {
                            Some(h) => h.alloc(size),
                            None => heap.alloc(size),
                        };
                        let Some(p) = p else { continue };
                        let bytes = heap.block_size(size);
                        // After alloc returned: shadow, then trace.
                        shadow.on_alloc(p.as_ptr(), bytes).unwrap();
                        rec.record_alloc(p.as_ptr(), bytes).unwrap();
                        // SAFETY: ours.
                        unsafe { p.as_ptr().write_bytes(t as u8, 8.min(bytes)) };
                        if rng.below(3) == 0 {
                            mailbox.lock().unwrap().push((p.as_ptr() as usize, bytes));
                        } else {
                            live.push((p.as_ptr() as usize, bytes));
                        }
                    } else {
                        let remote = mailbox.lock().unwrap().pop();
                        let Some((a, bytes)) = remote.or_else(|| live.pop()) else {
                            continue;
                        };
                        // Before free: trace, then shadow.
                        rec.record_free(a as *const u8, bytes).unwrap();
                        shadow.on_free_addr(a, bytes).unwrap();
                        // SAFETY: a live block we own (taken from the mailbox or our list).
                        let r = unsafe {
                            match handle.as_mut() {
                                Some(h) => h.try_free(a as *mut u8),
                                None => heap.try_free(a as *mut u8),
                            }
                        };
                        r.unwrap();
                    }
                }
                for (a, bytes) in live {
                    rec.record_free(a as *const u8, bytes).unwrap();
                    shadow.on_free_addr(a, bytes).unwrap();
                    // SAFETY: ours.
                    unsafe { heap.free(a as *mut u8) };
                }
            });
        }
    });
    // Left in the mailbox: freed by the main thread, recorded in its own log.
    let mut main_buf = vec![Event::EMPTY; cap];
    let mut rec = Recorder::new(&clock, &mut main_buf);
    for (a, bytes) in mailbox.into_inner().unwrap() {
        rec.record_free(a as *const u8, bytes).unwrap();
        shadow.on_free_addr(a, bytes).unwrap();
        // SAFETY: a live block nobody else holds any more.
        unsafe { heap.free(a as *mut u8) };
    }
    assert!(shadow.is_empty(), "online shadow: a block is still live");
    let mut all: Vec<Event> = traces.into_iter().flatten().chain(main_buf).collect();
    let replay_words: Vec<AtomicU64> = (0..words_needed(len, 8))
        .map(|_| AtomicU64::new(0))
        .collect();
    let replayed = ShadowBitmap::new(base, len, 8, 1 << 30, &replay_words).unwrap();
    let report = replay(&mut all, &replayed).unwrap_or_else(|e| panic!("trace replay: {e}"));
    assert!(report.is_balanced(), "{report:?}");
    println!(
        "trace replay: {} events ({} allocs, {} frees), peak {} B live",
        report.events, report.allocs, report.frees, report.peak_live_bytes
    );
    assert!(report.allocs as usize > OPS / 4, "the workload allocated");
    heap.reclaim();
    heap.validate().unwrap();
    assert_eq!(heap.stats().free_bytes, free_before, "every byte came back");
    assert_eq!(heap.corruptions().0, 0);
}
