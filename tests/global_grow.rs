//! `MagbuddyAlloc` grows past its first region: the OOM hook reserves more
//! regions from the system (each as large as all before and large enough
//! for the request) until `MAX_REGIONS`. A configuration the heap refuses
//! fails every allocation and says why on stderr.
#![cfg(not(any(shuttle, loom)))]

use std::alloc::{GlobalAlloc, Layout};

use magbuddy::MagbuddyAlloc;

/// 8 MiB at first: everything below outgrows it.
#[global_allocator]
static A: MagbuddyAlloc = MagbuddyAlloc::new(8 << 20, 8);

#[test]
fn a_vec_pushed_to_64_mib_and_a_200_mib_block_grow_the_heap() {
    let first = A.heap().unwrap().stats().region_bytes;
    let mut v: Vec<u8> = Vec::new();
    for i in 0..64usize << 20 {
        v.push(i as u8);
    }
    assert!(v.iter().enumerate().all(|(i, &b)| b == i as u8));
    let big = vec![7u8; 200 << 20];
    assert!(big.iter().all(|&b| b == 7));
    let heap = A.heap().unwrap();
    let grown = heap.stats().region_bytes;
    assert!(
        grown > first + (200 << 20),
        "{first} -> {grown} region bytes"
    );
    // Threads keep allocating in the grown heap.
    let sums: Vec<u64> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                (0..20_000u64)
                    .map(|i| Box::new(i * t))
                    .map(|b| *b)
                    .sum::<u64>()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert_eq!(sums[3], 3 * (0..20_000u64).sum::<u64>());
    drop((v, big));
    heap.validate().unwrap();
    let back = A.trim();
    assert!(back >= 200 << 20, "trim gave back only {back} B");
    heap.validate().unwrap();
    println!("first region {first} B, after growth {grown} B");
}

#[test]
fn zeroed_blocks_read_zero_after_dirty_reuse() {
    for size in [24usize, 1000, 20_000, 300 << 10, 5 << 20] {
        for _ in 0..3 {
            let dirty = vec![0xabu8; size];
            assert_eq!(dirty[size - 1], 0xab);
            drop(dirty);
            let clean = vec![0u8; size];
            assert!(clean.iter().all(|&b| b == 0), "{size} B not zero");
        }
    }
}

#[test]
fn zeroed_small_blocks_read_zero_and_leave_their_neighbours_alone() {
    // `alloc_zeroed` writes 8 to 128 bytes with overlapping stores in line:
    // every size around those bounds, each alignment up to 64, dirty reuse
    // (the same class's blocks were filled and freed first), and the live
    // dirty blocks around the zeroed ones keep their bytes.
    for size in 1..=300usize {
        for align in [1usize, 8, 16, 64] {
            let l = Layout::from_size_align(size, align).unwrap();
            // SAFETY: non-zero sizes; every block is freed once with `l`.
            unsafe {
                let dirty: Vec<*mut u8> = (0..16).map(|_| A.alloc(l)).collect();
                for &p in &dirty {
                    assert!(!p.is_null());
                    p.write_bytes(0xcd, size);
                }
                for &p in dirty.iter().step_by(2) {
                    A.dealloc(p, l);
                }
                let clean: Vec<*mut u8> = (0..8).map(|_| A.alloc_zeroed(l)).collect();
                for &p in &clean {
                    assert_eq!(p as usize % align, 0);
                    let bytes = std::slice::from_raw_parts(p, size);
                    assert!(bytes.iter().all(|&b| b == 0), "{size} B not zero");
                }
                for &p in dirty.iter().skip(1).step_by(2) {
                    let bytes = std::slice::from_raw_parts(p, size);
                    assert!(
                        bytes.iter().all(|&b| b == 0xcd),
                        "neighbour of {size} B written"
                    );
                    A.dealloc(p, l);
                }
                for p in clean {
                    A.dealloc(p, l);
                }
            }
        }
    }
}

#[test]
fn a_refused_configuration_fails_every_allocation() {
    // 65 CPUs: above MAX_CPUS, so the heap refuses (InitError::BadCpuCount).
    static BAD: MagbuddyAlloc = MagbuddyAlloc::new(64 << 20, 65);
    let l = Layout::new::<u64>();
    // SAFETY: non-zero size.
    assert!(unsafe { BAD.alloc(l) }.is_null());
    assert!(BAD.heap().is_none());
}
