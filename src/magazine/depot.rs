//! The depot and the magazine pool it trades from.

use core::num::NonZeroU32;

use super::{round_size, Magazine, CACHE_CLASSES};
use crate::stack::IndexStack;
use crate::sync::{AtomicU32, AtomicUsize, Ordering};

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
    /// Full magazines in the depot, all classes together, and their bytes.
    full_count: AtomicU32,
    full_bytes: AtomicUsize,
    /// Full magazines in the depot per class (see [`Depot::evict_for`]).
    class_count: [AtomicU32; CACHE_CLASSES],
    limit: DepotLimit,
    /// Magazines `fresh..n` were never used: empty, on no stack. Taking
    /// them in order instead of stacking all of them at init leaves the
    /// pool's pages untouched until used (64 CPU slots: 4,658 magazines,
    /// 1.2 MiB that a process would otherwise fault in at start).
    fresh: AtomicU32,
}

impl MagazinePool {
    /// Constructs `n` empty magazines and the sentinel at `at` (nothing to
    /// write if the range reads as zeros: `zeroed`) and a depot within
    /// `limit`.
    ///
    /// # Safety
    /// `[at, at + (n + 1) * size_of::<Magazine>())` is aligned for
    /// `Magazine`, owned by the caller for the pool's whole life and not
    /// shared yet; with `zeroed`, it reads as zeros.
    pub(crate) unsafe fn init(
        at: usize,
        n: usize,
        cap: [u32; CACHE_CLASSES],
        limit: DepotLimit,
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
            full_count: AtomicU32::new(0),
            full_bytes: AtomicUsize::new(0),
            class_count: core::array::from_fn(|_| AtomicU32::new(0)),
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
            full_bytes: &self.full_bytes,
            class_count: &self.class_count,
            limit: self.limit,
            fresh: &self.fresh,
        }
    }
}

/// What the depot may hold: full magazines of all classes together, counted
/// and in bytes.
///
/// The limit is on the depot as a whole, not per class: a producer/consumer
/// pair moves its class's objects as whole magazines, as many as it has in
/// flight, instead of the consumer sending most of them home object by
/// object (one return-list CAS each) once a per-class share is full. The
/// bytes are bounded as by a share of `per_class` full magazines for every
/// class, and the count by the pool's magazines set aside for the depot (so
/// the CPUs' own two per class stay available).
#[derive(Clone, Copy, Debug)]
pub(crate) struct DepotLimit {
    pub(crate) magazines: u32,
    pub(crate) bytes: usize,
}

impl DepotLimit {
    /// The bytes of `per_class` full magazines of every class, with `cap`
    /// rounds per magazine.
    pub(crate) fn bytes_for(per_class: usize, cap: &[u32; CACHE_CLASSES]) -> usize {
        (0..CACHE_CLASSES)
            .map(|cc| per_class * cap[cc] as usize * round_size(cc))
            .sum()
    }
}

/// The depot: per cache class a stack of full magazines, soft counts of
/// them (for its [`DepotLimit`]), and one shared stack of empty magazines.
pub(crate) struct Depot<'a> {
    pub(crate) pool: &'a [Magazine],
    pub(crate) empty: &'a IndexStack,
    pub(crate) full: &'a [IndexStack],
    full_count: &'a AtomicU32,
    full_bytes: &'a AtomicUsize,
    class_count: &'a [AtomicU32; CACHE_CLASSES],
    limit: DepotLimit,
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
        // Relaxed: the counts are a soft limit; they order nothing. The
        // magazine is unchanged since `put_full` counted its bytes.
        self.full_count.fetch_sub(1, Ordering::Relaxed);
        self.class_count[c].fetch_sub(1, Ordering::Relaxed);
        self.full_bytes
            .fetch_sub(self.bytes_of(c, m), Ordering::Relaxed);
        Some(MagId::from_index(m))
    }

    /// Makes room for a full magazine of class `c` when the depot is at its
    /// limit: takes a full magazine of the class that holds the most, if it
    /// holds more than `c` does, for the caller to send home. Without this,
    /// magazines of classes nobody allocates any more would keep the budget
    /// that all classes share (a page burst after a run of small objects
    /// got no depot exchange at all); with it, classes that compete for
    /// the depot end with equal shares.
    pub(crate) fn evict_for(&self, c: usize) -> Option<(usize, MagId)> {
        // Relaxed: soft counts; a stale one only picks another victim.
        let count = |d: usize| self.class_count[d].load(Ordering::Relaxed);
        // Holding half the depot already, `c` would find no larger share to
        // take from: skip the search (a single class's burst hits this).
        if 2 * count(c) >= self.full_count.load(Ordering::Relaxed) {
            return None;
        }
        let (victim, most) = (0..CACHE_CLASSES)
            .filter(|&d| d != c)
            .map(|d| (d, count(d)))
            .max_by_key(|&(_, n)| n)?;
        if most <= count(c) {
            return None;
        }
        Some((victim, self.get_full(victim)?))
    }

    /// Whether any magazine of the pool holds round `p` (cold: the exact
    /// double-free check of the default build).
    pub(crate) fn holds(&self, p: usize) -> bool {
        self.pool.iter().any(|m| m.holds(p))
    }

    /// Bytes of the rounds magazine `i` of class `c` holds.
    fn bytes_of(&self, c: usize, i: u32) -> usize {
        self.pool[i as usize].len() as usize * round_size(c)
    }

    /// Stores a full magazine of class `c` unless the depot is at its limit
    /// (then the caller returns the rounds to their slabs or pages).
    #[inline]
    pub(crate) fn put_full(&self, c: usize, m: MagId) -> bool {
        let i = m.index();
        let bytes = self.bytes_of(c, i);
        // Relaxed: as in `get_full`; a race may overshoot the limit by a few
        // magazines.
        if self.full_count.load(Ordering::Relaxed) >= self.limit.magazines
            || self.full_bytes.load(Ordering::Relaxed) + bytes > self.limit.bytes
        {
            return false;
        }
        self.full_count.fetch_add(1, Ordering::Relaxed);
        self.class_count[c].fetch_add(1, Ordering::Relaxed);
        self.full_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.full[c].push(i, &self.pool[i as usize].link);
        true
    }
}
