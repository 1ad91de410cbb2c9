//! The two packed word types of an area and their pure transitions.
//!
//! Transitions take a word by value and return `Some(new)` when their
//! precondition holds or `None` ("write nothing"); [`crate::cas::cas_update`]
//! is the only loop that applies them, so every state change is one CAS.

use super::bits::{self, low_mask, node_bit};
use super::Geometry;
use crate::cas::Packed;

/// The parts both word types share: raw-bit conversion for
/// [`crate::cas::cas_update`] and releasing an allocated node.
macro_rules! packed_word {
    ($($word:ident),*) => {$(
        impl Packed for $word {
            #[inline]
            fn from_bits(bits: u64) -> Self {
                Self(bits)
            }
            #[inline]
            fn bits(self) -> u64 {
                self.0
            }
        }

        impl $word {
            /// Releases node `j` of level `d`; `None` if it is not allocated.
            #[inline]
            pub(crate) fn release(self, d: u32, j: u32) -> Option<Self> {
                let bit = node_bit(d, j);
                // Mutant: clear the bit without checking that it is set.
                if crate::mutant::on(crate::mutant::Mutant::FreeWithoutCheck) {
                    return Some(Self(self.0 & !bit));
                }
                (self.0 & bit != 0).then_some(Self(self.0 & !bit))
            }
        }
    )*};
}

packed_word!(ChunkWord, AreaWord);

/// One chunk: an exact buddy tree over `2^c` pages, one allocation bit per
/// node (`c + 1` levels, root = order `c`). All-zero means entirely free.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkWord(pub(crate) u64);

impl ChunkWord {
    /// Allocates a free node of level `d` (order `c - d`); returns its index.
    #[cfg(test)]
    pub(crate) fn alloc(self, g: Geometry, d: u32) -> Option<(Self, u32)> {
        self.alloc_many(g, d, 1)
            .map(|(w, nodes)| (w, nodes.trailing_zeros()))
    }

    /// Allocates up to `max` (at least one) free nodes of level `d`; returns
    /// them as a mask over the level. Nodes of one level are disjoint, so
    /// any free ones can be taken together; each pick prefers a node whose
    /// buddy is taken, so pairs fill up before whole ones are broken.
    #[inline]
    pub(crate) fn alloc_many(self, g: Geometry, d: u32, max: u32) -> Option<(Self, u64)> {
        let mut free = bits::free_at(self.0, g.chunk_levels(), 0, d);
        if free == 0 {
            return None;
        }
        let (mut tree, mut nodes) = (self.0, 0u64);
        for _ in 0..max {
            if free == 0 {
                break;
            }
            let j = bits::pick(free, d);
            free &= !(1 << j);
            nodes |= 1 << j;
            tree |= node_bit(d, j);
        }
        Some((Self(tree), nodes))
    }

    /// Grows allocated node `j` of level `d` into its parent (in-place
    /// grow): `None` unless it is a lower half whose buddy holds nothing.
    #[inline]
    pub(crate) fn grow(self, g: Geometry, d: u32, j: u32) -> Option<Self> {
        bits::merge_up(self.0, g.chunk_levels(), 0, d, j).map(Self)
    }

    /// Shrinks allocated node `j` of level `d` to its lower half (in-place
    /// shrink; the upper half becomes free); `None` for a leaf or a free node.
    #[inline]
    pub(crate) fn split(self, g: Geometry, d: u32, j: u32) -> Option<Self> {
        bits::split_down(self.0, g.chunk_levels(), d, j).map(Self)
    }

    /// Pages of the chunk not covered by an allocated node.
    pub(crate) fn free_pages(self, g: Geometry) -> u32 {
        let leaves = g.chunk_levels() - 1;
        g.chunk_pages() - bits::covered_at(self.0, leaves).count_ones()
    }

    /// The allocated node covering page `leaf`, as `(level, index)`.
    pub(crate) fn block_of(self, g: Geometry, leaf: u32) -> Option<(u32, u32)> {
        bits::allocated_on_path(self.0, g.chunk_levels(), leaf)
    }

    /// A chunk whose pages `[lo, hi)` are marked allocated, as the buddy
    /// decomposition of that range (used at init for pages outside the region).
    pub(crate) fn with_reserved(g: Geometry, lo: u32, hi: u32) -> Self {
        let c = g.chunk_order();
        let mut word = 0;
        let mut p = lo;
        while p < hi {
            // Largest aligned block starting at p that fits in [p, hi).
            let mut k = if p == 0 { c } else { p.trailing_zeros().min(c) };
            while p + (1 << k) > hi {
                k -= 1;
            }
            word |= node_bit(c - k, p >> k);
            p += 1 << k;
        }
        Self(word)
    }

    /// Structural check: no allocated node lies under another.
    pub(crate) fn check(self, g: Geometry) -> Result<(), &'static str> {
        if self.0 & !low_mask((1 << g.chunk_levels()) - 1) != 0 {
            return Err("chunk word has bits outside its tree");
        }
        for d in 1..g.chunk_levels() {
            if bits::level(self.0, d) & bits::spread(bits::covered_at(self.0, d - 1)) != 0 {
                return Err("chunk word has an allocated node under an allocated node");
            }
        }
        Ok(())
    }
}

/// One area's top word: allocation bits for the `H - c` levels above the
/// chunks (orders `c+1 ..= H`), then per chunk a reservation count of
/// `c + 1` bits: pages of that chunk that are allocated or reserved by an
/// allocation in flight. All-zero means the whole area is free.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AreaWord(pub(crate) u64);

impl AreaWord {
    #[inline]
    fn count_shift(g: Geometry, j: u32) -> u32 {
        ((1 << g.top_levels()) - 1) + j * g.count_bits()
    }

    /// Pages of chunk `j` that are reserved.
    #[inline]
    pub(crate) fn used(self, g: Geometry, j: u32) -> u32 {
        ((self.0 >> Self::count_shift(g, j)) & low_mask(g.count_bits())) as u32
    }

    /// Mask of chunks with a non-zero reservation.
    #[inline]
    pub(crate) fn busy_chunks(self, g: Geometry) -> u64 {
        (0..g.chunks_per_area()).fold(0, |m, j| m | (((self.used(g, j) != 0) as u64) << j))
    }

    /// Mask of chunks under an allocated top node.
    #[inline]
    pub(crate) fn covered_chunks(self, g: Geometry) -> u64 {
        bits::spread(bits::covered_at(self.0, g.top_levels() - 1))
    }

    /// Pages that a reservation could still obtain.
    pub(crate) fn free_pages(self, g: Geometry) -> u32 {
        let covered = self.covered_chunks(g);
        (0..g.chunks_per_area())
            .filter(|j| covered & (1 << j) == 0)
            .map(|j| g.chunk_pages() - self.used(g, j))
            .sum()
    }

    /// The chunk a reservation of `pages` should go to: not covered, not in
    /// `exclude`, with room; among those the fullest (best fit), so partly used
    /// chunks fill up and empty ones stay whole for larger blocks.
    #[inline]
    pub(crate) fn pick_chunk(self, g: Geometry, pages: u32, exclude: u64) -> Option<u32> {
        let blocked = self.covered_chunks(g) | exclude;
        let mut best: Option<(u32, u32)> = None;
        for j in 0..g.chunks_per_area() {
            let used = self.used(g, j);
            if blocked & (1 << j) == 0
                && used + pages <= g.chunk_pages()
                && best.is_none_or(|(_, u)| used > u)
            {
                best = Some((j, used));
            }
        }
        best.map(|(j, _)| j)
    }

    /// Reserves `pages` in chunk `j` (allocation step 1).
    #[inline]
    pub(crate) fn reserve(self, g: Geometry, j: u32, pages: u32) -> Option<Self> {
        let free = self.covered_chunks(g) & (1 << j) == 0;
        (free && self.used(g, j) + pages <= g.chunk_pages())
            .then(|| Self(self.0 + ((pages as u64) << Self::count_shift(g, j))))
    }

    /// Returns `pages` of chunk `j` (free step 2, or the undo of step 1).
    #[inline]
    pub(crate) fn unreserve(self, g: Geometry, j: u32, pages: u32) -> Option<Self> {
        (self.used(g, j) >= pages)
            .then(|| Self(self.0 - ((pages as u64) << Self::count_shift(g, j))))
    }

    /// Allocates a free top node of level `d` (order `H - d`): no allocated
    /// node above or below it and no reservation in its chunks.
    #[inline]
    pub(crate) fn alloc(self, g: Geometry, d: u32) -> Option<(Self, u32)> {
        let tree = self.0 & low_mask((1 << g.top_levels()) - 1);
        let free = bits::free_at(tree, g.top_levels(), self.busy_chunks(g), d);
        if free == 0 {
            return None;
        }
        let j = bits::pick(free, d);
        Some((Self(self.0 | node_bit(d, j)), j))
    }

    /// Grows allocated top node `j` of level `d` into its parent: `None`
    /// unless it is a lower half whose buddy is free, with no allocated node
    /// and no reservation in its chunks (the same test as [`Self::alloc`]).
    #[inline]
    pub(crate) fn grow(self, g: Geometry, d: u32, j: u32) -> Option<Self> {
        bits::merge_up(self.0, g.top_levels(), self.busy_chunks(g), d, j).map(Self)
    }

    /// Shrinks allocated top node `j` of level `d` to its lower half, which
    /// must still be a top node (`d + 1 < H - c`); the counts are untouched.
    #[inline]
    pub(crate) fn split(self, g: Geometry, d: u32, j: u32) -> Option<Self> {
        bits::split_down(self.0, g.top_levels(), d, j).map(Self)
    }

    /// Grows a chunk root into a top node (in-place grow from order `c` to
    /// `c + 1`, step 1 of 2): chunk `j` (even) holds exactly its root's
    /// `2^c` pages (`used(j) == 2^c`: no reservation in flight), chunk
    /// `j + 1` is idle and nothing above is allocated; the count of `j`
    /// drops to 0 and the top leaf over both chunks is set. Chunk word `j`
    /// still holds its root bit until step 2 clears it; the leaf covers it
    /// meanwhile, so no `reserve` reaches it.
    #[inline]
    pub(crate) fn absorb_chunk(self, g: Geometry, j: u32) -> Option<Self> {
        let leaf = g.top_levels() - 1;
        let tree = self.0 & low_mask((1 << g.top_levels()) - 1);
        let ok = j % 2 == 0
            && self.used(g, j) == g.chunk_pages()
            && bits::free_at(tree, g.top_levels(), self.busy_chunks(g) & !(1 << j), leaf)
                & (1 << (j / 2))
                != 0;
        ok.then(|| {
            Self(
                (self.0 - ((g.chunk_pages() as u64) << Self::count_shift(g, j)))
                    | node_bit(leaf, j / 2),
            )
        })
    }

    /// Shrinks a top leaf into the root of its lower chunk (in-place shrink
    /// from order `c + 1` to `c`, step 2 of 2, after the chunk word got its
    /// root bit): clears the leaf over chunks `j` and `j + 1` and counts the
    /// root's `2^c` pages in chunk `j`.
    #[inline]
    pub(crate) fn release_to_chunk(self, g: Geometry, j: u32) -> Option<Self> {
        let bit = node_bit(g.top_levels() - 1, j / 2);
        (j % 2 == 0 && self.0 & bit != 0 && self.used(g, j) == 0)
            .then(|| Self((self.0 & !bit) + ((g.chunk_pages() as u64) << Self::count_shift(g, j))))
    }

    /// The allocated top node covering chunk `chunk`, as `(level, index)`.
    pub(crate) fn block_of(self, g: Geometry, chunk: u32) -> Option<(u32, u32)> {
        let tree = self.0 & low_mask((1 << g.top_levels()) - 1);
        bits::allocated_on_path(tree, g.top_levels(), chunk >> 1)
    }

    /// A top word with the given per-chunk reservations and no top node
    /// allocated (init).
    pub(crate) fn with_counts(g: Geometry, used: impl Iterator<Item = u32>) -> Self {
        Self(used.enumerate().fold(0, |w, (j, u)| {
            w | ((u as u64) << Self::count_shift(g, j as u32))
        }))
    }

    /// Structural check: counts in range, no allocated node under another,
    /// no reservation under an allocated node.
    pub(crate) fn check(self, g: Geometry) -> Result<(), &'static str> {
        let t = g.top_levels();
        let tree = self.0 & low_mask((1 << t) - 1);
        if self.0 >> Self::count_shift(g, g.chunks_per_area()) != 0 {
            return Err("area word has bits above its last count");
        }
        for d in 1..t {
            if bits::level(tree, d) & bits::spread(bits::covered_at(tree, d - 1)) != 0 {
                return Err("area word has an allocated node under an allocated node");
            }
        }
        if self.busy_chunks(g) & self.covered_chunks(g) != 0 {
            return Err("area word has a reservation under an allocated node");
        }
        if (0..g.chunks_per_area()).any(|j| self.used(g, j) > g.chunk_pages()) {
            return Err("area word has a count above the chunk size");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: Geometry = Geometry::DEFAULT;

    #[test]
    fn chunk_alloc_release_roundtrip_every_order() {
        for k in 0..=G.chunk_order() {
            let d = G.chunk_order() - k;
            let mut w = ChunkWord(0);
            let mut got = 0;
            while let Some((n, _)) = w.alloc(G, d) {
                w = n;
                got += 1;
                w.check(G).unwrap();
            }
            assert_eq!(got, 1 << d, "order {k}");
            assert_eq!(w.free_pages(G), 0);
            for j in 0..(1 << d) {
                w = w.release(d, j).unwrap();
            }
            assert_eq!(w, ChunkWord(0));
            assert!(w.release(d, 0).is_none(), "double release refused");
        }
    }

    #[test]
    fn chunk_exhaustive_small_geometry() {
        // Every 3-level chunk word (c = 2): alloc never returns a node that
        // overlaps an allocated one, and finds one whenever one exists.
        let g = Geometry::new(2, 4).unwrap();
        for raw in 0u64..(1 << 7) {
            let w = ChunkWord(raw);
            if w.check(g).is_err() {
                continue;
            }
            for d in 0..3 {
                let pages = 1u32 << (2 - d);
                let by_scan = (0..(4 / pages)).any(|b| {
                    (b * pages..(b + 1) * pages).all(|leaf| w.block_of(g, leaf).is_none())
                });
                match w.alloc(g, d) {
                    Some((n, j)) => {
                        n.check(g).unwrap();
                        assert!(by_scan);
                        for leaf in j * pages..(j + 1) * pages {
                            assert_eq!(w.block_of(g, leaf), None);
                            assert_eq!(n.block_of(g, leaf), Some((d, j)));
                        }
                    }
                    None => assert!(!by_scan, "{raw:#b} d={d}"),
                }
                // Several at once: exactly the free blocks of the level (as
                // many as asked), all of them free before, each allocated after.
                let free = (0..(4 / pages))
                    .filter(|&b| {
                        (b * pages..(b + 1) * pages).all(|leaf| w.block_of(g, leaf).is_none())
                    })
                    .fold(0u64, |m, b| m | 1 << b);
                for max in 1..=4u32 {
                    let Some((n, nodes)) = w.alloc_many(g, d, max) else {
                        assert_eq!(free, 0);
                        continue;
                    };
                    n.check(g).unwrap();
                    assert_eq!(nodes.count_ones(), max.min(free.count_ones()));
                    assert_eq!(nodes & !free, 0, "{raw:#b} d={d} took a used node");
                    for j in (0..(4 / pages)).filter(|j| nodes & (1 << j) != 0) {
                        for leaf in j * pages..(j + 1) * pages {
                            assert_eq!(n.block_of(g, leaf), Some((d, j)));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn reserved_range_decomposes_into_aligned_blocks() {
        let w = ChunkWord::with_reserved(G, 3, 29);
        w.check(G).unwrap();
        assert_eq!(w.free_pages(G), 32 - 26);
        for leaf in 0..32 {
            assert_eq!(
                w.block_of(G, leaf).is_some(),
                (3..29).contains(&leaf),
                "leaf {leaf}"
            );
        }
        assert_eq!(ChunkWord::with_reserved(G, 0, 32).0, 1);
    }

    #[test]
    fn area_reserve_blocks_top_alloc_and_back() {
        let w = AreaWord(0);
        let (top, j) = w.alloc(G, 0).unwrap();
        assert_eq!(j, 0);
        assert!(top.reserve(G, 0, 1).is_none(), "covered chunk refuses");
        let r = w.reserve(G, 3, 2).unwrap();
        assert_eq!(r.used(G, 3), 2);
        assert!(r.alloc(G, 0).is_none(), "root needs every chunk idle");
        // Chunk 3 lies under top leaf 1 (level 2) and its parents.
        let (r2, leaf) = r.alloc(G, 2).unwrap();
        assert_ne!(leaf, 1);
        r2.check(G).unwrap();
        assert_eq!(r.unreserve(G, 3, 2).unwrap(), AreaWord(0));
        assert!(w.unreserve(G, 3, 1).is_none());
        assert_eq!(w.free_pages(G), 256);
        assert_eq!(r.free_pages(G), 254);
        assert_eq!(top.free_pages(G), 0);
        let full = (0..8).fold(AreaWord(0), |w, j| w.reserve(G, j, 32).unwrap());
        assert!(full.reserve(G, 0, 1).is_none());
        assert_eq!(full.pick_chunk(G, 1, 0), None);
    }

    #[test]
    fn chunk_grow_and_split_every_order() {
        // A page at offset 0 grows to the whole chunk while the rest is free,
        // and splits back down to one page.
        let c = G.chunk_order();
        let mut w = ChunkWord(0).alloc(G, c).unwrap().0;
        for d in (1..=c).rev() {
            let n = w.grow(G, d, 0).unwrap();
            assert_eq!(n.split(G, d - 1, 0), Some(w));
            n.check(G).unwrap();
            assert_eq!(n.free_pages(G), 32 - (1 << (c - d + 1)));
            w = n;
        }
        assert_eq!(w, ChunkWord(1));
        assert!(
            w.grow(G, 0, 0).is_none(),
            "a chunk root grows in the area word"
        );
        // Page 0 with page 1 allocated, or an upper half: refused.
        let two = ChunkWord(0).alloc(G, c).unwrap().0;
        let two = ChunkWord(two.0 | node_bit(c, 1));
        assert!(two.grow(G, c, 0).is_none());
        assert!(two.grow(G, c, 1).is_none());
        assert!(ChunkWord(0).grow(G, c, 0).is_none(), "a free node");
    }

    #[test]
    fn area_grow_needs_idle_buddy_chunks() {
        // Top leaf 0 (chunks 0-1) of the default geometry: level 2.
        let w = AreaWord(0).alloc(G, 2).unwrap().0;
        let grown = w.grow(G, 2, 0).unwrap();
        assert_eq!(grown.covered_chunks(G), 0b1111);
        assert_eq!(grown.split(G, 1, 0), Some(w));
        assert!(grown.split(G, 2, 0).is_none(), "its halves are chunk roots");
        // A reservation in chunk 2 (under the buddy) refuses the grow.
        let r = w.reserve(G, 2, 1).unwrap();
        assert!(r.grow(G, 2, 0).is_none());
        assert_eq!(r.unreserve(G, 2, 1).unwrap().grow(G, 2, 0), Some(grown));
        let root = grown.grow(G, 1, 0).unwrap().grow(G, 1, 0);
        assert!(root.is_none(), "node (0, 0) is now held, not (1, 0)");
        let root = grown.grow(G, 1, 0).unwrap();
        assert_eq!(root, AreaWord(1));
        assert_eq!(root.free_pages(G), 0);
    }

    #[test]
    fn chunk_root_becomes_a_top_leaf_and_back() {
        // Chunk 2 held whole (its root: 32 pages counted), chunk 3 idle.
        let w = AreaWord(0).reserve(G, 2, 32).unwrap();
        let grown = w.absorb_chunk(G, 2).unwrap();
        assert_eq!(grown.used(G, 2), 0);
        assert_eq!(grown.covered_chunks(G), 0b1100);
        assert_eq!(grown.block_of(G, 3), Some((2, 1)));
        grown.check(G).unwrap();
        assert_eq!(grown.release_to_chunk(G, 2), Some(w));
        // Refused: an odd chunk, a chunk not held whole (a reservation in
        // flight on top of the root, or less), a busy buddy chunk.
        assert!(w.absorb_chunk(G, 3).is_none());
        assert!(AreaWord(0)
            .reserve(G, 2, 31)
            .unwrap()
            .absorb_chunk(G, 2)
            .is_none());
        assert!(w.reserve(G, 3, 1).unwrap().absorb_chunk(G, 2).is_none());
        // Refused: a top node already over the pair (the leaf covered).
        let (covered, _) = AreaWord(0).alloc(G, 0).unwrap();
        assert!(covered.absorb_chunk(G, 2).is_none());
        // Refused shrinks: no leaf, or a count already under it.
        assert!(w.release_to_chunk(G, 2).is_none());
        assert!(AreaWord(0).release_to_chunk(G, 2).is_none());
        assert!(grown.release_to_chunk(G, 3).is_none());
    }

    #[test]
    fn grow_exhaustive_small_geometry() {
        // Every well-formed 3-level chunk word (c = 2): a grow succeeds
        // exactly when the node is an allocated lower half whose buddy's
        // pages are all free, and the grown node covers the same pages plus
        // the buddy's.
        let g = Geometry::new(2, 4).unwrap();
        for raw in 0u64..(1 << 7) {
            let w = ChunkWord(raw);
            if w.check(g).is_err() {
                continue;
            }
            for d in 1..3 {
                for j in 0..(1u32 << d) {
                    let pages = 1u32 << (2 - d);
                    let buddy_free = ((j ^ 1) * pages..((j ^ 1) + 1) * pages)
                        .all(|leaf| w.block_of(g, leaf).is_none());
                    let held = raw & node_bit(d, j) != 0;
                    match w.grow(g, d, j) {
                        Some(n) => {
                            assert!(held && buddy_free && j % 2 == 0, "{raw:#b}");
                            n.check(g).unwrap();
                            for leaf in (j / 2) * 2 * pages..(j / 2 + 1) * 2 * pages {
                                assert_eq!(n.block_of(g, leaf), Some((d - 1, j / 2)));
                            }
                            assert_eq!(n.free_pages(g) + pages, w.free_pages(g));
                        }
                        None => assert!(!(held && buddy_free && j % 2 == 0), "{raw:#b}"),
                    }
                }
            }
        }
    }

    #[test]
    fn pick_chunk_is_best_fit() {
        let w = AreaWord::with_counts(G, [0, 5, 31, 20, 0, 0, 0, 0].into_iter());
        assert_eq!(w.pick_chunk(G, 1, 0), Some(2));
        assert_eq!(w.pick_chunk(G, 2, 0), Some(3));
        assert_eq!(w.pick_chunk(G, 2, 1 << 3), Some(1));
        w.check(G).unwrap();
    }
}
