//! The one place atomics come from.
//!
//! Every atomic, fence and spin hint in `src/` is imported from here, never from
//! `core` directly, so the same allocator code runs on three backends:
//!
//! | build                                   | backend                         |
//! |-----------------------------------------|---------------------------------|
//! | normal (`cargo build`, the kernel)      | `portable_atomic` / `core`      |
//! | `RUSTFLAGS="--cfg loom"`                | `loom` (exhaustive, orderings)  |
//! | `RUSTFLAGS="--cfg shuttle"` (`cargo test -p verify`) | `shuttle` (random/PCT schedules) |
//! | `RUSTFLAGS="--cfg magbuddy_count_atomics"` (feature `std`) | `portable_atomic`, each access counted per thread ([`counts`]) |
//!
//! loom's and shuttle's atomics are not plain integers and have no `const fn
//! new` guarantee we rely on, so metadata is always constructed in place with
//! these types and sized with `size_of` of them; nothing assumes zeroed memory is
//! a valid atomic.

#[cfg(loom)]
mod imp {
    pub use loom::cell::UnsafeCell;
    pub use loom::hint::spin_loop;
    pub use loom::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
}

#[cfg(all(shuttle, not(loom)))]
mod imp {
    pub use super::cell::UnsafeCell;
    pub use shuttle::hint::spin_loop;
    pub use shuttle::sync::atomic::{
        fence, AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering,
    };
}

#[cfg(all(not(any(loom, shuttle)), not(magbuddy_count_atomics)))]
mod imp {
    pub use super::cell::UnsafeCell;
    pub use core::hint::spin_loop;
    pub use core::sync::atomic::{fence, Ordering};
    pub use portable_atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize};
}

#[cfg(all(not(any(loom, shuttle)), magbuddy_count_atomics))]
mod imp {
    pub use super::cell::UnsafeCell;
    pub use super::counted::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize};
    pub use core::hint::spin_loop;
    pub use core::sync::atomic::{fence, Ordering};
}

pub use imp::*;

// The counters are thread-locals, which need `std` (see `counted`): without
// it the cfg would count nothing, so it does not build.
#[cfg(all(
    magbuddy_count_atomics,
    not(any(loom, shuttle)),
    not(any(test, feature = "std"))
))]
compile_error!("`--cfg magbuddy_count_atomics` needs feature `std` (thread-local counters)");

#[cfg(all(magbuddy_count_atomics, not(any(loom, shuttle))))]
mod counted;

/// Whether this build counts atomic accesses (`--cfg magbuddy_count_atomics`
/// with the normal backend): then [`counts`] returns `Some`.
pub const COUNTING_ATOMICS: bool = cfg!(all(magbuddy_count_atomics, not(any(loom, shuttle))));

/// Atomic accesses made by one thread through this facade: what [`counts`]
/// returns (defined in every build, so callers need no cfg of their own).
///
/// Read-modify-writes include failed CASes (a failed `lock cmpxchg` still
/// takes its cache line exclusively); `cas_failed` counts those again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AtomicCounts {
    /// Swaps, CASes (strong and weak, failed ones included) and `fetch_*`.
    pub rmw: u64,
    /// The CASes among `rmw` that failed.
    pub cas_failed: u64,
    /// Plain atomic stores.
    pub stores: u64,
    /// Plain atomic loads.
    pub loads: u64,
}

impl AtomicCounts {
    /// What happened between `before` and `self` (two readings of
    /// [`counts`] on one thread).
    pub fn since(self, before: Self) -> Self {
        Self {
            rmw: self.rmw - before.rmw,
            cas_failed: self.cas_failed - before.cas_failed,
            stores: self.stores - before.stores,
            loads: self.loads - before.loads,
        }
    }

    /// The sum of two threads' (or phases') counts.
    pub fn plus(self, o: Self) -> Self {
        Self {
            rmw: self.rmw + o.rmw,
            cas_failed: self.cas_failed + o.cas_failed,
            stores: self.stores + o.stores,
            loads: self.loads + o.loads,
        }
    }
}

/// The calling thread's atomic accesses through this facade so far, or
/// `None` unless the build counts them ([`COUNTING_ATOMICS`]). Take the
/// difference of two readings around the calls of interest.
///
/// # Example
///
/// ```
/// # use magbuddy::{Heap, HeapConfig};
/// # let len = Heap::min_region_len(HeapConfig::new(1));
/// # let mut ram = vec![0u8; len];
/// # // SAFETY: `ram` is ours and outlives the heap's use.
/// # let heap = unsafe { Heap::init(ram.as_mut_ptr(), len, 1) }.unwrap();
/// let before = magbuddy::sync::counts();
/// let p = heap.alloc(64).unwrap();
/// // SAFETY: `p` came from this heap and is not used afterwards.
/// unsafe { heap.try_free(p.as_ptr()) }.unwrap();
/// if let (Some(b), Some(a)) = (before, magbuddy::sync::counts()) {
///     println!("{} read-modify-writes", a.since(b).rmw);
/// }
/// ```
pub fn counts() -> Option<AtomicCounts> {
    #[cfg(all(magbuddy_count_atomics, not(any(loom, shuttle))))]
    {
        Some(counted::counts())
    }
    #[cfg(not(all(magbuddy_count_atomics, not(any(loom, shuttle)))))]
    {
        None
    }
}

/// Calls `f` with each call site (a line of `src/`, through
/// `#[track_caller]`) of the calling thread's counted atomic accesses since
/// its last [`reset_sites`], and the site's counts: which atomics a path
/// touches. Calls nothing unless the build counts ([`COUNTING_ATOMICS`]).
pub fn for_each_site(f: impl FnMut(&'static core::panic::Location<'static>, AtomicCounts)) {
    #[cfg(all(magbuddy_count_atomics, not(any(loom, shuttle))))]
    counted::for_each_site(f);
    #[cfg(not(all(magbuddy_count_atomics, not(any(loom, shuttle)))))]
    let _ = f;
}

/// Forgets the calling thread's per-site counts ([`for_each_site`]), not
/// its totals ([`counts`]). Nothing unless the build counts.
pub fn reset_sites() {
    #[cfg(all(magbuddy_count_atomics, not(any(loom, shuttle))))]
    counted::reset_sites();
}

/// Atomics laid over the heap's own memory: the free tag inside a freed
/// object and the free bitmaps of slabs (see `crate::slab`). They are always
/// the hardware's: a model checker's atomics are not plain integers and cannot
/// be overlaid on raw bytes. All are 32-bit (see `crate::slab`): memory may
/// hold one kind after a slab is released and the other after it is reused,
/// and atomics of different sizes over the same bytes must not mix. The
/// model checkers therefore see these accesses
/// as ordinary, never-interleaved memory operations; each is a single load,
/// store or read-modify-write whose atomicity the hardware guarantees.
pub mod raw {
    #[cfg(all(magbuddy_count_atomics, not(any(loom, shuttle))))]
    pub use super::counted::raw::AtomicU32;
    #[cfg(not(all(magbuddy_count_atomics, not(any(loom, shuttle)))))]
    pub use core::sync::atomic::AtomicU32;
}

/// A scheduling point for shuttle inside a window that only [`raw`]
/// accesses span (the checker never switches threads at those): a free's
/// claim of an object between reading the slab's page descriptor and
/// touching the object's tag or bit, so schedules can release and reuse the
/// slab in between. Nothing in the other builds.
#[inline(always)]
pub(crate) fn model_yield() {
    // A load of a fresh shuttle atomic is a plain scheduling point; with
    // `CLAIM_YIELD` a `yield_now`, which PCT answers by lowering the
    // caller's priority, so the other threads run inside the window.
    #[cfg(all(shuttle, not(loom)))]
    if CLAIM_YIELD.load(core::sync::atomic::Ordering::Relaxed) {
        shuttle::thread::yield_now();
    } else {
        AtomicU32::new(0).load(Ordering::Relaxed);
    }
}

/// Whether [`model_yield`] yields (`crate::testing::yield_in_claims`). A
/// `core` atomic on purpose: a test's switch, never a scheduling point.
#[cfg(all(shuttle, not(loom)))]
pub(crate) static CLAIM_YIELD: core::sync::atomic::AtomicBool =
    core::sync::atomic::AtomicBool::new(false);

/// True when the atomics are a model checker's: tests shrink their work.
pub const MODEL_CHECKED: bool = cfg!(any(loom, shuttle));

/// `core::cell::UnsafeCell` with loom's closure API (`with`, `with_mut`), so
/// code written for loom's tracked cell compiles unchanged on the other
/// backends (tokio's facade does the same).
#[cfg(not(loom))]
mod cell {
    /// A cell whose accesses go through closures, as loom requires.
    ///
    /// # Example
    ///
    /// ```
    /// use magbuddy::sync::UnsafeCell;
    ///
    /// let c = UnsafeCell::new(5);
    /// // SAFETY: no other access to the value is live.
    /// c.with_mut(|p| unsafe { *p += 1 });
    /// // SAFETY: as above.
    /// assert_eq!(c.with(|p| unsafe { *p }), 6);
    /// ```
    #[derive(Debug, Default)]
    pub struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        /// Wraps `value`.
        ///
        /// See the example on [`UnsafeCell`].
        pub const fn new(value: T) -> Self {
            Self(core::cell::UnsafeCell::new(value))
        }

        /// Runs `f` with a shared raw pointer to the value.
        ///
        /// See the example on [`UnsafeCell`].
        #[inline(always)]
        pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }

        /// Runs `f` with a mutable raw pointer to the value.
        ///
        /// See the example on [`UnsafeCell`].
        #[inline(always)]
        pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }
}
