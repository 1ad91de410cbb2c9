//! The one place atomics come from.
//!
//! Every atomic, fence and spin hint in `src/` is imported from here, never from
//! `core` directly, so the same allocator code runs on three backends:
//!
//! | build                                   | backend                         |
//! |-----------------------------------------|---------------------------------|
//! | normal (`cargo build`, the kernel)      | `portable_atomic` / `core`      |
//! | `RUSTFLAGS="--cfg loom"`                | `loom` (exhaustive, orderings)  |
//! | feature `shuttle` (`cargo test -p verify`) | `shuttle` (random/PCT schedules) |
//!
//! loom's and shuttle's atomics are not plain integers and have no `const fn
//! new` guarantee we rely on, so metadata is always constructed in place with
//! these types and sized with `size_of` of them; nothing assumes zeroed memory is
//! a valid atomic.

#[cfg(loom)]
mod imp {
    pub use loom::hint::spin_loop;
    pub use loom::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
}

#[cfg(all(feature = "shuttle", not(loom)))]
mod imp {
    pub use shuttle::hint::spin_loop;
    pub use shuttle::sync::atomic::{
        fence, AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering,
    };
}

#[cfg(not(any(loom, feature = "shuttle")))]
mod imp {
    pub use core::hint::spin_loop;
    pub use core::sync::atomic::{fence, Ordering};
    pub use portable_atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize};
}

pub use imp::*;

/// True when the atomics are a model checker's: tests shrink their work.
pub const MODEL_CHECKED: bool = cfg!(any(loom, feature = "shuttle"));
