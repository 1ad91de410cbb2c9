//! Pure bit arithmetic on heap-ordered trees packed into one `u64`.
//!
//! A packed tree with `levels` levels stores one bit per node, heap-ordered:
//! node `i` (1-based, children `2i` and `2i+1`) lives at bit `i - 1`, so level
//! `d` (root = 0) is the contiguous field of `2^d` bits starting at bit
//! `2^d - 1`. Levels hold at most 32 nodes, so every level fits in a `u32`
//! field and the pair operations below need no loops.

/// Mask of the low `width` bits (`width` ≤ 64).
#[inline]
pub(crate) const fn low_mask(width: u32) -> u64 {
    if width >= 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    }
}

/// The `2^d` bits of level `d`, shifted down to bit 0.
#[inline]
pub(crate) const fn level(tree: u64, d: u32) -> u64 {
    // At most 32 nodes (d <= 5), so the mask needs no 64-bit case.
    debug_assert!(d <= 5);
    (tree >> ((1u32 << d) - 1)) & ((1u64 << (1u32 << d)) - 1)
}

/// `tree` with the bit of node `j` (index within level `d`) set.
#[inline]
pub(crate) const fn node_bit(d: u32, j: u32) -> u64 {
    1u64 << ((1u32 << d) - 1 + j)
}

/// Halves a field: bit `j` of the result is `x[2j] | x[2j+1]` (a parent is
/// "used" when either child is). `x` holds at most 64 bits.
#[inline]
pub(crate) const fn or_pairs(x: u64) -> u64 {
    let mut y = (x | (x >> 1)) & 0x5555_5555_5555_5555;
    y = (y | (y >> 1)) & 0x3333_3333_3333_3333;
    y = (y | (y >> 2)) & 0x0f0f_0f0f_0f0f_0f0f;
    y = (y | (y >> 4)) & 0x00ff_00ff_00ff_00ff;
    y = (y | (y >> 8)) & 0x0000_ffff_0000_ffff;
    (y | (y >> 16)) & 0x0000_0000_ffff_ffff
}

/// Doubles a field: bits `2j` and `2j+1` of the result are `x[j]` (a child is
/// "covered" when its parent is). `x` holds at most 32 bits.
#[inline]
pub(crate) const fn spread(x: u64) -> u64 {
    let mut y = x & 0xffff_ffff;
    y = (y | (y << 16)) & 0x0000_ffff_0000_ffff;
    y = (y | (y << 8)) & 0x00ff_00ff_00ff_00ff;
    y = (y | (y << 4)) & 0x0f0f_0f0f_0f0f_0f0f;
    y = (y | (y << 2)) & 0x3333_3333_3333_3333;
    y = (y | (y << 1)) & 0x5555_5555_5555_5555;
    y | (y << 1)
}

/// Swaps each bit with its buddy: bit `j` of the result is `x[j ^ 1]`.
#[inline]
pub(crate) const fn buddies(x: u64) -> u64 {
    ((x & 0x5555_5555_5555_5555) << 1) | ((x >> 1) & 0x5555_5555_5555_5555)
}

/// Nodes of level `d` that are *used*: allocated themselves or with an
/// allocated descendant. `below` is the used mask of the level under the last
/// one (`levels`), or 0 when there is none.
#[inline]
pub(crate) fn used_at(tree: u64, levels: u32, below: u64, d: u32) -> u64 {
    let mut used = below;
    let mut l = levels;
    while l > d {
        l -= 1;
        // Nothing used below is common (a chunk of single pages has only
        // leaves): skip the halving then.
        let from_below = if used == 0 { 0 } else { or_pairs(used) };
        used = level(tree, l) | from_below;
    }
    used
}

/// Nodes of level `d` that are *covered*: allocated themselves or under an
/// allocated ancestor.
#[inline]
pub(crate) fn covered_at(tree: u64, d: u32) -> u64 {
    let mut covered = level(tree, 0);
    for l in 1..=d {
        // Nothing allocated above is common (no block larger than a few
        // pages): skip the doubling then.
        let from_above = if covered == 0 { 0 } else { spread(covered) };
        covered = level(tree, l) | from_above;
    }
    covered
}

/// Nodes of level `d` that can be allocated whole: neither used nor covered.
#[inline]
pub(crate) fn free_at(tree: u64, levels: u32, below: u64, d: u32) -> u64 {
    !(used_at(tree, levels, below, d) | covered_at(tree, d)) & low_mask(1 << d)
}

/// Picks a node from a non-empty `free` mask of level `d`, preferring one
/// whose buddy is not free: it fills holes and keeps free pairs together for
/// larger blocks (best fit among equals).
#[inline]
pub(crate) fn pick(free: u64, d: u32) -> u32 {
    debug_assert!(free != 0);
    let lonely = if d == 0 { free } else { free & !buddies(free) };
    let choice = if lonely != 0 { lonely } else { free };
    choice.trailing_zeros()
}

/// The tree with allocated node `j` of level `d` (`d >= 1`, `j` even: the
/// lower half of its parent) merged with its buddy into the parent, if that
/// buddy is unused (nothing allocated in its subtree; `below` as in
/// [`used_at`]). An allocated node has no allocated ancestor, so the parent
/// is free once the buddy is: an in-place grow is one bit cleared, one set.
#[inline]
pub(crate) fn merge_up(tree: u64, levels: u32, below: u64, d: u32, j: u32) -> Option<u64> {
    let own = node_bit(d, j);
    let ok = d >= 1 && j % 2 == 0 && tree & own != 0;
    // Mutant: the buddy's subtree is not looked at.
    let ignore = crate::mutant::on(crate::mutant::Mutant::GrowIgnoresBuddy);
    (ok && (ignore || used_at(tree, levels, below, d) & (1 << (j + 1)) == 0))
        .then(|| (tree & !own) | node_bit(d - 1, j / 2))
}

/// The tree with allocated node `j` of level `d` split: its lower child (of
/// level `d + 1 < levels`) allocated, the upper one free (an in-place shrink
/// that releases the upper half). `None` if the node is not allocated.
#[inline]
pub(crate) fn split_down(tree: u64, levels: u32, d: u32, j: u32) -> Option<u64> {
    let own = node_bit(d, j);
    (d + 1 < levels && tree & own != 0).then(|| (tree & !own) | node_bit(d + 1, 2 * j))
}

/// The allocated node on the path from the root to leaf `leaf` (level
/// `levels - 1`), as `(level, index)`, if any. In a well-formed tree at most one
/// node on a path is allocated.
#[inline]
pub(crate) fn allocated_on_path(tree: u64, levels: u32, leaf: u32) -> Option<(u32, u32)> {
    (0..levels).find_map(|d| {
        let j = leaf >> (levels - 1 - d);
        (tree & node_bit(d, j) != 0).then_some((d, j))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_and_spread_are_inverse_shapes() {
        for x in 0u64..=0xff {
            let s = spread(x);
            assert_eq!(or_pairs(s), x);
            for j in 0..8 {
                let b = (x >> j) & 1;
                assert_eq!((s >> (2 * j)) & 3, b * 3);
            }
        }
        assert_eq!(or_pairs(0b0110), 0b11);
        assert_eq!(or_pairs(0b1000_0001), 0b1001);
        assert_eq!(buddies(0b0110), 0b1001);
        assert_eq!(spread(0xffff_ffff), u64::MAX);
        assert_eq!(or_pairs(u64::MAX), 0xffff_ffff);
    }

    #[test]
    fn free_nodes_follow_allocations() {
        // 3 levels: root, 2, 4 leaves. Allocate leaf 1 (level 2, index 1).
        let t = node_bit(2, 1);
        assert_eq!(free_at(t, 3, 0, 2), 0b1101);
        assert_eq!(free_at(t, 3, 0, 1), 0b10);
        assert_eq!(free_at(t, 3, 0, 0), 0);
        // Allocate the right half whole: its leaves are covered.
        let t = t | node_bit(1, 1);
        assert_eq!(free_at(t, 3, 0, 2), 0b0001);
        assert_eq!(allocated_on_path(t, 3, 3), Some((1, 1)));
        assert_eq!(allocated_on_path(t, 3, 0), None);
        // A used level below blocks the leaves above it.
        assert_eq!(free_at(0, 1, 0b10, 0), 0);
        assert_eq!(free_at(0, 1, 0b00, 0), 1);
    }

    #[test]
    fn merge_and_split_are_inverse() {
        // 3 levels. Leaf 0 allocated, leaf 1 free: merge into node (1, 0).
        let t = node_bit(2, 0);
        let m = merge_up(t, 3, 0, 2, 0).unwrap();
        assert_eq!(m, node_bit(1, 0));
        assert_eq!(split_down(m, 3, 1, 0), Some(t));
        // Merge again to the root, split back.
        let r = merge_up(m, 3, 0, 1, 0).unwrap();
        assert_eq!(r, node_bit(0, 0));
        assert_eq!(split_down(r, 3, 0, 0), Some(m));
        // Refused: the buddy is used (leaf 1, or a leaf under node (1, 1)).
        assert_eq!(merge_up(t | node_bit(2, 1), 3, 0, 2, 0), None);
        assert_eq!(merge_up(m | node_bit(2, 3), 3, 0, 1, 0), None);
        // Refused: used from the level below the tree (`below`).
        assert_eq!(merge_up(node_bit(1, 0), 2, 0b1000, 1, 0), None);
        // Refused: an upper half, a root, a free node; a leaf cannot split.
        assert_eq!(merge_up(node_bit(2, 1), 3, 0, 2, 1), None);
        assert_eq!(merge_up(node_bit(0, 0), 3, 0, 0, 0), None);
        assert_eq!(merge_up(0, 3, 0, 2, 0), None);
        assert_eq!(split_down(node_bit(2, 0), 3, 2, 0), None);
        assert_eq!(split_down(0, 3, 1, 0), None);
    }

    #[test]
    fn pick_prefers_a_node_whose_buddy_is_taken() {
        assert_eq!(pick(0b1101, 2), 0); // buddy of 0 is 1 (taken)
        assert_eq!(pick(0b1100, 2), 2);
        assert_eq!(pick(0b1, 0), 0);
    }
}
