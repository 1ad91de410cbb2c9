//! Power-of-two slab caches of the baseline: 8 B … 2 KiB, alignment = size.
//!
//! # Representation
//!
//! A slab is one buddy block (order 0 for classes up to 512 B; 8 KiB for
//! 1 KiB and 16 KiB for 2 KiB, so every slab holds at least 8 objects) cut into
//! `cap` equal objects. Its head page descriptor (`Kind::Slab`) holds the class,
//! `inuse` and, when `cap <= 64`, the allocation bitmap in `bits` (bits at or
//! above `cap` are kept set). Classes 8, 16 and 32 B have 512, 256 and 128
//! objects per page; their bitmap lives in the slab's first bytes, and the
//! objects it covers (8, 2 and 1 of them) are *reserved*: their bits are set
//! forever and they are never handed out. No header precedes the objects
//! otherwise, so no object loses alignment and, unlike the seed's slab header,
//! page-aligned objects are fine: `free` asks the page descriptor, not the
//! pointer's alignment, which allocator a block belongs to.
//!
//! Invariants, per slab, with `objects = cap - reserved` the objects it can
//! hand out: `inuse == popcount(bitmap) - reserved - (64 - cap)` (the last
//! term for descriptor bitmaps with `cap < 64` only) and `inuse <= objects`;
//! per class:
//!
//! * `partial[c]` lists (through the head descriptors' `next`/`prev`) exactly
//!   the slabs of class `c` with `0 < inuse < objects`;
//! * `spare[c]` is [`NIL`] or one slab with `inuse == 0`, kept so that a class
//!   oscillating around a slab boundary does not split and merge a buddy block
//!   on every call (SLUB's `min_partial`, with a limit of one);
//! * every other empty slab has gone back to the buddy allocator, and full
//!   slabs are on no list.
//!
//! Spares are given back whenever the buddy allocator cannot satisfy a request
//! (see `State::pages_alloc`), so they never cause an allocation to fail.
//!
//! Allocation takes the first slab of `partial[c]` and the first zero bit of its
//! bitmap (one `trailing_zeros`, or at most 8 words for in-page bitmaps); free
//! clears the bit. Both are O(1): double frees are caught by the bitmap, not by
//! walking a free list.

use super::buddy::{Kind, Pages, NIL};
use crate::{FreeError, PAGE_SIZE};

/// Number of size classes: 8 B << c for c in 0..NCLASSES.
pub(super) const NCLASSES: usize = 9;
/// Largest request served by a slab.
pub(super) const MAX_SMALL: usize = 8 << (NCLASSES - 1);

/// Fixed shape of the slabs of one class.
#[derive(Clone, Copy, Debug)]
pub(super) struct Geometry {
    /// Object size (and alignment).
    pub(super) size: usize,
    /// Buddy order of a slab.
    pub(super) order: usize,
    /// Objects per slab, reserved ones included.
    pub(super) cap: usize,
    /// Words of in-page bitmap, 0 if the bitmap is the descriptor's `bits`.
    pub(super) words: usize,
    /// Leading objects that hold the in-page bitmap.
    pub(super) reserved: usize,
}

const fn geometry(class: usize) -> Geometry {
    let size = 8 << class;
    // At least 8 objects per slab, at least one page.
    let mut order = 0;
    while (PAGE_SIZE << order) < 8 * size {
        order += 1;
    }
    let cap = (PAGE_SIZE << order) / size;
    let words = if cap > 64 { cap / 64 } else { 0 };
    let reserved = (words * 8).div_ceil(size);
    Geometry {
        size,
        order,
        cap,
        words,
        reserved,
    }
}

/// Geometry of every class.
pub(super) const GEOMETRY: [Geometry; NCLASSES] = {
    let mut g = [geometry(0); NCLASSES];
    let mut c = 1;
    while c < NCLASSES {
        g[c] = geometry(c);
        c += 1;
    }
    g
};

const _: () = {
    let mut c = 0;
    while c < NCLASSES {
        let g = GEOMETRY[c];
        assert!(g.cap <= u16::MAX as usize && g.cap % 64 == 0 || g.cap <= 64);
        assert!(g.words <= 8 && g.reserved < g.cap / 8);
        c += 1;
    }
};

/// The class serving `size` (1 ..= [`MAX_SMALL`]).
#[inline]
pub(super) fn class_of(size: usize) -> usize {
    (size.max(8).next_power_of_two().trailing_zeros() - 3) as usize
}

/// The in-page bitmap of the slab at `base`.
///
/// # Safety
///
/// - `base` heads a `Slab` block of class `g` with `g.words > 0`, and the
///   caller holds the heap lock and no other reference to this bitmap.
unsafe fn inpage<'a>(base: *mut u8, g: Geometry) -> &'a mut [u64] {
    // SAFETY: the first `g.words * 8` bytes of the slab are its reserved
    // objects, never handed out, page-aligned and owned by the heap; the lock
    // and the caller's promise make this the only reference.
    unsafe { core::slice::from_raw_parts_mut(base.cast::<u64>(), g.words) }
}

/// Per-class slab lists.
pub(super) struct Slabs {
    partial: [u32; NCLASSES],
    spare: [u32; NCLASSES],
    /// Bytes of slab objects reserved for in-page bitmaps, over live slabs.
    pub(super) bitmap_bytes: usize,
}

impl Slabs {
    /// No slabs.
    pub(super) const fn new() -> Self {
        Slabs {
            partial: [NIL; NCLASSES],
            spare: [NIL; NCLASSES],
            bitmap_bytes: 0,
        }
    }

    /// Head of class `c`'s partial list, for `validate`.
    pub(super) fn partial(&self, c: usize) -> u32 {
        self.partial[c]
    }

    /// Class `c`'s spare slab or [`NIL`], for `validate`.
    pub(super) fn spare(&self, c: usize) -> u32 {
        self.spare[c]
    }

    /// Allocates one object of class `c`, or `None` when the pages are out.
    #[inline]
    pub(super) fn alloc(&mut self, pages: &mut Pages, c: usize) -> Option<*mut u8> {
        let mut idx = self.partial[c];
        if idx == NIL {
            idx = self.refill(pages, c)?;
        }
        let g = GEOMETRY[c];
        let base = pages.ptr_of(idx);
        let d = pages.desc(idx);
        let obj = if g.words == 0 {
            let bit = (!d.bits).trailing_zeros() as usize;
            d.bits |= 1 << bit;
            bit
        } else {
            // SAFETY: `idx` heads a slab of class `c` (it is on `partial[c]`),
            // which has an in-page bitmap; we hold the lock via `&mut self`.
            let words = unsafe { inpage(base, g) };
            let w = words
                .iter()
                .position(|w| *w != !0)
                .expect("partial slab is full");
            let bit = (!words[w]).trailing_zeros() as usize;
            words[w] |= 1 << bit;
            w * 64 + bit
        };
        d.inuse += 1;
        if d.inuse as usize == g.cap - g.reserved {
            self.unlink(pages, c, idx);
        }
        Some(base.wrapping_add(obj * g.size))
    }

    /// Puts a slab on `partial[c]`: the spare, or a new one from the pages.
    #[cold]
    fn refill(&mut self, pages: &mut Pages, c: usize) -> Option<u32> {
        let g = GEOMETRY[c];
        let idx = if self.spare[c] != NIL {
            core::mem::replace(&mut self.spare[c], NIL)
        } else {
            let idx = match pages.alloc(g.order) {
                Some(idx) => idx,
                None => {
                    self.release_spares(pages);
                    pages.alloc(g.order)?
                }
            };
            let base = pages.ptr_of(idx);
            let d = pages.desc(idx);
            d.kind = Kind::Slab;
            d.class = c as u8;
            d.inuse = 0;
            d.bits = if g.cap < 64 { !0 << g.cap } else { 0 };
            if g.words > 0 {
                // SAFETY: `idx` now heads a slab of class `c` with an in-page
                // bitmap, and `&mut self` shows we hold the lock.
                let words = unsafe { inpage(base, g) };
                words.fill(0);
                for r in 0..g.reserved {
                    words[r / 64] |= 1 << (r % 64);
                }
                self.bitmap_bytes += g.reserved * g.size;
            }
            idx
        };
        self.push(pages, c, idx);
        Some(idx)
    }

    /// Gives every spare slab back to the buddy allocator.
    #[cold]
    pub(super) fn release_spares(&mut self, pages: &mut Pages) {
        for c in 0..NCLASSES {
            let idx = core::mem::replace(&mut self.spare[c], NIL);
            if idx != NIL {
                self.release(pages, c, idx);
            }
        }
    }

    fn release(&mut self, pages: &mut Pages, c: usize, idx: u32) {
        let g = GEOMETRY[c];
        self.bitmap_bytes -= g.reserved * g.size;
        pages.free(idx);
    }

    /// Checks that `ptr`, inside the slab headed by `idx`, is a live object's
    /// start, and returns the object's index. Changes nothing.
    pub(super) fn check(
        &self,
        pages: &mut Pages,
        ptr: usize,
        idx: u32,
    ) -> Result<usize, FreeError> {
        let base = pages.addr_of(idx);
        let g = GEOMETRY[pages.desc(idx).class as usize];
        let off = ptr - base;
        let obj = off / g.size;
        if obj < g.reserved {
            return Err(FreeError::Metadata(ptr));
        }
        let live = if g.words == 0 {
            pages.desc(idx).bits >> obj & 1 != 0
        } else {
            // SAFETY: `idx` heads a slab with an in-page bitmap (its class
            // says so) and `&mut Pages` shows we hold the lock.
            let words = unsafe { inpage(pages.ptr_of(idx), g) };
            words[obj / 64] >> (obj % 64) & 1 != 0
        };
        match (live, off % g.size == 0) {
            (true, true) => Ok(obj),
            (true, false) => Err(FreeError::Interior {
                ptr,
                block: base + obj * g.size,
            }),
            (false, true) => Err(FreeError::DoubleFree(ptr)),
            (false, false) => Err(FreeError::NotAllocated(ptr)),
        }
    }

    /// Frees object `obj` of the slab headed by `idx` (checked by [`check`]).
    ///
    /// [`check`]: Slabs::check
    #[inline]
    pub(super) fn free(&mut self, pages: &mut Pages, idx: u32, obj: usize) {
        let base = pages.ptr_of(idx);
        let d = pages.desc(idx);
        let c = d.class as usize;
        let g = GEOMETRY[c];
        if g.words == 0 {
            d.bits &= !(1 << obj);
        } else {
            // SAFETY: as in `check`.
            let words = unsafe { inpage(base, g) };
            words[obj / 64] &= !(1 << (obj % 64));
        }
        d.inuse -= 1;
        let inuse = d.inuse as usize;
        if inuse + 1 == g.cap - g.reserved {
            self.push(pages, c, idx); // was full: back on the partial list
        }
        if inuse == 0 {
            self.unlink(pages, c, idx);
            if self.spare[c] == NIL {
                self.spare[c] = idx;
            } else {
                self.release(pages, c, idx);
            }
        }
    }

    fn push(&mut self, pages: &mut Pages, c: usize, idx: u32) {
        let old = self.partial[c];
        let d = pages.desc(idx);
        d.prev = NIL;
        d.next = old;
        if old != NIL {
            pages.desc(old).prev = idx;
        }
        self.partial[c] = idx;
    }

    fn unlink(&mut self, pages: &mut Pages, c: usize, idx: u32) {
        let d = pages.desc(idx);
        let (prev, next) = (d.prev, d.next);
        if prev == NIL {
            self.partial[c] = next;
        } else {
            pages.desc(prev).next = next;
        }
        if next != NIL {
            pages.desc(next).prev = prev;
        }
    }
}
