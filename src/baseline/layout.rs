//! Where a region's pages, descriptors and header go (pure address
//! arithmetic, no memory is touched).

use core::mem::size_of;

use super::buddy::PageDesc;
use crate::PAGE_SIZE;

/// Where a region's pages, descriptors and (for `init`) header go.
pub(super) struct Plan {
    pub(super) base: usize,
    pub(super) npages: usize,
    pub(super) descs: usize,
    /// Header address (`end` rounded down) or, without a header, the end of
    /// the descriptors.
    pub(super) header: usize,
}

/// Lays out a region `[start, end)`: pages from `start` rounded up to a page,
/// then (rounded down from `end`) a header of `header` bytes aligned to
/// `align`, and the descriptors just below it. Metadata goes at the end so
/// that a well-aligned region keeps its big aligned blocks (the seed put its
/// management area at high addresses too).
pub(super) fn plan(start: usize, end: usize, header: usize, align: usize) -> Option<Plan> {
    let base = start.checked_next_multiple_of(PAGE_SIZE)?;
    let header = end.checked_sub(header)? & !(align - 1);
    let room = header.checked_sub(base)?;
    let mut npages = room / (PAGE_SIZE + size_of::<PageDesc>());
    // The first guess ignores rounding, which costs less than one page: this
    // loop runs at most twice.
    while npages > 0 {
        let descs = header - npages * size_of::<PageDesc>();
        if base + npages * PAGE_SIZE <= descs {
            return Some(Plan {
                base,
                npages,
                descs,
                header,
            });
        }
        npages -= 1;
    }
    None
}

/// Smallest `len` for which [`plan`] finds one page (`usize::MAX` if none).
pub(super) fn min_len(start: usize, header: usize, align: usize) -> usize {
    let one = || {
        let base = start.checked_next_multiple_of(PAGE_SIZE)?;
        let descs_end = base.checked_add(PAGE_SIZE + size_of::<PageDesc>())?;
        let end = descs_end
            .checked_next_multiple_of(align)?
            .checked_add(header)?;
        Some(end - start)
    };
    one().unwrap_or(usize::MAX)
}
