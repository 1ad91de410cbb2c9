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
    (tree >> ((1u32 << d) - 1)) & low_mask(1 << d)
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
        used = level(tree, l) | or_pairs(used);
    }
    used
}

/// Nodes of level `d` that are *covered*: allocated themselves or under an
/// allocated ancestor.
#[inline]
pub(crate) fn covered_at(tree: u64, d: u32) -> u64 {
    let mut covered = level(tree, 0);
    for l in 1..=d {
        covered = level(tree, l) | spread(covered);
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
    fn pick_prefers_a_node_whose_buddy_is_taken() {
        assert_eq!(pick(0b1101, 2), 0); // buddy of 0 is 1 (taken)
        assert_eq!(pick(0b1100, 2), 2);
        assert_eq!(pick(0b1, 0), 0);
    }
}
