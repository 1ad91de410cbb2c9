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
//!
//! The same loop around the `mimalloc` crate: `cargo build --release -p
//! magbuddy-bench --bin box_pairs_mimalloc`, then as above with
//! `target/release/box_pairs_mimalloc`.

#[global_allocator]
static A: magbuddy::MagbuddyAlloc = magbuddy::MagbuddyAlloc::new(256 << 20, 4);

#[path = "support/box_pairs_loop.rs"]
mod box_pairs_loop;

fn main() {
    box_pairs_loop::run();
}
