//! Errors for bad input (DESIGN §5): each names what was wrong and where, and
//! reporting one changes no allocator state.

use core::fmt;

/// Why a region could not be turned into (or added to) a heap.
///
/// # Example
///
/// ```
/// use magbuddy::{Heap, HeapConfig, InitError};
///
/// let mut ram = vec![0u8; 1 << 20];
/// // SAFETY: `ram` is ours; the heap refuses it and touches nothing.
/// let e = unsafe { Heap::init(ram.as_mut_ptr(), ram.len(), 0) }.unwrap_err();
/// assert_eq!(e, InitError::BadCpuCount(0));
/// // SAFETY: as above.
/// let e = unsafe { Heap::init(ram.as_mut_ptr(), ram.len(), 1) }.unwrap_err();
/// assert!(matches!(e, InitError::TooSmall { min, .. } if min == Heap::min_region_len(HeapConfig::new(1))));
/// println!("{e}"); // "region of 1048576 bytes is too small: need at least ..."
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    /// The start pointer was null.
    NullStart,
    /// `start + len` overflows the address space.
    Overflow,
    /// After alignment and metadata, too little memory is left.
    TooSmall {
        /// Bytes the caller offered.
        len: usize,
        /// Smallest length that works for this start address and CPU count.
        min: usize,
    },
    /// The CPU count is zero or above [`crate::MAX_CPUS`].
    BadCpuCount(usize),
    /// The heap already holds [`crate::MAX_REGIONS`] regions.
    TooManyRegions,
    /// The region's grid (the range widened to whole areas) holds more than
    /// `2^28 - 1` slabs of 16 KiB: a little under 4 TiB.
    TooLarge,
    /// The geometry's areas are smaller than a slab (16 KiB), the largest
    /// block the heap must serve inside one area.
    BadGeometry {
        /// Pages per area of the geometry offered.
        area_pages: u32,
        /// The fewest pages per area the heap accepts.
        min: u32,
    },
    /// A [`crate::GlobalHeap`] that already has its heap was set up again.
    AlreadyInitialized,
    /// A region was added to a [`crate::GlobalHeap`] before its `init`.
    NotInitialized,
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NullStart => write!(f, "region start is null"),
            Self::Overflow => write!(f, "region end overflows the address space"),
            Self::TooSmall { len, min } => {
                write!(f, "region of {len} bytes is too small: need at least {min}")
            }
            Self::BadCpuCount(n) => {
                write!(f, "CPU count {n} is outside 1..={}", crate::MAX_CPUS)
            }
            Self::TooManyRegions => write!(f, "heap already has {} regions", crate::MAX_REGIONS),
            Self::TooLarge => write!(
                f,
                "region is too large: its area grid holds more than 2^28 - 1 slabs (about 4 TiB)"
            ),
            Self::BadGeometry { area_pages, min } => write!(
                f,
                "geometry has areas of {area_pages} pages, fewer than a slab's {min}"
            ),
            Self::AlreadyInitialized => write!(f, "the global heap is already set up"),
            Self::NotInitialized => write!(f, "the global heap is not set up yet"),
        }
    }
}

/// Why a pointer handed to `free` was refused. The pointer is carried so the
/// message names it.
///
/// See the example on [`Heap::try_free`](crate::Heap::try_free).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// The pointer lies in no region of this heap.
    Foreign(usize),
    /// The pointer lies inside a live block but not at its start.
    Interior {
        /// The pointer passed to free.
        ptr: usize,
        /// Start of the live block that contains it.
        block: usize,
    },
    /// The pointer lies in memory that is free (never allocated, or already freed).
    NotAllocated(usize),
    /// The pointer is a block start whose block is already free or being freed.
    DoubleFree(usize),
    /// The pointer lies in the heap's own metadata or an unusable gap.
    Metadata(usize),
}

impl FreeError {
    /// The offending pointer.
    ///
    /// See the example on [`Handle::try_free`](crate::Handle::try_free).
    pub fn ptr(&self) -> usize {
        match *self {
            Self::Foreign(p)
            | Self::NotAllocated(p)
            | Self::DoubleFree(p)
            | Self::Metadata(p)
            | Self::Interior { ptr: p, .. } => p,
        }
    }
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Foreign(p) => write!(f, "free({p:#x}): pointer is not in this heap"),
            Self::Interior { ptr, block } => write!(
                f,
                "free({ptr:#x}): pointer is inside the block at {block:#x}, not at its start"
            ),
            Self::NotAllocated(p) => write!(
                f,
                "free({p:#x}): memory is not allocated (already freed, or never allocated)"
            ),
            Self::DoubleFree(p) => write!(f, "free({p:#x}): block is already free (double free)"),
            Self::Metadata(p) => write!(f, "free({p:#x}): pointer is in the heap's metadata"),
        }
    }
}

/// The panic of the panicking `free`s, kept out of line so the free fast
/// path carries no formatting code.
#[cold]
#[inline(never)]
#[track_caller]
pub(crate) fn free_failed(e: FreeError) -> ! {
    panic!("magbuddy: {e}")
}

impl core::error::Error for InitError {}
impl core::error::Error for FreeError {}
