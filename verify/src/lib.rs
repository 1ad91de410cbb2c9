//! Shared support for the verification suites in `tests/`: heaps built inside
//! the model checker's execution, and schedule counts scaled by one variable.
#![allow(clippy::missing_safety_doc)]

use std::alloc::{alloc, dealloc, Layout};

use magbuddy::{Geometry, Heap, HeapConfig};

/// Schedules per test: `base` times `MAGBUDDY_VERIFY_SCALE` (default 1), so a
/// soak run is `MAGBUDDY_VERIFY_SCALE=100 cargo test -p verify --release`.
pub fn schedules(base: usize) -> usize {
    let scale = std::env::var("MAGBUDDY_VERIFY_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    base * scale
}

/// A heap inside memory it owns; freed on drop. Build one per schedule.
pub struct OwnedHeap {
    mem: *mut u8,
    layout: Layout,
    heap: *const Heap,
}

// SAFETY: the heap is Sync and the memory is owned by this value alone.
unsafe impl Send for OwnedHeap {}
// SAFETY: as above.
unsafe impl Sync for OwnedHeap {}

impl OwnedHeap {
    /// The smallest heap that has `areas` whole areas of geometry `g`.
    pub fn new(g: Geometry, cpus: usize, areas: usize) -> Self {
        let config = HeapConfig { cpus, geometry: g };
        let area = (g.area_pages() as usize) * magbuddy::PAGE_SIZE;
        let len = Heap::min_region_len(config) + (areas - 1) * area;
        let layout = Layout::from_size_align(len, area).unwrap();
        // SAFETY: non-zero size.
        let mem = unsafe { alloc(layout) };
        assert!(!mem.is_null());
        // SAFETY: the memory is ours for as long as `self`.
        let heap = unsafe { Heap::init_with(mem, len, config) }.expect("heap");
        Self { mem, layout, heap }
    }

    /// The heap.
    pub fn heap(&self) -> &Heap {
        // SAFETY: constructed in `new`, lives until drop.
        unsafe { &*self.heap }
    }
}

impl Drop for OwnedHeap {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; the heap is not used after.
        unsafe { dealloc(self.mem, self.layout) }
    }
}
