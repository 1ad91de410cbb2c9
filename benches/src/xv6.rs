//! The page allocator of seed 002: xv6's `kalloc` with one free list per CPU,
//! each under its own spinlock, and stealing when a CPU's list runs dry.
//!
//! This is what the xv6 "memory allocator" lab asks for, written honestly:
//!
//! * `init` threads every page of the region onto the lists, the region split
//!   evenly between CPUs (xv6 gives all pages to the CPU running `kinit`; the
//!   even split is the better-behaved variant).
//! * `alloc` pops from its own CPU's list under that CPU's lock. When the list
//!   is empty it visits the other CPUs in turn, takes each one's lock, and
//!   moves up to [`STEAL`] pages to its own list.
//! * `free` pushes onto the freeing CPU's list: pages migrate to whoever frees
//!   them, as in the lab.
//!
//! It serves single pages only (xv6 has nothing larger): requests above a page
//! return null and the benchmarks run it on page workloads only. Free-list
//! links live in the free pages themselves, so metadata is one lock and one
//! head per CPU.

use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_utils::CachePadded;

use crate::region::{Region, PAGE};

/// Pages moved per steal: enough that a CPU that only allocates does not steal
/// on every call, few enough that the victim keeps most of its list.
pub const STEAL: usize = 32;

/// One CPU's list: a test-and-test-and-set lock and an intrusive stack.
struct CpuList {
    locked: AtomicBool,
    head: std::cell::UnsafeCell<*mut u8>,
}

// SAFETY: `head` is only touched while `locked` is held (see `with`).
unsafe impl Sync for CpuList {}

impl CpuList {
    /// Runs `f` on the list head under the lock.
    fn with<R>(&self, f: impl FnOnce(&mut *mut u8) -> R) -> R {
        loop {
            // Acquire: pairs with the Release store below, so the previous
            // holder's writes to the list (and to the pages' links) are seen.
            if !self.locked.load(Ordering::Relaxed)
                && self
                    .locked
                    .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                break;
            }
            std::hint::spin_loop();
        }
        // SAFETY: we hold the lock, so nobody else reaches `head`.
        let r = f(unsafe { &mut *self.head.get() });
        // Release: publishes our list changes to the next holder.
        self.locked.store(false, Ordering::Release);
        r
    }
}

/// Per-CPU page free lists over one region.
pub struct PerCpuPages {
    lists: Vec<CachePadded<CpuList>>,
    region: Region,
}

impl PerCpuPages {
    /// Threads every page of `region` onto `cpus` lists.
    pub fn new(region: Region, cpus: usize) -> Self {
        let pages = region.len() / PAGE;
        let lists: Vec<_> = (0..cpus)
            .map(|_| {
                CachePadded::new(CpuList {
                    locked: AtomicBool::new(false),
                    head: std::cell::UnsafeCell::new(std::ptr::null_mut()),
                })
            })
            .collect();
        let base = region.start();
        for p in (0..pages).rev() {
            // SAFETY: page `p` lies inside the region, which we own.
            let page = unsafe { base.add(p * PAGE) };
            lists[p * cpus / pages].with(|head| {
                // SAFETY: the page is free and ours; its first word is the link.
                unsafe { page.cast::<*mut u8>().write(*head) };
                *head = page;
            });
        }
        Self { lists, region }
    }

    /// Number of CPU lists.
    pub fn cpus(&self) -> usize {
        self.lists.len()
    }

    /// One page for `cpu`, or null when every list is empty.
    pub fn alloc(&self, cpu: usize) -> *mut u8 {
        let p = self.lists[cpu].with(pop);
        if !p.is_null() {
            return p;
        }
        self.steal(cpu)
    }

    #[cold]
    fn steal(&self, cpu: usize) -> *mut u8 {
        let n = self.lists.len();
        for victim in (1..n).map(|i| (cpu + i) % n) {
            // Take a batch from the victim, then hand all but one to our list:
            // never hold two locks at once, so no lock order is needed.
            let mut batch = std::ptr::null_mut::<u8>();
            let got = self.lists[victim].with(|head| {
                let mut got = 0;
                while got < STEAL {
                    let p = pop(head);
                    if p.is_null() {
                        break;
                    }
                    push(&mut batch, p);
                    got += 1;
                }
                got
            });
            if got == 0 {
                continue;
            }
            let mine = pop(&mut batch);
            if !batch.is_null() {
                self.lists[cpu].with(|head| {
                    while !batch.is_null() {
                        push(head, pop(&mut batch));
                    }
                });
            }
            return mine;
        }
        std::ptr::null_mut()
    }

    /// Returns a page to `cpu`'s list.
    ///
    /// # Safety
    /// * `p` came from [`Self::alloc`] of this allocator and is not used again.
    pub unsafe fn free(&self, cpu: usize, p: *mut u8) {
        debug_assert!(
            self.region.start() <= p
                && (p as usize) < self.region.start() as usize + self.region.len()
        );
        self.lists[cpu].with(|head| push(head, p));
    }
}

/// Pops the first page of a list (null if empty).
fn pop(head: &mut *mut u8) -> *mut u8 {
    let p = *head;
    if !p.is_null() {
        // SAFETY: a list holds free pages whose first word is the link.
        *head = unsafe { p.cast::<*mut u8>().read() };
    }
    p
}

/// Pushes a free page onto a list.
fn push(head: &mut *mut u8, p: *mut u8) {
    // SAFETY: `p` is a free page owned by the list's holder.
    unsafe { p.cast::<*mut u8>().write(*head) };
    *head = p;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steals_and_exhausts() {
        let pool = PerCpuPages::new(Region::new(64 * PAGE), 4);
        // CPU 0 takes everything: its 16 pages, then steals the other 48.
        let pages: Vec<_> = (0..64).map(|_| pool.alloc(0)).collect();
        assert!(pages.iter().all(|p| !p.is_null()));
        let mut sorted = pages.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 64, "a page was handed out twice");
        assert!(pool.alloc(3).is_null());
        for p in pages {
            // SAFETY: allocated above, freed once.
            unsafe { pool.free(1, p) };
        }
        assert!(!pool.alloc(2).is_null());
    }
}
