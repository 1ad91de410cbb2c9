//! `bringup`: a deliberately simple allocator used only to bring the demo up
//! while magbuddy's `Heap`/`SpinHeap` are not built yet. It is NOT under test
//! and never appears in results as magbuddy.
//!
//! One spinlock (taken with interrupts off) guards a binary buddy allocator
//! over each region (4 KiB pages, blocks aligned to their size in absolute
//! addresses) and power-of-two object classes 8 B..2 KiB carved from pages.
//! A state byte per page, at the start of each region, makes `free` sizeless:
//! `FREE|order` / `USED|order` on a block's first page, `SLAB|class` on
//! object pages, 0 elsewhere. Object pages never return to the buddy lists.

use crate::arch::boot::Range;
use crate::kalloc::{largest_first, CpuAlloc, Failure, InitFailure, KernelAlloc, SharedAlloc};
use crate::sync::SpinLock;
use core::ptr::{null_mut, NonNull};

const PAGE: usize = 4096;
const ORDERS: usize = 24; // up to 32 GiB blocks
const CLASSES: usize = 12; // 2^3 .. 2^11
const FREE: u8 = 0x40;
const USED: u8 = 0x80;
const SLAB: u8 = 0xc0;

#[derive(Clone, Copy)]
struct Region {
    first: usize, // first managed page address
    pages: usize,
    states: *mut u8,
}

struct Inner {
    regions: [Region; 16],
    nregions: usize,
    orders: [*mut Link; ORDERS],
    classes: [*mut Link; CLASSES],
}

/// A free block's or free object's first bytes.
struct Link {
    next: *mut Link,
    prev: *mut Link,
}

// SAFETY: the raw pointers point into regions the heap owns; all access is
// under the lock.
unsafe impl Send for Inner {}

/// The bring-up heap.
pub struct Bringup {
    inner: SpinLock<Inner>,
}

impl Inner {
    fn region_of(&self, addr: usize) -> Option<&Region> {
        self.regions[..self.nregions]
            .iter()
            .find(|r| addr >= r.first && addr < r.first + r.pages * PAGE)
    }

    /// # Safety
    /// `addr` is a managed page that starts a block of `order`.
    unsafe fn state(&self, addr: usize) -> *mut u8 {
        let r = self
            .region_of(addr)
            .expect("bringup: address outside every region");
        // SAFETY: the page index is inside the region's state table.
        unsafe { r.states.add((addr - r.first) / PAGE) }
    }

    /// # Safety
    /// `b` is a free, unlisted block of `order` inside a region.
    unsafe fn push(&mut self, b: usize, order: usize) {
        let l = b as *mut Link;
        // SAFETY: the block is free and ours; the list nodes are free blocks.
        unsafe {
            (*l).next = self.orders[order];
            (*l).prev = null_mut();
            if !self.orders[order].is_null() {
                (*self.orders[order]).prev = l;
            }
            self.orders[order] = l;
            *self.state(b) = FREE | order as u8;
        }
    }

    /// # Safety
    /// `b` is on list `order`.
    unsafe fn unlink(&mut self, b: usize, order: usize) {
        let l = b as *mut Link;
        // SAFETY: `b` and its neighbours are listed free blocks.
        unsafe {
            if (*l).prev.is_null() {
                self.orders[order] = (*l).next;
            } else {
                (*(*l).prev).next = (*l).next;
            }
            if !(*l).next.is_null() {
                (*(*l).next).prev = (*l).prev;
            }
            *self.state(b) = 0;
        }
    }

    fn alloc_pages(&mut self, order: usize) -> Option<usize> {
        let mut o = (order..ORDERS).find(|&o| !self.orders[o].is_null())?;
        let b = self.orders[o] as usize;
        // SAFETY: `b` heads list `o`; halves of a free block are free.
        unsafe {
            self.unlink(b, o);
            while o > order {
                o -= 1;
                self.push(b + (PAGE << o), o);
            }
            *self.state(b) = USED | order as u8;
        }
        Some(b)
    }

    /// # Safety
    /// `b` is an allocated block of `order`.
    unsafe fn free_pages(&mut self, mut b: usize, mut order: usize) {
        while order + 1 < ORDERS {
            let buddy = b ^ (PAGE << order);
            let Some(r) = self.region_of(buddy) else {
                break;
            };
            if buddy + (PAGE << order) > r.first + r.pages * PAGE {
                break;
            }
            // SAFETY: `buddy` is a managed page.
            if unsafe { *self.state(buddy) } != FREE | order as u8 {
                break;
            }
            // SAFETY: the buddy is a listed free block of the same order.
            unsafe { self.unlink(buddy, order) };
            b = b.min(buddy);
            order += 1;
        }
        // SAFETY: the merged block is free and unlisted.
        unsafe { self.push(b, order) };
    }

    fn alloc_object(&mut self, class: usize) -> Option<usize> {
        if self.classes[class].is_null() {
            let page = self.alloc_pages(0)?;
            let size = 1 << (class + 3);
            // SAFETY: a fresh page, cut into objects linked through their
            // first word (`next` only; objects are at least 8 bytes).
            unsafe {
                *self.state(page) = SLAB | class as u8;
                for o in (page..page + PAGE).step_by(size).rev() {
                    (*(o as *mut Link)).next = self.classes[class];
                    self.classes[class] = o as *mut Link;
                }
            }
        }
        let o = self.classes[class];
        // SAFETY: a listed free object.
        self.classes[class] = unsafe { (*o).next };
        Some(o as usize)
    }

    fn alloc(&mut self, size: usize) -> Option<NonNull<u8>> {
        if size == 0 {
            return None;
        }
        let p = if size <= PAGE / 2 {
            self.alloc_object(size.max(8).next_power_of_two().trailing_zeros() as usize - 3)
        } else {
            let order = size
                .div_ceil(PAGE)
                .checked_next_power_of_two()?
                .trailing_zeros() as usize;
            if order >= ORDERS {
                return None;
            }
            self.alloc_pages(order)
        };
        NonNull::new(p? as *mut u8)
    }

    /// # Safety
    /// `p` is a live block.
    unsafe fn free(&mut self, p: usize) {
        let page = p & !(PAGE - 1);
        // SAFETY: the caller passes a live block, which lies in a region.
        let st = unsafe { *self.state(page) };
        match st & 0xc0 {
            SLAB => {
                let o = p as *mut Link;
                let class = (st & 0x3f) as usize;
                // SAFETY: a live object of this class becomes free.
                unsafe { (*o).next = self.classes[class] };
                self.classes[class] = o;
            }
            USED if page == p => {
                // SAFETY: `p` starts an allocated block of this order.
                unsafe { self.free_pages(p, (st & 0x3f) as usize) }
            }
            _ => panic!("bringup: free({p:#x}) of a block that is not allocated (state {st:#x})"),
        }
    }

    /// # Safety
    /// `r` is RAM owned by the heap.
    unsafe fn add(&mut self, r: Range) -> Result<(), Failure> {
        let start = (r.start as usize).next_multiple_of(PAGE);
        let end = r.end as usize & !(PAGE - 1);
        let pages_all = end.saturating_sub(start) / PAGE;
        let meta_pages = pages_all.div_ceil(PAGE);
        if pages_all <= meta_pages + 1 || self.nregions == self.regions.len() {
            return Err(Failure::new(format_args!(
                "bringup: region {r:x?} unusable"
            )));
        }
        let states = start as *mut u8;
        let first = start + meta_pages * PAGE;
        let pages = pages_all - meta_pages;
        // SAFETY: the state table is the region's first pages, which we own.
        unsafe { core::ptr::write_bytes(states, 0, pages) };
        self.regions[self.nregions] = Region {
            first,
            pages,
            states,
        };
        self.nregions += 1;
        // Carve maximal naturally aligned blocks.
        let mut b = first;
        while b < first + pages * PAGE {
            let mut o = (b.trailing_zeros() as usize - 12).min(ORDERS - 1);
            while b + (PAGE << o) > first + pages * PAGE {
                o -= 1;
            }
            // SAFETY: `b..b + PAGE << o` is free and inside the region.
            unsafe { self.push(b, o) };
            b += PAGE << o;
        }
        Ok(())
    }
}

impl SharedAlloc for Bringup {
    fn alloc_shared(&self, size: usize) -> Option<NonNull<u8>> {
        self.inner.lock_irqsave().alloc(size)
    }
    unsafe fn free_shared(&self, ptr: *mut u8) {
        // SAFETY: forwarded to the caller.
        unsafe { self.inner.lock_irqsave().free(ptr as usize) }
    }
}

impl CpuAlloc for &Bringup {
    fn alloc(&mut self, size: usize) -> Option<NonNull<u8>> {
        self.alloc_shared(size)
    }
    unsafe fn free(&mut self, ptr: *mut u8) {
        // SAFETY: forwarded to the caller.
        unsafe { self.free_shared(ptr) }
    }
}

impl KernelAlloc for Bringup {
    type Cpu<'a> = &'a Bringup;
    const NAME: &'static str = "bringup";

    unsafe fn create(ranges: &[Range], _cpus: usize) -> Result<Self, InitFailure> {
        let mut inner = Inner {
            regions: [Region {
                first: 0,
                pages: 0,
                states: null_mut(),
            }; 16],
            nregions: 0,
            orders: [null_mut(); ORDERS],
            classes: [null_mut(); CLASSES],
        };
        let (sorted, n) = largest_first(ranges);
        for &range in &sorted[..n] {
            // SAFETY: forwarded to the caller.
            unsafe { inner.add(range) }.map_err(|why| InitFailure { range, why })?;
        }
        Ok(Bringup {
            inner: SpinLock::new(inner),
        })
    }

    fn cpu(&self) -> Option<&Bringup> {
        Some(self)
    }

    fn validate(&self) -> Result<(), Failure> {
        Ok(())
    }
}
