//! `MagbuddyAlloc` gives a freed working set back to the OS by itself: after
//! 512 MiB of mixed blocks are dropped, without calling `trim`, the
//! process's resident memory is small again (RSS asserted, not time).
//!
//! Linux only (reads `/proc/self/statm`); not built under a model checker's
//! cfg (its atomics need its runtime).
#![cfg(all(target_os = "linux", not(any(shuttle, loom))))]

use magbuddy::MagbuddyAlloc;

#[global_allocator]
static A: MagbuddyAlloc = MagbuddyAlloc::new(2 << 30, 8);

/// Resident bytes of this process.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn dropped_working_set_goes_back_without_trim() {
    const MIB: usize = 1 << 20;
    let sizes = [64, 1000, 4000, 40_000, 300_000];
    let mut v: Vec<Vec<u8>> = Vec::new();
    let mut bytes = 0;
    for i in 0.. {
        if bytes >= 512 * MIB {
            break;
        }
        let size = sizes[i % sizes.len()];
        v.push(vec![1u8; size]);
        bytes += size;
    }
    let full = rss();
    drop(v);
    let freed = rss();
    eprintln!(
        "global_trim: RSS {} MiB full, {} MiB after the drop",
        full / MIB,
        freed / MIB
    );
    assert!(full >= 400 * MIB, "the working set was resident");
    assert!(
        freed <= 64 * MIB,
        "{} MiB resident after dropping 512 MiB (limit 64)",
        freed / MIB
    );
}
