//! Error types of the [shadow bitmap](super): a violation found while
//! checking, and a refused configuration.

use core::fmt;

/// A violation found by [`ShadowBitmap`](super::ShadowBitmap). Addresses are absolute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShadowError {
    /// The allocator returned (or the client freed) a null pointer.
    Null {
        /// Size of the block.
        size: usize,
    },
    /// A block of size zero was reported; it covers no granule to check.
    ZeroSize {
        /// Address of the block.
        addr: usize,
    },
    /// The block does not lie inside the checked range.
    OutOfRange {
        /// Address of the block.
        addr: usize,
        /// Size of the block.
        size: usize,
        /// Start of the checked range.
        base: usize,
        /// Length of the checked range.
        len: usize,
    },
    /// The block is not aligned to `min(2^ceil(log2 size), max_align)`
    /// (or to the larger alignment the caller asked for).
    Misaligned {
        /// Address of the block.
        addr: usize,
        /// Size of the block.
        size: usize,
        /// Alignment the block needed.
        align: usize,
    },
    /// A new block overlaps a live one.
    Overlap {
        /// Address of the new block.
        addr: usize,
        /// Size of the new block.
        size: usize,
        /// Start of the lowest granule of the new block that was already live
        /// (inside the conflicting live block).
        conflict: usize,
    },
    /// A free covered bytes that are not live: double free, wrong size, or
    /// a block that was never allocated.
    NotLive {
        /// Address of the freed block.
        addr: usize,
        /// Size of the freed block.
        size: usize,
        /// Start of the lowest granule of the block that was not live.
        missing: usize,
    },
}

impl fmt::Display for ShadowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Null { size } => write!(f, "null block of {size} B"),
            Self::ZeroSize { addr } => write!(f, "block {addr:#x} has size 0"),
            Self::OutOfRange {
                addr,
                size,
                base,
                len,
            } => write!(
                f,
                "block {addr:#x}+{size} B lies outside the checked range {base:#x}..{:#x}",
                base.wrapping_add(len)
            ),
            Self::Misaligned { addr, size, align } => {
                write!(f, "block {addr:#x}+{size} B is not aligned to {align} B")
            }
            Self::Overlap {
                addr,
                size,
                conflict,
            } => write!(
                f,
                "new block {addr:#x}+{size} B overlaps a live block at {conflict:#x}"
            ),
            Self::NotLive {
                addr,
                size,
                missing,
            } => write!(
                f,
                "free of {addr:#x}+{size} B, but {missing:#x} is not live \
                 (double free, wrong size or never allocated)"
            ),
        }
    }
}

/// Why [`ShadowBitmap::new`](super::ShadowBitmap::new) refused its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShadowConfigError {
    /// `granule` is zero or not a power of two.
    BadGranule(usize),
    /// `max_align` is zero or not a power of two.
    BadMaxAlign(usize),
    /// `base` is not a multiple of `granule`, so aligned blocks would
    /// straddle granules and neighbours would look like overlaps.
    BaseNotGranuleAligned {
        /// Start of the range.
        base: usize,
        /// Granule size.
        granule: usize,
    },
    /// `base + len` overflows the address space.
    RangeOverflow,
    /// The storage has fewer words than [`words_needed`](super::words_needed) returns.
    StorageTooSmall {
        /// Words needed.
        needed: usize,
        /// Words given.
        given: usize,
    },
}

impl fmt::Display for ShadowConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BadGranule(g) => write!(f, "granule {g} is not a power of two"),
            Self::BadMaxAlign(a) => write!(f, "max_align {a} is not a power of two"),
            Self::BaseNotGranuleAligned { base, granule } => {
                write!(
                    f,
                    "base {base:#x} is not a multiple of the granule {granule}"
                )
            }
            Self::RangeOverflow => f.write_str("base + len overflows"),
            Self::StorageTooSmall { needed, given } => {
                write!(f, "storage has {given} words, {needed} needed")
            }
        }
    }
}
