//! The seed's three test modules, cross-CPU frees through per-CPU mailboxes,
//! and the exhaust round, generic over the allocator (`CpuAlloc`) and the
//! observer (`Check`), so checked and timed phases run the same code.
//! Sizes, live sets and counts are listed in the README.

use crate::arch::acpi::MAX_CPUS;
use crate::check::Check;
use crate::kalloc::CpuAlloc;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Most live blocks a module keeps per CPU.
pub const LIVE_MAX: usize = 1024;
/// Every `REMOTE_EVERY`-th free goes to the next CPU's mailbox instead.
const REMOTE_EVERY: u64 = 8;
/// Mailbox capacity.
const MAILBOX: usize = 256;
const PAGE: usize = 4096;

/// A small seeded PRNG (xorshift64*).
pub struct Rng(u64);

impl Rng {
    /// A generator for CPU `cpu` in round `round`.
    pub fn new(cpu: usize, round: u64) -> Rng {
        Rng(0x9e37_79b9_7f4a_7c15
            ^ (cpu as u64 + 1) << 32
            ^ round.wrapping_mul(0x2545_f491_4f6c_dd1d)
            | 1)
    }
    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as usize) % n
    }
    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
}

/// One of the seed's test modules.
pub struct Module {
    /// Name in tables.
    pub name: &'static str,
    /// Live blocks per CPU.
    pub live: usize,
    /// Operations per CPU in a checked phase (times `scale`).
    pub checked_ops: usize,
    /// Operations per CPU in a timed phase (times `scale`).
    pub timed_ops: usize,
    /// Draws a request size.
    pub size: fn(&mut Rng) -> usize,
}

fn small(r: &mut Rng) -> usize {
    if r.below(100) < 90 {
        r.range(8, 128)
    } else {
        r.range(129, 2048)
    }
}

fn large(r: &mut Rng) -> usize {
    match r.below(100) {
        0..60 => PAGE,
        60..85 => r.range(2, 16) * PAGE,
        85..98 => r.range(64 << 10, 512 << 10),
        _ => r.range(1 << 20, 2 << 20),
    }
}

fn mixed(r: &mut Rng) -> usize {
    match r.below(1000) {
        0..750 => r.range(8, 128),
        750..850 => r.range(129, 2048),
        850..970 => PAGE,
        970..995 => r.range(2, 16) * PAGE,
        _ => r.range(256 << 10, 2 << 20),
    }
}

/// The three modules: below one page, above one page, mixed.
pub const MODULES: [Module; 3] = [
    Module {
        name: "small",
        live: 1024,
        checked_ops: 20_000,
        timed_ops: 200_000,
        size: small,
    },
    Module {
        name: "large",
        live: 64,
        checked_ops: 2_000,
        timed_ops: 20_000,
        size: large,
    },
    Module {
        name: "mixed",
        live: 512,
        checked_ops: 10_000,
        timed_ops: 100_000,
        size: mixed,
    },
];

/// A live block.
#[derive(Clone, Copy, Default)]
pub struct Slot {
    ptr: usize,
    size: usize,
}

/// A single-producer single-consumer ring of blocks for one receiving CPU.
pub struct Mailbox {
    head: AtomicUsize,
    tail: AtomicUsize,
    ptr: [AtomicUsize; MAILBOX],
    size: [AtomicUsize; MAILBOX],
}

#[allow(clippy::declare_interior_mutable_const)] // used only to build the array
const EMPTY: Mailbox = Mailbox {
    head: AtomicUsize::new(0),
    tail: AtomicUsize::new(0),
    ptr: [const { AtomicUsize::new(0) }; MAILBOX],
    size: [const { AtomicUsize::new(0) }; MAILBOX],
};

/// `MAILBOXES[c]` receives from CPU `c - 1` (mod the active count).
static MAILBOXES: [Mailbox; MAX_CPUS] = [EMPTY; MAX_CPUS];

impl Mailbox {
    fn send(&self, s: Slot) -> bool {
        let t = self.tail.load(Ordering::Relaxed); // we are the only producer
                                                   // Acquire: pairs with the receiver's Release of `head`, so it has
                                                   // finished reading the entry we are about to overwrite.
        if t - self.head.load(Ordering::Acquire) == MAILBOX {
            return false;
        }
        self.ptr[t % MAILBOX].store(s.ptr, Ordering::Relaxed);
        self.size[t % MAILBOX].store(s.size, Ordering::Relaxed);
        // Release: publishes the entry and the block's contents (canaries).
        self.tail.store(t + 1, Ordering::Release);
        true
    }

    fn recv(&self) -> Option<Slot> {
        let h = self.head.load(Ordering::Relaxed); // we are the only consumer
                                                   // Acquire: pairs with the sender's Release of `tail`.
        if h == self.tail.load(Ordering::Acquire) {
            return None;
        }
        let s = Slot {
            ptr: self.ptr[h % MAILBOX].load(Ordering::Relaxed),
            size: self.size[h % MAILBOX].load(Ordering::Relaxed),
        };
        // Release: pairs with the Acquire in `send`.
        self.head.store(h + 1, Ordering::Release);
        Some(s)
    }
}

/// What one CPU did in one module.
#[derive(Clone, Copy, Default, Debug)]
pub struct Counts {
    /// Successful allocations plus frees (local and remote).
    pub ops: u64,
    /// Blocks this CPU freed that another CPU allocated.
    pub remote_frees: u64,
}

/// One CPU's side of a module run.
pub struct Worker<'a, H: CpuAlloc, C: Check> {
    /// This CPU's allocator access.
    pub h: &'a mut H,
    /// The observer.
    pub check: &'a C,
    /// This CPU's index.
    pub cpu: usize,
    /// Active CPUs (mailbox ring size).
    pub active: usize,
    /// This CPU's live-block array (`LIVE_MAX` slots).
    pub slots: &'a mut [Slot],
    /// What happened.
    pub counts: Counts,
}

impl<H: CpuAlloc, C: Check> Worker<'_, H, C> {
    fn free(&mut self, s: Slot) {
        self.check.on_free(s.ptr as *mut u8, s.size);
        // SAFETY: `s` is a live block of this allocator, freed once (the
        // shadow bitmap checks that in checked phases).
        unsafe { self.h.free(s.ptr as *mut u8) };
        self.counts.ops += 1;
    }

    /// Frees everything in this CPU's mailbox.
    pub fn drain_mailbox(&mut self) {
        while let Some(s) = MAILBOXES[self.cpu].recv() {
            self.free(s);
            self.counts.remote_frees += 1;
        }
    }

    /// The churn: `ops` steps over a live set of `m.live` random slots; an
    /// empty slot is filled, a full one freed (every 8th of those through the
    /// next CPU's mailbox). Panics if the allocator runs out of memory.
    pub fn churn(&mut self, m: &Module, ops: usize, round: u64) {
        let mut rng = Rng::new(self.cpu, round);
        let next = &MAILBOXES[(self.cpu + 1) % self.active];
        let mut frees = 0u64;
        for i in 0..ops {
            if i % 16 == 0 {
                self.drain_mailbox();
            }
            let k = rng.below(m.live);
            let s = self.slots[k];
            if s.ptr == 0 {
                let size = (m.size)(&mut rng);
                let p = self.h.alloc(size).unwrap_or_else(|| {
                    panic!(
                        "{}: alloc({size}) failed with a live set of {} blocks",
                        m.name, m.live
                    )
                });
                self.check.on_alloc(p.as_ptr(), size);
                self.slots[k] = Slot {
                    ptr: p.as_ptr() as usize,
                    size,
                };
                self.counts.ops += 1;
            } else {
                self.slots[k] = Slot::default();
                frees += 1;
                if self.active > 1 && frees.is_multiple_of(REMOTE_EVERY) && next.send(s) {
                    continue;
                }
                self.free(s);
            }
        }
    }

    /// Frees the rest of the live set.
    pub fn teardown(&mut self) {
        for k in 0..self.slots.len() {
            let s = core::mem::take(&mut self.slots[k]);
            if s.ptr != 0 {
                self.free(s);
            }
        }
    }

    /// Allocates blocks from `start` bytes down to one page (halving on each
    /// failure) until a page fails too. The blocks are chained through a link
    /// at offset 64 (between the canary edges). Returns (chain, bytes).
    pub fn exhaust(&mut self, start: usize) -> (usize, usize) {
        let (mut head, mut bytes, mut size) = (0usize, 0usize, start);
        while size >= PAGE {
            match self.h.alloc(size) {
                Some(p) => {
                    self.check.on_alloc(p.as_ptr(), size);
                    // SAFETY: a fresh block of >= 4 KiB that we own; the link
                    // sits at offsets 64..80, outside the canary edges.
                    unsafe { (p.as_ptr().add(64) as *mut [usize; 2]).write([head, size]) };
                    head = p.as_ptr() as usize;
                    bytes += size;
                    self.counts.ops += 1;
                }
                None => size /= 2,
            }
        }
        (head, bytes)
    }

    /// Frees a chain built by [`exhaust`](Self::exhaust).
    pub fn free_chain(&mut self, mut head: usize) {
        while head != 0 {
            // SAFETY: `head` is a live chain block written by `exhaust`.
            let [next, size] = unsafe { ((head + 64) as *const [usize; 2]).read() };
            self.free(Slot { ptr: head, size });
            head = next;
        }
    }
}
