//! A client's way into the heap: its own handle or the shared path.

use std::ptr::NonNull;

use magbuddy::{FreeError, Handle, Heap};

/// A CPU handle or the handle-less shared path, behind one interface.
pub enum Via<'h> {
    /// An exclusively claimed CPU slot.
    Handle(Handle<'h>),
    /// [`Heap::alloc`] / [`Heap::try_free`].
    Shared(&'h Heap),
}

impl<'h> Via<'h> {
    /// Handle `cpu` if `cpu < heap.cpus()` (it must be free), else the
    /// shared path.
    pub fn for_thread(heap: &'h Heap, cpu: usize) -> Self {
        if cpu < heap.cpus() {
            Self::Handle(heap.handle_for(cpu).expect("the thread's own CPU slot"))
        } else {
            Self::Shared(heap)
        }
    }

    /// Allocates `size` bytes.
    pub fn alloc(&mut self, size: usize) -> Option<NonNull<u8>> {
        match self {
            Self::Handle(h) => h.alloc(size),
            Self::Shared(heap) => heap.alloc(size),
        }
    }

    /// Frees the block at `addr`.
    ///
    /// # Safety
    /// As [`Heap::try_free`].
    pub unsafe fn try_free(&mut self, addr: usize) -> Result<(), FreeError> {
        match self {
            // SAFETY: forwarded from the caller.
            Self::Handle(h) => unsafe { h.try_free(addr as *mut u8) },
            // SAFETY: forwarded from the caller.
            Self::Shared(heap) => unsafe { heap.try_free(addr as *mut u8) },
        }
    }

    /// Whether this is the shared path.
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Shared(_))
    }
}
