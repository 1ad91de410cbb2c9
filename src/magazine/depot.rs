//! The depot and the magazine pool it trades from.

use core::num::NonZeroU32;

use super::{Magazine, CACHE_CLASSES};
use crate::stack::IndexStack;
use crate::sync::{AtomicU32, Ordering};

/// A magazine of the pool: its index plus one, so that `Option<MagId>` is a
/// `u32` with 0 = none. The depot's stacks hold [`MagId::index`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MagId(NonZeroU32);

impl MagId {
    /// The magazine whose index is `i` (as the stacks hold it).
    #[inline]
    fn from_index(i: u32) -> Self {
        Self(NonZeroU32::new(i + 1).expect("magazine index below the pool size"))
    }

    /// The magazine's index in the pool.
    #[inline(always)]
    fn index(self) -> u32 {
        self.0.get() - 1
    }
}

/// The type-stable magazine pool (in the first region's metadata, never
/// returned to the tree), the depot's stacks, and the rounds per magazine
/// of every cache class.
pub(crate) struct MagazinePool {
    /// `n + 1` magazines: the pool, then the sentinel.
    mags: *const Magazine,
    n: u32,
    /// Rounds per magazine, per cache class.
    cap: [u32; CACHE_CLASSES],
    empty: IndexStack,
    full: [IndexStack; CACHE_CLASSES],
    full_count: [AtomicU32; CACHE_CLASSES],
    limit: u32,
    /// Magazines `fresh..n` were never used: empty, on no stack. Taking
    /// them in order instead of stacking all of them at init leaves the
    /// pool's pages untouched until used (64 CPU slots: 4,658 magazines,
    /// 1.2 MiB that a process would otherwise fault in at start).
    fresh: AtomicU32,
}

impl MagazinePool {
    /// Constructs `n` empty magazines and the sentinel at `at` (nothing to
    /// write if the range reads as zeros: `zeroed`) and a depot holding
    /// `limit` full magazines per class at most.
    ///
    /// # Safety
    /// `[at, at + (n + 1) * size_of::<Magazine>())` is aligned for
    /// `Magazine`, owned by the caller for the pool's whole life and not
    /// shared yet; with `zeroed`, it reads as zeros.
    pub(crate) unsafe fn init(
        at: usize,
        n: usize,
        cap: [u32; CACHE_CLASSES],
        limit: u32,
        zeroed: bool,
    ) -> Self {
        // All-zero bytes are an empty magazine, except for a model
        // checker's atomics.
        if !zeroed || crate::sync::MODEL_CHECKED {
            for i in 0..=n {
                // SAFETY: magazine `i` lies in the caller's range.
                unsafe { core::ptr::write((at as *mut Magazine).add(i), Magazine::new()) };
            }
        }
        Self {
            mags: at as *const Magazine,
            n: n as u32,
            cap,
            empty: IndexStack::new(),
            full: core::array::from_fn(|_| IndexStack::new()),
            full_count: core::array::from_fn(|_| AtomicU32::new(0)),
            limit,
            fresh: AtomicU32::new(0),
        }
    }

    /// Magazines in the pool (the sentinel not included).
    pub(crate) fn len(&self) -> usize {
        self.n as usize
    }

    /// Rounds per magazine of cache class `cc`.
    #[inline(always)]
    pub(crate) fn cap(&self, cc: usize) -> u32 {
        self.cap[cc]
    }

    /// The pool's always-empty magazine, loaded where none is.
    pub(crate) fn sentinel(&self) -> &Magazine {
        // SAFETY: the pool holds `n + 1` magazines (init), the last the
        // sentinel, alive as long as the pool.
        unsafe { &*self.mags.add(self.n as usize) }
    }

    #[inline(always)]
    pub(crate) fn mag(&self, m: MagId) -> &Magazine {
        debug_assert!(m.index() < self.n, "magazine index out of range");
        // SAFETY: magazine ids only come from the pool's own stacks, so
        // `m.index() < n`; the pool was constructed in init and lives as
        // long as the heap.
        unsafe { &*self.mags.add(m.index() as usize) }
    }

    pub(crate) fn depot(&self) -> Depot<'_> {
        Depot {
            // SAFETY: the pool was constructed in init and lives with the heap.
            pool: unsafe { core::slice::from_raw_parts(self.mags, self.n as usize) },
            empty: &self.empty,
            full: &self.full,
            full_count: &self.full_count,
            limit: self.limit,
            fresh: &self.fresh,
        }
    }
}

/// The depot: per cache class a stack of full magazines (with a soft count
/// for its limit), and one shared stack of empty magazines.
pub(crate) struct Depot<'a> {
    pub(crate) pool: &'a [Magazine],
    pub(crate) empty: &'a IndexStack,
    pub(crate) full: &'a [IndexStack],
    pub(crate) full_count: &'a [AtomicU32],
    pub(crate) limit: u32,
    fresh: &'a AtomicU32,
}

impl<'a> Depot<'a> {
    fn link(&self) -> impl Fn(u32) -> &'a AtomicU32 {
        let pool = self.pool;
        move |i| &pool[i as usize].link
    }

    /// An empty magazine from the pool, if any is left.
    #[inline]
    pub(crate) fn get_empty(&self) -> Option<MagId> {
        let i = self.empty.pop(self.link()).or_else(|| {
            // Relaxed: the magazine was constructed at init, published with
            // the heap; the count only hands each index out once.
            self.fresh
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |f| {
                    ((f as usize) < self.pool.len()).then_some(f + 1)
                })
                .ok()
        })?;
        Some(MagId::from_index(i))
    }

    /// Returns an empty magazine to the pool.
    #[inline]
    pub(crate) fn put_empty(&self, m: MagId) {
        let i = m.index();
        self.empty.push(i, &self.pool[i as usize].link);
    }

    /// A full magazine of class `c`, if the depot has one.
    #[inline]
    pub(crate) fn get_full(&self, c: usize) -> Option<MagId> {
        let m = self.full[c].pop(self.link())?;
        // Relaxed: the count is a soft limit; it orders nothing.
        self.full_count[c].fetch_sub(1, Ordering::Relaxed);
        Some(MagId::from_index(m))
    }

    /// Whether any magazine of the pool holds round `p` (cold: the exact
    /// double-free check of the default build).
    pub(crate) fn holds(&self, p: usize) -> bool {
        self.pool.iter().any(|m| m.holds(p))
    }

    /// Stores a full magazine of class `c` unless the depot is at its limit
    /// (then the caller returns the rounds to their slabs or pages).
    #[inline]
    pub(crate) fn put_full(&self, c: usize, m: MagId) -> bool {
        // Relaxed: as in `get_full`; a race may overshoot the limit by a few.
        if self.full_count[c].load(Ordering::Relaxed) >= self.limit {
            return false;
        }
        self.full_count[c].fetch_add(1, Ordering::Relaxed);
        let i = m.index();
        self.full[c].push(i, &self.pool[i as usize].link);
        true
    }
}
