//! Internals exposed for the model checkers in `verify/` and the tests:
//! views that drive one layer's pieces directly, and the probes. Not a
//! stable API.

pub use crate::buddy::Geometry;
use crate::buddy::{Area, AreaWord, ChunkWord};
pub use crate::probe::{probe_count, reset_probes, Probe};

/// The default build's free tag (bytes 4..8 of a free object): the value
/// tests store in live objects, which must still be freed exactly once.
pub const FREE_TAG: u32 = crate::slab::FREE_TAG;
use crate::sync::AtomicU64;

/// One area's buddy words, driven directly (no heap around them).
pub struct AreaView<'a>(Area<'a>);

impl<'a> AreaView<'a> {
    /// An area over caller-owned words (all zero = all free); `frees`
    /// counts the steps that give pages back.
    pub fn new(
        top: &'a AtomicU64,
        chunks: &'a [AtomicU64],
        frees: &'a AtomicU64,
        g: Geometry,
    ) -> Self {
        assert_eq!(chunks.len(), g.chunks_per_area() as usize);
        Self(Area {
            top,
            chunks,
            frees,
            g,
        })
    }

    /// Allocates order `k`; returns the first page offset.
    pub fn alloc(&self, k: u32) -> Option<u32> {
        self.0.alloc(k).offset
    }

    /// Frees the block of order `k` at `offset`; false if not allocated.
    pub fn free(&self, offset: u32, k: u32) -> bool {
        self.0.free(offset, k).is_ok()
    }

    /// [`Self::alloc`], also returning the CAS attempts that lost a race.
    pub fn alloc_counting(&self, k: u32) -> (Option<u32>, u32) {
        let t = self.0.alloc(k);
        (t.offset, t.retries)
    }

    /// [`Self::free`], also returning the CAS attempts that lost a race.
    pub fn free_counting(&self, offset: u32, k: u32) -> (bool, u32) {
        match self.0.free(offset, k) {
            Ok(retries) => (true, retries),
            Err(retries) => (false, retries),
        }
    }

    /// The area word's reservation count of chunk `j` (one Relaxed load).
    pub fn used(&self, j: u32) -> u32 {
        self.count_in(self.0.load_top(), j)
    }

    /// The reservation count of chunk `j` in a raw area word.
    pub fn count_in(&self, area_word: u64, j: u32) -> u32 {
        AreaWord(area_word).used(self.0.g, j)
    }

    /// Chunk word `j`, raw (one Relaxed load; 0 = entirely free).
    pub fn chunk_word(&self, j: u32) -> u64 {
        self.0.load_chunk(j)
    }

    /// The area word, raw (one Relaxed load; 0 = entirely free).
    pub fn area_word(&self) -> u64 {
        self.0.load_top()
    }

    /// At a quiet point: both word kinds well formed, no chunk block under
    /// an allocated top node, and each count equal to its chunk's
    /// allocated pages (invariant R with nothing in flight).
    pub fn check(&self) -> Result<(), &'static str> {
        let g = self.0.g;
        let top = AreaWord(self.0.load_top());
        top.check(g)?;
        for j in 0..g.chunks_per_area() {
            let cw = ChunkWord(self.0.load_chunk(j));
            cw.check(g)?;
            if top.covered_chunks(g) & (1 << j) != 0 && cw.0 != 0 {
                return Err("chunk holds blocks under an allocated top node");
            }
            if top.used(g, j) != g.chunk_pages() - cw.free_pages(g) {
                return Err("reservation count differs from the chunk's allocated pages");
            }
        }
        Ok(())
    }
}

/// The tagged index stack of the depot and the abandoned-slab lists
/// (`crate::stack::IndexStack`), over caller-owned links (one per node),
/// so loom and shuttle can drive it alone.
pub struct StackView(crate::stack::IndexStack);

impl StackView {
    /// An empty stack.
    pub fn new() -> Self {
        Self(crate::stack::IndexStack::new())
    }

    /// A stack holding nodes `0..links.len()` (0 on top), links written
    /// into `links` (before the stack is shared).
    pub fn filled(links: &[crate::sync::AtomicU32]) -> Self {
        Self(crate::stack::IndexStack::filled(links.len() as u32, |i| {
            &links[i as usize]
        }))
    }

    /// Pushes node `i`.
    pub fn push(&self, i: u32, links: &[crate::sync::AtomicU32]) {
        self.0.push(i, &links[i as usize]);
    }

    /// Pops the top node.
    pub fn pop(&self, links: &[crate::sync::AtomicU32]) -> Option<u32> {
        self.0.pop(|i| &links[i as usize])
    }
}

impl Default for StackView {
    fn default() -> Self {
        Self::new()
    }
}

/// Bytes of one slab (the memory a [`SlabView`] needs).
pub const SLAB_BYTES: usize = crate::slab::SLAB_BYTES;

/// One slab descriptor (`crate::slab::SlabDesc`) over caller-owned
/// memory of [`SLAB_BYTES`] at `base`: the owner's take / collect /
/// local free, the remote push onto the return list, abandonment and
/// adoption, driven directly.
pub struct SlabView {
    desc: crate::slab::SlabDesc,
    base: usize,
    class: u32,
}

impl SlabView {
    /// A fresh slab of size class `class` (object size `8 << class`)
    /// owned by `token` (non-zero, not `u32::MAX`).
    ///
    /// # Safety
    /// `base` is valid, 8-aligned memory of [`SLAB_BYTES`] owned by the
    /// view for its whole life.
    pub unsafe fn new(base: usize, class: usize, token: u32) -> Self {
        let desc = crate::slab::SlabDesc::new();
        // SAFETY: the memory is the view's (caller).
        unsafe { desc.init(base, class, token) };
        Self {
            desc,
            base,
            class: class as u32,
        }
    }

    /// Objects per slab.
    pub fn capacity(&self) -> u32 {
        crate::slab::capacity(self.class as usize)
    }

    /// Index of object `p`.
    pub fn index_of(&self, p: usize) -> usize {
        (p - self.base) >> (self.class + 3)
    }

    /// Owner: hands out up to `out.len()` objects (local free list first).
    ///
    /// # Safety
    /// The caller owns the slab.
    pub unsafe fn take(&self, out: &mut [usize]) -> usize {
        // SAFETY: forwarded.
        unsafe { self.desc.take_tagged(self.base, out).0 }
    }

    /// Owner: moves the return list to the local free list (one swap).
    ///
    /// # Safety
    /// The caller owns the slab.
    pub unsafe fn collect(&self) -> u32 {
        // SAFETY: forwarded.
        unsafe { self.desc.collect(self.base) }
    }

    /// Owner: frees one of its handed-out objects.
    ///
    /// # Safety
    /// The caller owns the slab; `p` is handed out and unused after.
    pub unsafe fn free_local(&self, p: usize) {
        // SAFETY: forwarded.
        unsafe { self.desc.free_local(self.base, p) }
    }

    /// Anyone: pushes handed-out object `p` onto the return list; true
    /// when the push found the slab abandoned-full (the pusher publishes).
    ///
    /// # Safety
    /// `p` is a handed-out object of this slab, unused after the call.
    pub unsafe fn free_remote(&self, p: usize) -> bool {
        // SAFETY: forwarded.
        unsafe { self.desc.free_remote(self.base, self.class, p) }
    }

    /// Owner: gives up an exhausted slab if no returns are pending.
    ///
    /// # Safety
    /// The caller owns the slab with `token`.
    pub unsafe fn try_abandon_full(&self, token: u32) -> bool {
        // SAFETY: forwarded.
        unsafe { self.desc.try_abandon_full(token) }
    }

    /// Anyone: adopts the abandoned slab for `token`.
    pub fn adopt(&self, token: u32) -> bool {
        self.desc.adopt(token)
    }

    /// Owner: gives up a slab that still has objects.
    pub fn abandon(&self) {
        self.desc.abandon()
    }

    /// Objects handed out and not collected back (owner-only state).
    ///
    /// # Safety
    /// The caller owns the slab, or nothing is in flight.
    pub unsafe fn handed(&self) -> u32 {
        // SAFETY: forwarded.
        unsafe { self.desc.local().handed }
    }

    /// Objects on the return list (one Relaxed load).
    pub fn returns(&self) -> u32 {
        self.desc.returns_snapshot().count()
    }

    /// The slab's own check at a quiet point (`cpus` owner tokens valid).
    ///
    /// # Safety
    /// Nothing is in flight on the slab.
    pub unsafe fn check(&self, cpus: usize) -> Result<(), &'static str> {
        // SAFETY: forwarded.
        unsafe { self.desc.check(self.base, self.class as usize, cpus) }
    }
}

/// Makes every free's claim of an object yield to the scheduler between
/// reading the slab's descriptor and touching the object (shuttle builds;
/// nothing otherwise): under PCT the freeing thread then loses its
/// priority there, so schedules put other threads' work inside that window
/// (`verify`'s stale-free suites). Process-wide; switch it off after.
pub fn yield_in_claims(on: bool) {
    #[cfg(all(shuttle, not(loom)))]
    crate::sync::CLAIM_YIELD.store(on, core::sync::atomic::Ordering::Relaxed);
    #[cfg(not(all(shuttle, not(loom))))]
    let _ = on;
}
