//! `examples/box_pairs.rs`'s loop with the `mimalloc` crate as the global
//! allocator: the comparison for the Rust path's instructions per pair (see
//! that example for the callgrind commands).

#[global_allocator]
static A: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../../../examples/support/box_pairs_loop.rs"]
mod box_pairs_loop;

fn main() {
    box_pairs_loop::run();
}
