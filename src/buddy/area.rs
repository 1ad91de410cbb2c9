//! Allocation and free inside one area: the two-word protocol of the module
//! docs, each step one [`cas_update`].

use super::{bits, AreaWord, ChunkWord, Geometry};
use crate::cas::cas_update;
use crate::sync::{AtomicU64, Ordering};

/// What an allocation in one area did: the first page's offset (`None`: no
/// free block of that order here), the CAS attempts that lost a race, and
/// the reservations it gave back in fall-throughs (each counted in the
/// area's free count), so a search can tell its own count steps from other
/// threads' frees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Taken {
    pub(crate) offset: Option<u32>,
    pub(crate) retries: u32,
    pub(crate) fell: u32,
}

/// What [`Area::alloc_many`] took: blocks of one order in one chunk, as a
/// mask over the chunk's level of that order (empty: none here), plus the
/// CAS attempts that lost a race and the reservations given back, as in
/// [`Taken`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Many {
    chunk: u32,
    nodes: u64,
    pub(crate) retries: u32,
    pub(crate) fell: u32,
}

impl Many {
    /// The first page offsets of the blocks (order `k`) in the area.
    pub(crate) fn offsets(self, g: Geometry, k: u32) -> impl Iterator<Item = u32> {
        let base = self.chunk << g.chunk_order();
        let mut nodes = self.nodes;
        core::iter::from_fn(move || {
            let i = nodes.trailing_zeros();
            (nodes != 0).then(|| {
                nodes &= nodes - 1;
                base | (i << k)
            })
        })
    }
}

/// One area's words, borrowed from the region's metadata.
#[derive(Clone, Copy)]
pub(crate) struct Area<'a> {
    pub(crate) top: &'a AtomicU64,
    pub(crate) chunks: &'a [AtomicU64],
    /// Counts every step that gives pages back (a free's last CAS, and the
    /// reservation an allocation returns when it falls through a fragmented
    /// chunk), *after* that step: see [`Area::gave_back`].
    pub(crate) frees: &'a AtomicU64,
    pub(crate) g: Geometry,
}

impl Area<'_> {
    /// Allocates a block of order `k <= H` (see [`Taken`]).
    #[inline]
    pub(crate) fn alloc(&self, k: u32) -> Taken {
        let g = self.g;
        let mut t = Taken {
            offset: None,
            retries: 0,
            fell: 0,
        };
        if k > g.chunk_order() {
            let d = g.area_order() - k;
            let Ok(up) = cas_update(self.top, |w: AreaWord| w.alloc(g, d)) else {
                return t;
            };
            t.retries += up.retries;
            if k == g.area_order() {
                crate::probe::note(crate::probe::Probe::AreaClaim);
            }
            t.offset = Some(up.out << k);
            return t;
        }
        let many = self.alloc_many(k, 1);
        t.offset = many.offsets(g, k).next();
        t.retries = many.retries;
        t.fell = many.fell;
        t
    }

    /// Allocates up to `max` (at least one) blocks of order `k <= c`, all
    /// in one chunk, with the two steps of a single allocation: step 1
    /// reserves the pages of as many as the chunk's count has room for,
    /// step 2 takes that many nodes with one chunk CAS (the linearization
    /// point of every block taken) and gives back the pages of any it could
    /// not take. For order 0 it takes all it reserved (invariant R).
    #[inline]
    pub(crate) fn alloc_many(&self, k: u32, max: u32) -> Many {
        let g = self.g;
        debug_assert!(k <= g.chunk_order() && max >= 1);
        let mut many = Many {
            chunk: 0,
            nodes: 0,
            retries: 0,
            fell: 0,
        };
        let pages = 1 << k;
        let d = g.chunk_order() - k;
        let mut fragmented = 0u64;
        loop {
            // Step 1: reserve the pages in the fullest chunk with room.
            let Ok(up) = cas_update(self.top, |w: AreaWord| {
                let j = w.pick_chunk(g, pages, fragmented)?;
                let n = max.min((g.chunk_pages() - w.used(g, j)) / pages);
                // Mutant: the count shows one block of a batch.
                let held = if crate::mutant::on(crate::mutant::Mutant::BatchReservesOne) {
                    pages
                } else {
                    n * pages
                };
                Some((w.reserve(g, j, held)?, (j, n)))
            }) else {
                return many;
            };
            many.retries += up.retries;
            let (j, n) = up.out;
            // Step 2: take the nodes in that chunk (linearization point).
            match cas_update(&self.chunks[j as usize], |w: ChunkWord| {
                w.alloc_many(g, d, n)
            }) {
                Ok(node) => {
                    many.retries += node.retries;
                    (many.chunk, many.nodes) = (j, node.out);
                    if node.out.count_ones() > 1 {
                        crate::probe::note(crate::probe::Probe::Batch);
                    }
                    let short = n - node.out.count_ones();
                    if short > 0 {
                        // Fewer aligned runs than pages: give the rest back.
                        many.retries += self.unreserve(j, short * pages);
                        many.fell += 1;
                    }
                    return many;
                }
                Err(_) => {
                    // Enough pages but no aligned run of them: give them back.
                    crate::probe::note(crate::probe::Probe::FallThrough);
                    many.retries += self.unreserve(j, n * pages);
                    many.fell += 1;
                    fragmented |= 1 << j;
                }
            }
        }
    }

    /// Frees the block of order `k` starting at page `offset`: `Ok` with the
    /// CAS attempts that lost a race, or `Err` with those made before it
    /// found no such block allocated (nothing is changed then).
    #[inline]
    pub(crate) fn free(&self, offset: u32, k: u32) -> Result<u32, u32> {
        let g = self.g;
        if k > g.chunk_order() {
            let d = g.area_order() - k;
            let up = cas_update(self.top, |w: AreaWord| {
                Some((w.release(d, offset >> k)?, ()))
            })
            .map_err(|_| 0u32)?;
            self.gave_back();
            return Ok(up.retries);
        }
        let j = offset >> g.chunk_order();
        let node = (offset & (g.chunk_pages() - 1)) >> k;
        let d = g.chunk_order() - k;
        let mut retries = 0;
        // Mutant: the count drops before the node is released (steps swapped).
        let swapped = crate::mutant::on(crate::mutant::Mutant::UnreserveFirst);
        if swapped {
            retries += self.unreserve(j, 1 << k);
        }
        // Step 1: release the node in its chunk.
        let up = cas_update(&self.chunks[j as usize], |w: ChunkWord| {
            Some((w.release(d, node)?, ()))
        })
        .map_err(|_| retries)?;
        retries += up.retries;
        // Step 2: return the pages to the count (linearization point).
        if !swapped {
            retries += self.unreserve(j, 1 << k);
        }
        Ok(retries)
    }

    /// Grows the live block of order `k` at page `offset` in place to order
    /// `k + 1` by taking its buddy: `Ok` with the CAS attempts that lost a
    /// race, `Err` with those made when the grow is refused (nothing
    /// changed then). Refused when the block is an upper half or its buddy
    /// is not entirely free, and for `k >= H` (runs of areas grow in
    /// `Heap`).
    ///
    /// Order `k < c` follows the allocation protocol: (1) `reserve` the
    /// buddy's `2^k` pages on the area word, (2) `ChunkWord::grow`; if the
    /// buddy is taken, `unreserve` (counted by [`Self::gave_back`], as a
    /// fall-through is, so a search that overlapped does not report
    /// out-of-memory on the strength of the held pages). Between the steps
    /// the pages are the grow's `R_j` in Invariant R, afterwards part of
    /// `A_j`. Order `c` (a chunk root into a top leaf): (1)
    /// `AreaWord::absorb_chunk` takes the idle buddy chunk and moves the
    /// block from its chunk's count to the leaf, (2) the chunk word's root
    /// bit is cleared; in between, the chunk word holds a bit that its
    /// count no longer shows, but the leaf covers the chunk, so no
    /// `reserve`, allocation or free but this grow's touches it (the one
    /// exception to Invariant R, for a chunk under a top node). Order
    /// `c < k < H`: one CAS on the area word.
    pub(crate) fn grow(&self, offset: u32, k: u32) -> Result<u32, u32> {
        let g = self.g;
        let c = g.chunk_order();
        if k >= g.area_order() {
            return Err(0);
        }
        if k == c {
            let j = offset >> c;
            let up = cas_update(self.top, |w: AreaWord| Some((w.absorb_chunk(g, j)?, ())))
                .map_err(|_| 0u32)?;
            let root = cas_update(&self.chunks[j as usize], |w: ChunkWord| {
                Some((w.release(0, 0)?, ()))
            });
            // Our block is the chunk's root, which only we change.
            let root = root.unwrap_or_else(|w| panic!("magbuddy: chunk {j} lost its root: {w:?}"));
            return Ok(up.retries + root.retries);
        }
        if k > c {
            let d = g.area_order() - k;
            let up = cas_update(self.top, |w: AreaWord| {
                Some((w.grow(g, d, offset >> k)?, ()))
            })
            .map_err(|_| 0u32)?;
            return Ok(up.retries);
        }
        let j = offset >> c;
        let node = (offset & (g.chunk_pages() - 1)) >> k;
        let d = c - k;
        let chunk = &self.chunks[j as usize];
        // A look first, so a grow that cannot succeed holds no pages at all.
        if ChunkWord(self.load_chunk(j)).grow(g, d, node).is_none() {
            return Err(0);
        }
        // Step 1: the buddy's pages on the count.
        let up = cas_update(self.top, |w: AreaWord| Some((w.reserve(g, j, 1 << k)?, ())))
            .map_err(|_| 0u32)?;
        let mut retries = up.retries;
        // Step 2: merge in the chunk word.
        match cas_update(chunk, |w: ChunkWord| Some((w.grow(g, d, node)?, ()))) {
            Ok(up) => Ok(retries + up.retries),
            Err(_) => {
                retries += self.unreserve(j, 1 << k);
                Err(retries)
            }
        }
    }

    /// Shrinks the live block of order `k` at page `offset` in place to its
    /// lower half, freeing the upper one: the CAS attempts that lost a race,
    /// or `Err` when there is no such step here (`k == 0`, `k > H`).
    /// Order `k <= c` follows the free protocol: (1) `ChunkWord::split`,
    /// (2) `unreserve` the upper half's `2^(k-1)` pages (its `F_j` in
    /// between). Order `c + 1` (a top leaf into its lower chunk's root),
    /// the grow's steps reversed: (1) the root bit into the covered chunk
    /// word, (2) `AreaWord::release_to_chunk` clears the leaf and counts
    /// the root's pages. Order `k > c + 1`: one CAS on the area word. All
    /// give the pages back through [`Self::gave_back`].
    pub(crate) fn shrink(&self, offset: u32, k: u32) -> Result<u32, u32> {
        let g = self.g;
        let c = g.chunk_order();
        if k == 0 || k > g.area_order() {
            return Err(0);
        }
        if k == c + 1 {
            let j = offset >> c;
            // The leaf covers chunk `j`, so its word is ours and all-zero.
            let root = cas_update(&self.chunks[j as usize], |w: ChunkWord| {
                (w.0 == 0).then_some((ChunkWord(bits::node_bit(0, 0)), ()))
            })
            .map_err(|_| 0u32)?;
            let up = cas_update(self.top, |w: AreaWord| {
                Some((w.release_to_chunk(g, j)?, ()))
            });
            let up = up.unwrap_or_else(|w| panic!("magbuddy: top leaf over chunk {j} lost: {w:?}"));
            self.gave_back();
            return Ok(root.retries + up.retries);
        }
        if k > c {
            let d = g.area_order() - k;
            let up = cas_update(self.top, |w: AreaWord| {
                Some((w.split(g, d, offset >> k)?, ()))
            })
            .map_err(|_| 0u32)?;
            self.gave_back();
            return Ok(up.retries);
        }
        let j = offset >> c;
        let node = (offset & (g.chunk_pages() - 1)) >> k;
        let d = c - k;
        let up = cas_update(&self.chunks[j as usize], |w: ChunkWord| {
            Some((w.split(g, d, node)?, ()))
        })
        .map_err(|_| 0u32)?;
        Ok(up.retries + self.unreserve(j, 1 << (k - 1)))
    }

    /// Counts a step that gave pages back, after it. A search that reads
    /// every area's count before and after a pass that found nothing, and
    /// sees no change, may report that nothing was free: allocations only
    /// take pages away, and a free counted only after the search is
    /// linearized at its count (or just before the first allocation that
    /// takes one of its pages, if that comes first), so after the `None`.
    #[inline]
    fn gave_back(&self) {
        // Release: a search that reads the new count (Acquire) also sees the
        // words the step changed.
        self.frees.fetch_add(1, Ordering::Release);
    }

    /// Returns `pages` to chunk `j`'s count; the CAS attempts that lost a race.
    fn unreserve(&self, j: u32, pages: u32) -> u32 {
        let g = self.g;
        match cas_update(self.top, |w: AreaWord| {
            Some((w.unreserve(g, j, pages)?, ()))
        }) {
            Ok(up) => {
                self.gave_back();
                up.retries
            }
            // Invariant R: our own pages are part of used(j).
            Err(w) => panic!("magbuddy: reservation count of chunk {j} below {pages}: {w:?}"),
        }
    }

    /// The allocated block covering page `offset`, as `(order, first page)`.
    /// A racy snapshot: exact only when nobody changes the area meanwhile.
    pub(crate) fn block_at(&self, offset: u32) -> Option<(u32, u32)> {
        let g = self.g;
        let chunk = offset >> g.chunk_order();
        if let Some((d, j)) = AreaWord(self.load_top()).block_of(g, chunk) {
            let k = g.area_order() - d;
            return Some((k, j << k));
        }
        let word = ChunkWord(self.load_chunk(chunk));
        let (d, j) = word.block_of(g, offset & (g.chunk_pages() - 1))?;
        let k = g.chunk_order() - d;
        Some((k, (chunk << g.chunk_order()) | (j << k)))
    }

    /// The area word. Relaxed: a snapshot for reports and error messages; no
    /// memory is accessed on the strength of it.
    pub(crate) fn load_top(&self) -> u64 {
        self.top.load(crate::sync::Ordering::Relaxed)
    }

    /// Chunk word `j`. Relaxed for the same reason as [`Self::load_top`].
    pub(crate) fn load_chunk(&self, j: u32) -> u64 {
        self.chunks[j as usize].load(crate::sync::Ordering::Relaxed)
    }
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn words(g: Geometry) -> (AtomicU64, Vec<AtomicU64>, AtomicU64) {
        (
            AtomicU64::new(0),
            (0..g.chunks_per_area())
                .map(|_| AtomicU64::new(0))
                .collect(),
            AtomicU64::new(0),
        )
    }

    #[test]
    fn fills_and_empties_at_every_order() {
        let g = Geometry::DEFAULT;
        let (top, chunks, frees) = words(g);
        let area = Area {
            top: &top,
            chunks: &chunks,
            frees: &frees,
            g,
        };
        for k in 0..=g.area_order() {
            let mut got = Vec::new();
            while let Some(off) = area.alloc(k).offset {
                assert_eq!(off % (1 << k), 0, "aligned");
                assert_eq!(area.block_at(off), Some((k, off)));
                got.push(off);
            }
            assert_eq!(got.len(), 1 << (g.area_order() - k), "order {k}");
            for off in got {
                area.free(off, k).unwrap();
                assert!(area.free(off, k).is_err(), "double free refused");
            }
            assert_eq!(area.load_top(), 0);
        }
    }

    #[test]
    fn grows_and_shrinks_in_place_where_the_words_allow() {
        let g = Geometry::new(2, 5).unwrap(); // 4-page chunks, 8 chunks
        let (top, chunks, frees) = words(g);
        let area = Area {
            top: &top,
            chunks: &chunks,
            frees: &frees,
            g,
        };
        let p = area.alloc(0).offset.unwrap();
        assert_eq!(p, 0);
        area.grow(0, 0).unwrap();
        area.grow(0, 1).unwrap();
        assert_eq!(area.block_at(3), Some((2, 0)));
        assert_eq!(AreaWord(area.load_top()).used(g, 0), 4);
        // Chunk root to top leaf (two words, in order), then shrink back:
        // each step frees the upper half and counts a free.
        area.grow(0, 2).unwrap();
        assert_eq!(area.block_at(7), Some((3, 0)));
        assert_eq!(AreaWord(area.load_top()).used(g, 0), 0);
        assert_eq!(area.load_chunk(0), 0);
        let before = frees.load(Ordering::Relaxed);
        area.shrink(0, 3).unwrap();
        assert_eq!(area.block_at(3), Some((2, 0)));
        assert_eq!(area.block_at(4), None);
        area.shrink(0, 2).unwrap();
        area.shrink(0, 1).unwrap();
        assert_eq!(frees.load(Ordering::Relaxed), before + 3);
        assert_eq!(AreaWord(area.load_top()).used(g, 0), 1);
        // A neighbour in the buddy: refused, nothing held afterwards.
        let q = area.alloc(0).offset.unwrap();
        assert_eq!(q, 1, "best fit fills the hole");
        assert!(area.grow(0, 0).is_err());
        assert!(area.grow(1, 0).is_err(), "an upper half");
        assert_eq!(AreaWord(area.load_top()).used(g, 0), 2);
        area.free(0, 0).unwrap();
        area.free(1, 0).unwrap();
        // Top nodes: order 3 (two chunks) grows to 4, shrinks back to 3;
        // refused if a chunk under the buddy holds a page.
        let t = area.alloc(3).offset.unwrap();
        assert_eq!(t % 16, 0);
        area.grow(t, 3).unwrap();
        assert_eq!(area.block_at(t + 15), Some((4, t)));
        area.shrink(t, 4).unwrap();
        // Top leaf to chunk root: the upper chunk is free again.
        area.shrink(t, 3).unwrap();
        assert_eq!(area.block_at(t + 3), Some((2, t)));
        assert_eq!(area.block_at(t + 4), None);
        area.grow(t, 2).unwrap();
        let other = area.alloc(0).offset.unwrap();
        assert!(area.grow(t, 3).is_err() || other >= t + 16 || other < t);
        area.free(t, 3).unwrap();
        area.free(other, 0).unwrap();
        assert_eq!(area.load_top(), 0);
    }

    #[test]
    fn fragmentation_falls_through_to_the_next_chunk() {
        let g = Geometry::new(2, 4).unwrap(); // 4-page chunks, 4 chunks
        let (top, chunks, frees) = words(g);
        let area = Area {
            top: &top,
            chunks: &chunks,
            frees: &frees,
            g,
        };
        // Pages 0 and 2 of chunk 0: two free pages but no free pair there.
        let a = area.alloc(0).offset.unwrap();
        let b = area.alloc(0).offset.unwrap();
        let c = area.alloc(0).offset.unwrap();
        area.free(b, 0).unwrap();
        assert!(a < 4 && c < 4);
        let pair = area.alloc(1).offset.unwrap();
        assert!(pair >= 4 || (pair..pair + 2).all(|p| p != a && p != c));
        assert_eq!(
            AreaWord(area.load_top()).used(g, 0),
            2 + u32::from(pair < 4) * 2
        );
    }
}
