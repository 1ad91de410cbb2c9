//! magbuddy as the process's `#[global_allocator]`, under a real
//! multi-threaded Rust workload that checks its own results: collections,
//! strings, channels moving boxes across threads (remote frees), and waves
//! of threads that come and go (handles claimed and released).
//!
//! Not built under a model checker's cfg (its atomics need its runtime).
#![cfg(not(any(shuttle, loom)))]

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;

use magbuddy::MagbuddyAlloc;

#[global_allocator]
static A: MagbuddyAlloc = MagbuddyAlloc::new(512 << 20, 16);

/// Deterministic per-thread work whose answer is known in closed form.
fn collections(t: u64) -> u64 {
    let n = 20_000u64;
    let mut words: Vec<String> = (0..n).map(|i| format!("{t}-{i:08}")).collect();
    words.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(words[0], format!("{t}-{:08}", n - 1));
    let mut map: HashMap<u64, Vec<u8>> = HashMap::new();
    for i in 0..n {
        map.insert(i, vec![(i % 251) as u8; (i % 300) as usize]);
    }
    let mut tree = BTreeMap::new();
    for (k, v) in &map {
        tree.insert(*k, v.iter().map(|&b| b as u64).sum::<u64>());
    }
    let total: u64 = tree.values().sum();
    let expected: u64 = (0..n).map(|i| (i % 251) * (i % 300)).sum();
    assert_eq!(total, expected);
    total
}

#[test]
fn threads_collections_channels_and_churn() {
    // 8 threads of collection work at once.
    let answers: Vec<u64> = (0..8)
        .map(|t| std::thread::spawn(move || collections(t)))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert!(answers.windows(2).all(|w| w[0] == w[1]));

    // Producers allocate, consumers verify and free: every free is remote.
    let (tx, rx) = mpsc::sync_channel::<Box<[u8]>>(256);
    let consumers = std::thread::spawn(move || {
        let mut seen = 0u64;
        for b in rx {
            let fill = b[0];
            assert!(
                b.iter().all(|&x| x == fill),
                "box of {} B corrupted",
                b.len()
            );
            seen += b.len() as u64;
        }
        seen
    });
    let producers: Vec<_> = (0..4)
        .map(|p| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut sent = 0u64;
                for i in 0..20_000usize {
                    let len = [8, 24, 100, 128, 500, 4096, 9000, 65536][(i + p) % 8];
                    tx.send(vec![(i % 255) as u8 + 1; len].into_boxed_slice())
                        .unwrap();
                    sent += len as u64;
                }
                sent
            })
        })
        .collect();
    drop(tx);
    let sent: u64 = producers.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(consumers.join().unwrap(), sent);

    // Waves of short-lived threads: more threads than handles at times.
    for wave in 0..20 {
        let hs: Vec<_> = (0..24)
            .map(|t| {
                std::thread::spawn(move || {
                    (0..200)
                        .map(|i| format!("{wave}:{t}:{i}"))
                        .collect::<Vec<_>>()
                        .len()
                })
            })
            .collect();
        assert!(hs.into_iter().all(|h| h.join().unwrap() == 200));
    }

    let heap = A.heap().unwrap();
    let s = heap.stats();
    assert!(s.free_bytes > 0);
    let (corruptions, _) = heap.corruptions();
    assert_eq!(corruptions, 0);
    println!(
        "after the workload: {s}\nshared path: {:?}",
        heap.shared_stats()
    );
}

/// Allocates and frees boxes of every small size and some pages when its
/// thread's thread-locals are torn down, checking their contents: before
/// the thread's slot goes back (a handle) or after (the shared path).
struct AllocAtExit(u8);

impl Drop for AllocAtExit {
    fn drop(&mut self) {
        let boxes: Vec<Box<[u8]>> = (1..200usize)
            .map(|i| vec![self.0 ^ i as u8; i * 24].into_boxed_slice())
            .collect();
        for (i, b) in boxes.iter().enumerate() {
            assert!(b.iter().all(|&x| x == self.0 ^ (i + 1) as u8));
        }
        EXIT_DROPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

static EXIT_DROPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

thread_local! {
    /// Touched before the thread's first allocation: its destructor is
    /// registered before the slot's release, so it runs after it.
    static BEFORE_SLOT: AllocAtExit = const { AllocAtExit(0x5a) };
    /// Touched after: its destructor runs before the release.
    static AFTER_SLOT: AllocAtExit = const { AllocAtExit(0xa5) };
}

#[test]
fn thread_locals_torn_down_at_thread_exit_allocate_and_free() {
    let before = EXIT_DROPS.load(std::sync::atomic::Ordering::Relaxed);
    for wave in 0..10 {
        let hs: Vec<_> = (0..24)
            .map(|t| {
                std::thread::spawn(move || {
                    BEFORE_SLOT.with(|_| ());
                    let v = vec![wave as u8; 100 + t];
                    AFTER_SLOT.with(|_| ());
                    v.len()
                })
            })
            .collect();
        assert!(hs.into_iter().all(|h| h.join().unwrap() >= 100));
    }
    // Each thread's two destructors ran to the end.
    assert!(EXIT_DROPS.load(std::sync::atomic::Ordering::Relaxed) >= before + 2 * 240);
    assert_eq!(A.heap().unwrap().corruptions().0, 0);
}
