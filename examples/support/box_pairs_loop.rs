//! The loop of `examples/box_pairs.rs`, shared with the benches' `box_pairs_mimalloc`
//! so both count the same program around a different global allocator.

/// `Box` alloc+free pairs (8–128 B, a ring of 64 live boxes); the count is
/// the first argument (default 1,000,000).
pub fn run() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let sizes = [8usize, 16, 24, 32, 48, 64, 96, 128];
    let mut ring: Vec<Option<Box<[u8]>>> = (0..64).map(|_| None).collect();
    let mut bytes = 0usize;
    for i in 0..n {
        let b = vec![0u8; sizes[i % 8]].into_boxed_slice();
        bytes += b.len();
        ring[i % 64] = Some(b);
    }
    println!("{n} pairs, {bytes} bytes");
}
