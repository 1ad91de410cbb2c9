//! `Box` alloc+free pairs through `MagbuddyAlloc` as the process allocator
//! (8–128 B, a ring of 64 live boxes): the Rust path's cost per pair,
//! counted with callgrind as the difference of two runs, so start-up cancels:
//!
//! ```sh
//! cargo build --release --features std --example box_pairs
//! for n in 10000 30000; do valgrind --tool=callgrind --callgrind-out-file=cg.$n \
//!   target/release/examples/box_pairs $n; done
//! # instructions per pair = (total(cg.30000) - total(cg.10000)) / 20000
//! ```

#[global_allocator]
static A: magbuddy::MagbuddyAlloc = magbuddy::MagbuddyAlloc::new(256 << 20, 4);

fn main() {
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
