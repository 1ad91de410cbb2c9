//! Giving memory back: [`Heap::trim`] hands every wholly free area to the
//! caller while the heap holds it, so the caller can discard its pages
//! (`MADV_DONTNEED`) without racing an allocation of them.

use super::Heap;

impl Heap {
    /// Calls `release(start, len)` for every area that is wholly free, after
    /// claiming it in the buddy tree (so no allocation can take its pages
    /// while `release` runs), then frees it again; returns the bytes passed.
    /// Run [`Heap::reclaim`] first to send cached memory home. An area
    /// allocated or freed concurrently is simply skipped or not. While
    /// `release` runs, its area counts as memory an operation in flight
    /// holds: a concurrent allocation may return `None` as if the area were
    /// allocated (the no-false-OOM contract's allowance, like a run
    /// allocation's claimed areas), so keep `release` short.
    ///
    /// # Example
    ///
    /// ```
    /// # use magbuddy::{Heap, HeapConfig};
    /// # let len = Heap::min_region_len(HeapConfig::new(1));
    /// # let mut ram = vec![0u8; len];
    /// # // SAFETY: `ram` is ours and outlives the heap's use.
    /// # let heap = unsafe { Heap::init(ram.as_mut_ptr(), len, 1) }.unwrap();
    /// heap.reclaim();
    /// let mut areas = 0;
    /// let bytes = heap.trim(|_start, _len| {
    ///     // An OS kernel would discard the pages here (`madvise(MADV_DONTNEED)`).
    ///     areas += 1;
    /// });
    /// assert_eq!(bytes, areas * (1 << 20)); // whole 1 MiB areas
    /// ```
    pub fn trim(&self, mut release: impl FnMut(*mut u8, usize)) -> usize {
        let h = self.g.area_order();
        let len = (self.g.area_pages() as usize) << crate::PAGE_SHIFT;
        let mut trimmed = 0;
        for reg in self.regions() {
            for a in 0..reg.areas {
                let area = reg.area(a);
                // Relaxed: a hint; the claim below decides.
                if area.load_top() != 0 || area.alloc(h).offset.is_none() {
                    continue;
                }
                release(reg.addr_of(a << h) as *mut u8, len);
                trimmed += len;
                area.free(0, h)
                    .map_err(drop)
                    .expect("release of an area trim claimed");
            }
        }
        trimmed
    }
}
