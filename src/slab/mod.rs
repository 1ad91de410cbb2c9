//! Slabs: 16 KiB buddy blocks cut into equal objects of one size class.
//!
//! # Ownership
//!
//! A slab's descriptor (in the region's type-stable slab table, one per four
//! pages) names its owner: a CPU slot, a shared-path call, or `ABANDONED`.
//! The owner alone touches the `local` state (free list, bump index, count of
//! objects handed out) without atomics. Anyone else frees into the slab by
//! pushing the object onto its *return list* with one CAS (multi-producer);
//! the owner takes the whole list with one `swap` (single consumer, so no
//! ABA), mimalloc's `xthread_free`.
//!
//! Invariant per slab: `|local free| + handed + (capacity - bump) =
//! capacity` and `|returns| <= handed`: every object is never carved, on the
//! local free list, or handed out — to a user, a magazine, or back on the
//! return list but not yet collected by the owner.
//!
//! # Abandonment (no remote free is ever stranded)
//!
//! A CPU owns only its *current* slab per class. One it cannot allocate from
//! any more is abandoned: with free objects left it goes on the class's
//! abandoned stack at once; with none, the owner sets the `ABANDONED_FULL`
//! flag in the return word with a CAS from exactly "empty list" — so the flag
//! and the pushes are ordered by one word. The remote free that finds the
//! flag clears it in its push CAS and puts the slab on the abandoned stack.
//! Either way a slab with free objects and no owner is always findable, and
//! anyone can adopt it (CAS `ABANDONED` → its token), drain it, and release
//! it to the buddy tree when nothing is handed out.
//!
//! Descriptors are metadata and never become user memory, so a stale adopter
//! or stack pop reads a descriptor, never an object.
//!
//! # Which objects are free: the free bitmap and the free tag
//!
//! Each slab has one bit per object, set while the object is *free at the
//! slab layer* (never carved, on the local free list or on the return list)
//! in the default build, and while it is *not held by a user* in `checked`
//! builds (which also set it for objects in magazines). Bits change with one
//! atomic read-modify-write each, so of two racing frees of one object that
//! reach the bitmap exactly one finds the bit clear. Slabs of at most 64
//! objects keep the bitmap in the descriptor; larger classes at the slab's
//! tail, in space that objects would otherwise use (`capacity`).
//!
//! In the default build a free object also carries a *free tag* in bytes
//! 4..8 (past the free-list link): written when the object is freed into a
//! magazine or the slab and at slab init, cleared when it is handed out. The
//! handle's free path reads it (one load and compare) and, only if present,
//! confirms with an exact check ([`crate::Heap`]'s `confirm_free`: this bitmap
//! and the magazines) before refusing, since a user may have stored the same
//! value. The `progress` word (objects carved, takes) lets that check notice
//! an object that moved from the slab into a magazine while it looked.

mod desc;
mod mark;
mod owner;
mod pool;

pub(crate) use desc::{opened, SlabDesc, ABANDONED};
pub(crate) use mark::{hand_out_object, leave_slab, tag_word, FREE_TAG, MARK_AT_USER};
pub(crate) use owner::Owner;
pub(crate) use pool::{desc_at, slab_at, slab_by_id, SlabId, SlabPool};

use crate::PAGE_SIZE;

/// log2 of pages per slab (the region's slab grid, see `crate::region`).
pub(crate) use crate::region::SLAB_ORDER;
/// Bytes per slab.
pub(crate) const SLAB_BYTES: usize = PAGE_SIZE << SLAB_ORDER;
/// Size classes: the nine powers of two 8, 16, …, 2048 bytes at indices
/// 0..=8 (what the kernel's [`crate::Heap::alloc`] uses,
/// whose blocks are aligned to their size), then the *fitted* classes in
/// between (indices 9..), which only the fitted API hands out (see
/// [`crate::Heap::alloc_fit`]): with them every class from 32 B to 2048 B is at
/// most 25 % above the next smaller one (below, 8-byte steps), where powers
/// of two waste up to half an object; above 2048 B, three classes in the
/// multi-page range (2560, 3072, 5120) take the sizes for which a slab
/// beats a 4 or 8 KiB buddy block.
pub const SMALL_CLASSES: usize = CLASS_SIZES.len();
/// Largest power-of-two class: the largest request [`crate::Heap::alloc`]
/// serves from slabs (the fitted API goes up to 5120 B).
pub const MAX_SMALL: usize = 2048;
/// Power-of-two classes (indices `0..POW2_CLASSES`).
pub(crate) const POW2_CLASSES: usize = 9;

/// Object bytes per class. An object of class size `S` sits at
/// `slab base + i * S` and slab bases are 16 KiB aligned, so its alignment
/// is the largest power of two dividing `S`.
///
/// Above 2048 B only the classes that beat the page block they replace
/// once their slab is full: 2560 and 3072 (6 and 5 per slab, 2731 and 3277
/// bytes of slab per object) instead of a 4 KiB block, 5120 (3 per slab,
/// 5461 bytes) instead of an 8 KiB one. 3584, 6144 and 7168 (4, 2 and 2 per
/// slab) would cost their slab 4096, 8192 and 8192 bytes per object, what
/// the block costs, so they are left to the buddy tree
/// (`papers/paper.md` §4.5).
const CLASS_SIZES: [u16; 31] = [
    8, 16, 32, 64, 128, 256, 512, 1024, 2048, // powers of two
    24, 40, 48, 56, 80, 96, 112, 160, 192, 224, 320, 384, 448, 640, 768, 896, 1280, 1536, 1792,
    2560, 3072, 5120, // multi-page range, fitted API only
];

/// Size class of a request of `size` bytes (`1 ..= MAX_SMALL`): the
/// smallest power of two that holds it.
#[inline]
pub(crate) fn class_of(size: usize) -> usize {
    // ceil(log2(max(size, 8))) - 3 with one leading-zero count.
    (usize::BITS - ((size - 1) | 7).leading_zeros()) as usize - 3
}

/// Object size of class `c`.
#[inline]
pub(crate) const fn class_size(c: usize) -> usize {
    CLASS_SIZES[c] as usize
}

/// Objects that fit a slab of class `c` before the free bitmap is placed.
const fn slots(c: usize) -> usize {
    SLAB_BYTES / class_size(c)
}

/// Objects per slab of class `c`: all that fit if the free bitmap fits the
/// descriptor (at most 64 objects), else the most that leave room for
/// their bitmap (32-bit words) in the slab's tail (32 of 2048 for 8-byte
/// objects give up their space, one for 64-128 B). Computed at compile
/// time into the class table ([`capacity`]).
const fn objects_per_slab(c: usize) -> u32 {
    let mut n = slots(c);
    if n > 64 {
        while n * class_size(c) + n.div_ceil(32) * 4 > SLAB_BYTES {
            n -= 1;
        }
    }
    n as u32
}

/// Per-class data of the free path, as one array per field (64 entries:
/// zero past the classes, where capacity 0 refuses every offset, so any
/// 6-bit class from a page descriptor indexes it without a bounds check).
/// Every field is one scaled address off the same base, and the capacity
/// a 32-bit memory operand of the compare: an array of 8-byte entries took
/// 3 instructions more per free in the C shim (a copy of the class, a
/// load of the capacity, a saved register). What [`object_index`] and
/// [`capacity`] read.
struct Index {
    /// Inverse of the odd part of the class size, modulo 2^32.
    inverse: [u32; 64],
    /// `objects_per_slab`.
    cap: [u32; 64],
    /// log2 of the power-of-two part of the class size.
    shift: [u8; 64],
}

/// The inverse of odd `q` modulo 2^32 (Newton's iteration: each step
/// doubles the correct low bits, from 3 for `x = q`).
const fn inverse_of(q: u32) -> u32 {
    let mut x = q;
    let mut i = 0;
    while i < 4 {
        x = x.wrapping_mul(2u32.wrapping_sub(q.wrapping_mul(x)));
        i += 1;
    }
    x
}

const INDEX: Index = {
    let mut t = Index {
        inverse: [0; 64],
        cap: [0; 64],
        shift: [0; 64],
    };
    let mut c = 0;
    while c < SMALL_CLASSES {
        let shift = CLASS_SIZES[c].trailing_zeros();
        t.inverse[c] = inverse_of((CLASS_SIZES[c] >> shift) as u32);
        t.cap[c] = objects_per_slab(c);
        t.shift[c] = shift as u8;
        c += 1;
    }
    t
};

/// The index of the object of class `c` that starts at byte `offset`
/// (`< SLAB_BYTES`) of its slab, or a number `>= capacity(c)` if no object
/// below the capacity starts there: no division, one compare decides.
///
/// With `S = 2^k * q` (`q` odd, `k <= 11`): rotating the 32-bit `offset`
/// right by `k` gives `offset / 2^k` if `2^k` divides it, and a value of
/// at least `2^(32-k) >= 2^21` otherwise. Multiplying by `q`'s inverse
/// modulo 2^32 is a bijection that maps exactly the numbers `j * q` to `j`;
/// the rotated offsets that map below the capacity are therefore exactly
/// `j * q` for `j < capacity` (all below `SLAB_BYTES = 2^14`, so no rotated
/// non-multiple is among them): the offsets `j * S`. For powers of two
/// (`q = 1`) this is the plain rotate. `index_is_exact` checks every offset
/// of every class.
#[inline(always)]
pub(crate) fn object_index(c: usize, offset: usize) -> usize {
    let c = c & 63;
    (offset as u32)
        .rotate_right(INDEX.shift[c] as u32)
        .wrapping_mul(INDEX.inverse[c]) as usize
}

/// Objects per slab of class `c` (see `objects_per_slab`), from the class
/// table: one load, no division. More than 64 exactly when the free bitmap
/// lives in the slab's tail.
#[inline(always)]
pub(crate) fn capacity(c: usize) -> u32 {
    INDEX.cap[c & 63]
}

/// [`capacity`] as a `usize`.
#[inline(always)]
pub(crate) fn capacity_of(c: usize) -> usize {
    capacity(c) as usize
}

/// Largest object of the fitted API.
pub(crate) const MAX_FIT: usize = 5120;

/// `FIT[(s - 1) / 8]`: the smallest class of at least `s` bytes (`s` in
/// `1 ..= MAX_SMALL`). 256 entries, so an index cast to `u8` needs no bounds
/// check.
const FIT: [u8; MAX_SMALL / 8] = {
    let mut t = [0u8; MAX_SMALL / 8];
    let mut u = 0;
    while u < MAX_SMALL / 8 {
        let mut best = POW2_CLASSES - 1; // 2048 holds every size
        let mut c = 0;
        while c < SMALL_CLASSES {
            if class_size(c) >= (u + 1) * 8 && class_size(c) < class_size(best) {
                best = c;
            }
            c += 1;
        }
        t[u] = best as u8;
        u += 1;
    }
    t
};

/// Granule of the multi-page range's table: the classes above 2048 B are
/// multiples of it.
const BIG_STEP: usize = 512;

/// No class: a page block serves the size.
const PAGES: u8 = u8::MAX;

/// `FIT_BIG[(s - 1) / BIG_STEP]` for `s` in `MAX_SMALL + 1 ..= MAX_FIT`:
/// the smallest class of at least `s` bytes if it is smaller than the page
/// block `s` would get, else [`PAGES`] (3073–4096 B: a 4 KiB block).
const FIT_BIG: [u8; MAX_FIT / BIG_STEP] = {
    let mut t = [PAGES; MAX_FIT / BIG_STEP];
    let mut u = MAX_SMALL / BIG_STEP;
    while u < MAX_FIT / BIG_STEP {
        let s = (u + 1) * BIG_STEP;
        let block = s.next_power_of_two();
        let mut c = POW2_CLASSES;
        while c < SMALL_CLASSES {
            let size = class_size(c);
            if size >= s && size < block && (t[u] == PAGES || size < class_size(t[u] as usize)) {
                t[u] = c as u8;
            }
            c += 1;
        }
        u += 1;
    }
    t
};

/// The fitted class for `size` bytes aligned to `align` (a power of two):
/// the smallest class that holds `size` and whose objects are aligned to
/// `align`, if its slab beats a page block; `None` if `size` is 0, either
/// is above `MAX_FIT`, or a page block serves it.
///
/// One table per range serves every alignment: round `size` up to a
/// multiple `s` of `align` (`((size - 1) | (align - 1)) + 1`) and take the
/// smallest class `c >= s`. Every class aligned to `align` is a multiple of
/// it, hence at least `s`, so none is smaller than `c`; and `c` is aligned
/// to `align`: where classes are `2^k` apart (`2^(k+2) <= s`, four per
/// octave) they are multiples of `2^k`, which is at least `align` once
/// `s >= 4 * align`; below that `s` is `align`, `2 * align` or
/// `3 * align`, each a class itself (from 8 up; 8, 16 and 24 are classes).
/// Above 2048 B the classes (2560, 3072, 5120) are multiples of 512
/// (the big table's step, so rounding to it loses nothing) and of 1024
/// where `s` can be a multiple of 1024, and `s` a multiple of 2048 or
/// more is 4096, a page block. `fit_picks_the_smallest_aligned_class`
/// checks every size and alignment.
#[inline(always)]
pub(crate) fn fit_class(size: usize, align: usize) -> Option<usize> {
    fit_small(size, align).or_else(|| fit_big(size, align))
}

/// [`fit_class`] for objects of up to 2048 B (`None` for the rest): one
/// compare and one load. The multi-page classes are [`fit_big`], behind it.
#[inline(always)]
pub(crate) fn fit_small(size: usize, align: usize) -> Option<usize> {
    fit_key(size, align).map(fitted_class)
}

/// Entries of the fitted table: one per 8 bytes up to 2048.
pub(crate) const FIT_INDICES: usize = MAX_SMALL / 8;

/// Where [`fit_small`] looks: `k = (size - 1) | (align - 1) | 7`, the last
/// byte of the smallest multiple of 8 and of `align` that holds `size`, if
/// below 2048 (`None` for the rest). Tables with one entry per 8 bytes
/// take entry `k / 8`; the CPU caches' per-size magazine table is one, so
/// the handle's fitted fast path needs no class.
#[inline(always)]
pub(crate) fn fit_key(size: usize, align: usize) -> Option<usize> {
    let k = size.wrapping_sub(1) | align.wrapping_sub(1) | 7;
    (k < MAX_SMALL).then_some(k)
}

/// The class of fitted key `k` ([`fit_key`]).
#[inline(always)]
pub(crate) fn fitted_class(k: usize) -> usize {
    // `k < 2048`: the shifted value fits the `u8`.
    FIT[(k >> 3) as u8 as usize] as usize
}

/// `FIT_RANGE[c]`: the fitted indices whose class is `c` (`FIT` is
/// monotone, so they are one range; empty for classes no index names).
const FIT_RANGE: [(u16, u16); SMALL_CLASSES] = {
    let mut t = [(0u16, 0u16); SMALL_CLASSES];
    let mut i = 0;
    while i < FIT_INDICES {
        let c = FIT[i] as usize;
        if t[c].1 == 0 {
            t[c].0 = i as u16;
        }
        t[c].1 = i as u16 + 1;
        i += 1;
    }
    t
};

/// The fitted indices of cache class `c`: exactly those `i` with
/// `fitted_class(8 * i + 7) == c` (none for page classes).
pub(crate) fn fit_indices(c: usize) -> core::ops::Range<usize> {
    match FIT_RANGE.get(c) {
        Some(&(lo, hi)) => lo as usize..hi as usize,
        None => 0..0,
    }
}

/// [`fit_class`] above 2048 B: a multi-page class, or `None` where a
/// page block serves (and for sizes of up to 2048 B).
#[inline(always)]
pub(crate) fn fit_big(size: usize, align: usize) -> Option<usize> {
    let s1 = size.wrapping_sub(1) | align.wrapping_sub(1);
    match FIT_BIG.get(s1 / BIG_STEP) {
        Some(&c) if c != PAGES => Some(c as usize),
        _ => None,
    }
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;

    /// Alignment of every object of class `c`.
    fn class_align(c: usize) -> usize {
        1 << CLASS_SIZES[c].trailing_zeros()
    }

    #[test]
    fn classes_cover_8_to_2048() {
        assert_eq!(class_of(1), 0);
        assert_eq!(class_of(8), 0);
        assert_eq!(class_of(9), 1);
        assert_eq!(class_of(2048), 8);
        assert_eq!(class_size(8), 2048);
        assert_eq!(class_size(SMALL_CLASSES - 1), 5120);
        assert_eq!(capacity(0), 2016, "32 objects hold the free bitmap");
        assert_eq!(capacity(3), 255);
        assert_eq!(capacity(4), 127);
        assert_eq!(capacity(5), 64, "the bitmap fits the descriptor");
        assert_eq!(capacity(8), 8);
        let big: std::vec::Vec<u32> = (SMALL_CLASSES - 3..SMALL_CLASSES).map(capacity).collect();
        assert_eq!(big, [6, 5, 3], "2560, 3072 and 5120 B");
    }

    /// A class above 2048 B costs less slab per object, once its slab is
    /// full, than the page block its sizes would get otherwise.
    #[test]
    fn big_classes_beat_their_page_block() {
        for c in (0..SMALL_CLASSES).filter(|&c| class_size(c) > MAX_SMALL) {
            let per_object = SLAB_BYTES / capacity_of(c);
            let block = class_size(c).next_power_of_two();
            assert!(per_object < block, "class {}", class_size(c));
        }
    }

    #[test]
    fn classes_are_at_most_a_quarter_apart() {
        let mut sizes: std::vec::Vec<usize> = (0..SMALL_CLASSES).map(class_size).collect();
        sizes.sort();
        sizes.dedup();
        assert_eq!(sizes.len(), SMALL_CLASSES, "no class twice");
        for w in sizes.windows(2).filter(|w| w[1] <= MAX_SMALL) {
            // 8-byte steps below 40 B (the granule), a quarter above.
            assert!(
                w[1] * 4 <= w[0] * 5 || w[1] - w[0] == 8,
                "{} -> {}",
                w[0],
                w[1]
            );
        }
        for c in 0..POW2_CLASSES {
            assert_eq!(class_size(c), 8 << c, "powers of two keep their indices");
        }
        for c in 0..SMALL_CLASSES {
            let cap = capacity(c) as usize;
            let bitmap = if slots(c) <= 64 {
                0
            } else {
                cap.div_ceil(32) * 4
            };
            assert!(cap * class_size(c) + bitmap <= SLAB_BYTES);
            assert_eq!(class_size(c) % 8, 0, "the tag needs bytes 4..8");
        }
    }

    /// Every offset of a slab, every class: `object_index` is below the
    /// capacity exactly at object starts below it, and then is the index.
    #[test]
    fn index_is_exact() {
        for c in 0..64 {
            let (s, cap) = if c < SMALL_CLASSES {
                (class_size(c), capacity(c) as usize)
            } else {
                (1, 0)
            };
            for offset in 0..SLAB_BYTES {
                let i = object_index(c, offset);
                let start = offset % s == 0 && offset / s < cap;
                assert_eq!(i < capacity_of(c), start, "class {c} offset {offset}");
                if start {
                    assert_eq!(i, offset / s);
                }
            }
        }
    }

    /// Against the definition: the smallest class that holds `size` and is
    /// aligned to `align`, unless the page block that `alloc(size.max(align))`
    /// gives (a power of two of at least 4 KiB) is no larger.
    #[test]
    fn fit_picks_the_smallest_aligned_class() {
        for align in (0..14).map(|k| 1 << k) {
            for size in 1..=MAX_FIT + 1024 {
                let best = (0..SMALL_CLASSES)
                    .filter(|&c| class_size(c) >= size && class_align(c) >= align)
                    .min_by_key(|&c| class_size(c));
                let block = size.max(align).next_power_of_two().max(crate::PAGE_SIZE);
                let want = best.filter(|&c| size.max(align) <= MAX_SMALL || class_size(c) < block);
                assert_eq!(fit_class(size, align), want, "size {size} align {align}");
            }
        }
        assert_eq!(fit_class(2049, 16).map(class_size), Some(2560));
        assert_eq!(fit_class(2600, 16).map(class_size), Some(3072));
        assert_eq!(fit_class(3073, 16), None, "a 4 KiB block");
        assert_eq!(fit_class(4104, 16).map(class_size), Some(5120));
        assert_eq!(fit_class(5121, 16), None, "an 8 KiB block");
        assert_eq!(fit_class(2049, 2048), None, "4096-aligned: a 4 KiB block");
        assert_eq!(fit_class(4097, 1024).map(class_size), Some(5120));
        assert_eq!(fit_class(24, 16).map(class_size), Some(32));
        assert_eq!(fit_class(100, 16).map(class_size), Some(112));
        assert_eq!(fit_class(700, 16).map(class_size), Some(768));
        assert_eq!(fit_class(96, 64).map(class_size), Some(128));
        assert_eq!(fit_class(100, 128).map(class_size), Some(128));
        assert_eq!(fit_class(0, 8), None);
        assert_eq!(fit_class(MAX_FIT + 1, 8), None);
        assert_eq!(fit_class(8, 4096), None);
    }

    #[test]
    fn fit_indices_are_the_indices_of_their_class() {
        for c in 0..SMALL_CLASSES + 8 {
            let mine: std::vec::Vec<usize> = (0..FIT_INDICES)
                .filter(|&i| fitted_class(8 * i + 7) == c)
                .collect();
            assert_eq!(
                fit_indices(c).collect::<std::vec::Vec<_>>(),
                mine,
                "class {c}"
            );
        }
    }
}
