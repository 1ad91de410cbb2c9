//! The lock-free buddy tree: one tree per *area*, packed into atomic words.
//!
//! # Shape
//!
//! An area holds `2^H` pages (`H` = [`Geometry::area_order`], default 8: 1 MiB
//! of 4 KiB pages). Its buddy tree has `H + 1` levels, cut into two kinds of
//! word so that one CAS updates a whole subtree:
//!
//! ```text
//!   order H ..= c+1   AreaWord  (one per area: top nodes + per-chunk counts)
//!   order c ..= 0     ChunkWord (one per chunk of 2^c pages: an exact subtree)
//! ```
//!
//! `c` = [`Geometry::chunk_order`] (default 5, so 6 levels per chunk word and
//! `H - c` = 3 levels in the area word). Both are parameters so that model
//! checkers can use trees of a few pages that still span several words.
//!
//! # Encoding
//!
//! | word        | bits                                   | meaning                                   |
//! |-------------|----------------------------------------|-------------------------------------------|
//! | `ChunkWord` | `2^(c+1) - 1` node bits, heap-ordered  | node allocated as one block               |
//! | `AreaWord`  | `2^(H-c) - 1` node bits, heap-ordered  | top node (order > c) allocated            |
//! | `AreaWord`  | `2^(H-c)` counts of `c + 1` bits       | pages of chunk `j` allocated or reserved  |
//!
//! Node `i` of a packed tree sits at bit `i - 1`; level `d` is a contiguous
//! field (see `bits`). Everything else — is a node *used* (it or a
//! descendant allocated), *covered* (it or an ancestor allocated), *free* — is
//! derived from these bits inside the transition, never stored, so there is no
//! redundant state to keep consistent. All-zero words mean "entirely free".
//! Default cost: 8 B per 32 pages plus 8 B per area, 0.006 % of the heap.
//!
//! # Transitions (pure functions in `word`, applied by one CAS each)
//!
//! | transition             | word  | precondition                                     | effect           |
//! |------------------------|-------|--------------------------------------------------|------------------|
//! | `reserve(j, n)`        | area  | chunk `j` not covered, `used(j) + n <= 2^c`      | `used(j) += n`   |
//! | `unreserve(j, n)`      | area  | `used(j) >= n`                                   | `used(j) -= n`   |
//! | `AreaWord::alloc(d)`   | area  | node free: nothing above/below, its chunks idle  | set node bit     |
//! | `AreaWord::release`    | area  | node bit set                                     | clear node bit   |
//! | `ChunkWord::alloc_many(d, n)` | chunk | up to `n` nodes free: nothing allocated above or below | set their bits |
//! | `ChunkWord::release`   | chunk | node bit set                                     | clear node bit   |
//! | `ChunkWord::grow(d,j)` | chunk | node set, `j` even, buddy's subtree empty        | node -> parent   |
//! | `ChunkWord::split`     | chunk | node set, not a leaf                             | node -> lower child |
//! | `AreaWord::grow(d,j)`  | area  | node set, `j` even, buddy free, its chunks idle  | node -> parent   |
//! | `AreaWord::split`      | area  | node set, its children top nodes                 | node -> lower child |
//! | `absorb_chunk(j)`      | area  | `used(j) = 2^c`, `j` even, chunk `j+1` idle, leaf free | `used(j) = 0`, set leaf |
//! | `release_to_chunk(j)`  | area  | leaf over `j` set, `used(j) = 0`                 | clear leaf, `used(j) = 2^c` |
//!
//! # Protocol across the two words
//!
//! * Block of order `k > c`: one CAS on the area word (`alloc` / `release`).
//! * Block of order `k <= c`, allocation: (1) `reserve(j, 2^k)` on the area
//!   word for a chunk `j` with room, (2) `ChunkWord::alloc_many(d, 1)` on
//!   chunk `j`; if the chunk is too fragmented for order `k`, `unreserve`
//!   and try the next chunk. Free: (1) `ChunkWord::release`,
//!   (2) `unreserve(j, 2^k)`.
//! * Up to `n` blocks of order `k <= c` at once (a page-magazine refill,
//!   `Area::alloc_many`): the same two steps, (1) reserving `m * 2^k` pages
//!   for the `m <= n` blocks chunk `j`'s count has room for, (2) taking up
//!   to `m` nodes with one CAS, then `unreserve` of the pages of any it
//!   could not take (order 0 takes all `m`: see below).
//!
//! * In-place grow of a block of order `k < c` (`Heap::resize_in_place`):
//!   (1) `reserve(j, 2^k)` for the buddy's pages, (2) `ChunkWord::grow`; if
//!   the buddy is taken, `unreserve` (counted as a free, like a
//!   fall-through). Shrink of `k <= c`: (1) `ChunkWord::split`,
//!   (2) `unreserve(j, 2^(k-1))`. Orders `k > c` grow and split with one
//!   area-word CAS. Between a chunk root (order `c`) and a top leaf
//!   (`c + 1`): grow (1) `AreaWord::absorb_chunk` (the count of the root's
//!   chunk to 0, the leaf set), (2) clear the root bit; shrink the reverse,
//!   (1) set the root bit, (2) `AreaWord::release_to_chunk`. Between the
//!   steps the chunk word holds a bit its count does not show, but the leaf
//!   covers the chunk, so only the owner of the leaf touches that word: the
//!   one exception to Invariant R below, for a chunk under a top node.
//!
//! Reservation runs top-down and release bottom-up, so the count is an upper
//! bound on what the chunk holds and never a flag that could be stale:
//!
//! **Invariant R.** `used(j) = A_j + R_j + F_j`, where `A_j` counts the pages
//! allocated in chunk word `j`, `R_j` the pages reserved by allocations (and
//! in-place grows) between their steps (1) and (2), and `F_j` the pages
//! released in the chunk by frees (and in-place shrinks) between their steps
//! (1) and (2).
//!
//! Consequences: `used(j) == 0` implies chunk word `j` is all-zero and nothing
//! is in flight in it, so a top node taken by `AreaWord::alloc` (which needs
//! its chunks idle) never overlaps a chunk block; while it is held `reserve`
//! on its chunks fails, so none can appear. For order 0 the pages free in the
//! chunk word are `2^c - A_j >= R_j`, so step (2) never fails after step (1).
//! After every operation completes, all counts and node bits are back to zero:
//! the whole area is one free block again, whatever the interleaving.
//!
//! Why counts and not NBBS's coalescing flags: with flags, a free decides in
//! one word that the subtree below will become empty and marks the word above
//! later. An allocation that climbs through the upper word in between leaves
//! it unchanged (its bit is already set), so the late mark lands on a subtree
//! that holds a live block, and a delayed unmark can then clear it. Counts
//! cannot be stale in that way: each operation adds or removes its own pages.
//! `papers/design.md` has the worked interleaving.
//!
//! # Linearization points
//!
//! * alloc, `k <= c`: the successful chunk CAS (step 2), for every block a
//!   batch takes; `k > c`: the area CAS.
//! * free, `k <= c`: the `unreserve` CAS (step 2), when the pages become
//!   obtainable again; `k > c`: the area CAS.
//!
//! # Progress
//!
//! A CAS fails only when another CAS on the same word succeeded, and the
//! fragmentation retry visits each chunk at most once per call: lock-free.

mod area;
pub(crate) mod bits;
mod word;

pub(crate) use area::Area;
pub(crate) use word::{AreaWord, ChunkWord};

/// Shape of the buddy tree: pages per chunk word and per area.
///
/// # Example
///
/// ```
/// use magbuddy::Geometry;
///
/// let g = Geometry::DEFAULT;
/// assert_eq!((g.chunk_pages(), g.area_pages()), (32, 256)); // 1 MiB areas
/// assert_eq!((g.chunk_levels(), g.top_levels(), g.chunks_per_area()), (6, 3, 8));
/// // Smaller trees for model checking: 4-page chunks in 16-page areas.
/// let small = Geometry::new(2, 4).unwrap();
/// assert_eq!((small.chunk_order(), small.area_order()), (2, 4));
/// assert!(Geometry::new(6, 8).is_none()); // a chunk word holds at most 32 pages
/// ```
///
/// A heap with another geometry: see [`HeapConfig`](crate::HeapConfig).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    chunk_order: u32,
    area_order: u32,
}

impl Geometry {
    /// 32-page chunks (6 levels per chunk word) in 256-page areas (1 MiB).
    pub const DEFAULT: Self = Self {
        chunk_order: 5,
        area_order: 8,
    };

    /// A geometry with `2^chunk_order` pages per chunk word and `2^area_order`
    /// per area, if both words fit in 64 bits (`chunk_order <= 5`,
    /// `area_order > chunk_order`).
    ///
    /// ```
    /// use magbuddy::Geometry;
    ///
    /// assert_eq!(Geometry::new(5, 8), Some(Geometry::DEFAULT));
    /// assert!(Geometry::new(2, 4).is_some()); // 4-page chunks, 16-page areas
    /// assert!(Geometry::new(5, 11).is_none()); // too many levels for one area word
    /// ```
    pub const fn new(chunk_order: u32, area_order: u32) -> Option<Self> {
        if chunk_order > 5 || area_order <= chunk_order || area_order - chunk_order > 5 {
            return None;
        }
        let t = area_order - chunk_order;
        let bits = ((1u32 << t) - 1) + (1u32 << t) * (chunk_order + 1);
        if bits > 64 {
            return None;
        }
        Some(Self {
            chunk_order,
            area_order,
        })
    }

    /// log2 of pages per chunk word.
    ///
    /// ```
    /// # use magbuddy::Geometry;
    /// assert_eq!(Geometry::DEFAULT.chunk_order(), 5);
    /// ```
    pub const fn chunk_order(self) -> u32 {
        self.chunk_order
    }
    /// log2 of pages per area.
    ///
    /// ```
    /// # use magbuddy::Geometry;
    /// assert_eq!(Geometry::DEFAULT.area_order(), 8);
    /// ```
    pub const fn area_order(self) -> u32 {
        self.area_order
    }
    /// Tree levels packed in one chunk word.
    ///
    /// ```
    /// # use magbuddy::Geometry;
    /// assert_eq!(Geometry::DEFAULT.chunk_levels(), 6);
    /// ```
    pub const fn chunk_levels(self) -> u32 {
        self.chunk_order + 1
    }
    /// Tree levels packed in the area word.
    ///
    /// ```
    /// # use magbuddy::Geometry;
    /// assert_eq!(Geometry::DEFAULT.top_levels(), 3);
    /// ```
    pub const fn top_levels(self) -> u32 {
        self.area_order - self.chunk_order
    }
    /// Pages per chunk word.
    ///
    /// ```
    /// # use magbuddy::Geometry;
    /// assert_eq!(Geometry::DEFAULT.chunk_pages(), 32);
    /// ```
    pub const fn chunk_pages(self) -> u32 {
        1 << self.chunk_order
    }
    /// Pages per area.
    ///
    /// ```
    /// # use magbuddy::Geometry;
    /// assert_eq!(Geometry::DEFAULT.area_pages(), 256);
    /// ```
    pub const fn area_pages(self) -> u32 {
        1 << self.area_order
    }
    /// Chunk words per area.
    ///
    /// ```
    /// # use magbuddy::Geometry;
    /// assert_eq!(Geometry::DEFAULT.chunks_per_area(), 8);
    /// ```
    pub const fn chunks_per_area(self) -> u32 {
        1 << self.top_levels()
    }
    /// Width of one reservation count.
    pub(crate) const fn count_bits(self) -> u32 {
        self.chunk_order + 1
    }
}

impl Default for Geometry {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_bounds() {
        assert_eq!(Geometry::new(5, 8), Some(Geometry::DEFAULT));
        assert!(Geometry::new(5, 9).is_none(), "15 + 16 * 6 bits do not fit");
        assert!(Geometry::new(6, 8).is_none());
        assert!(Geometry::new(3, 3).is_none());
        assert!(Geometry::new(1, 2).is_some());
        assert!(Geometry::new(0, 1).is_some());
    }
}
