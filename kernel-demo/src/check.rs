//! What the workloads report to: in checked phases the `magbuddy-checkers`
//! shadow bitmaps (one per heap range; overlap, misalignment, bad frees),
//! edge canaries (first and last 64 bytes of every block) and a per-CPU
//! ledger; in timed phases nothing but a one-byte touch.
//!
//! Events are recorded client-side: an allocation after the allocator
//! returned it, a free before the allocator is called (checkers crate docs).

use crate::arch::boot::Range;
use crate::arch::percpu;
use crate::early;
use core::sync::atomic::AtomicU64;
use magbuddy_checkers::{canary, words_needed, Ledger, ShadowBitmap};

/// Bytes per shadow bit: the allocators' smallest block.
pub const GRANULE: usize = 8;
/// Canary bytes at each end of a block.
pub const EDGE: usize = 64;
/// Largest alignment the shadow demands (blocks are naturally aligned).
const MAX_ALIGN: usize = 1 << 40;

/// A workload's observer.
pub trait Check: Sync {
    /// `p` of `size` bytes was just returned by the allocator.
    fn on_alloc(&self, p: *mut u8, size: usize);
    /// `p` of `size` bytes is about to be freed (possibly by another CPU).
    fn on_free(&self, p: *mut u8, size: usize);
}

/// Timed phases: touch the first byte so the memory is really used.
pub struct NoCheck;

impl Check for NoCheck {
    #[inline]
    fn on_alloc(&self, p: *mut u8, _size: usize) {
        // SAFETY: `p` is a fresh block of at least one byte that we own.
        unsafe { p.write_volatile(0xa5) }
    }
    #[inline]
    fn on_free(&self, _p: *mut u8, _size: usize) {}
}

/// Checked phases. Lock-free, so the timer interrupt may use it too.
pub struct Shadow {
    maps: [Option<ShadowBitmap<'static>>; 16],
    seed: AtomicU64,
    /// allocs/frees per CPU (shard = CPU index).
    pub ledger: Ledger<16>,
}

impl Shadow {
    /// Shadow bitmaps over `ranges`, storage from early memory (1 bit per
    /// 8 bytes: 1/64 of the RAM covered).
    pub fn new(ranges: &[Range]) -> Shadow {
        let mut maps = [const { None }; 16];
        for (slot, r) in maps.iter_mut().zip(ranges) {
            let (base, len) = (r.start as usize, r.len() as usize);
            // SAFETY: zero is a valid (free) AtomicU64.
            let words = unsafe { early::zeroed_slice::<AtomicU64>(words_needed(len, GRANULE)) };
            *slot = Some(
                ShadowBitmap::new(base, len, GRANULE, MAX_ALIGN, words).expect("shadow config"),
            );
        }
        Shadow {
            maps,
            seed: AtomicU64::new(1),
            ledger: Ledger::new(),
        }
    }

    /// A new canary seed (per phase), so stale patterns never match.
    pub fn reseed(&self, seed: u64) {
        self.seed.store(seed, core::sync::atomic::Ordering::Relaxed);
    }

    fn seed(&self) -> u64 {
        // Relaxed: changed only between phases, behind barriers.
        self.seed.load(core::sync::atomic::Ordering::Relaxed)
    }

    fn map(&self, p: usize, size: usize) -> &ShadowBitmap<'static> {
        self.maps
            .iter()
            .flatten()
            .find(|m| p >= m.base() && p < m.base() + m.len())
            .unwrap_or_else(|| panic!("block {p:#x}+{size} B lies outside every heap range"))
    }

    /// Whether no block is live in any range; names the first live one.
    pub fn first_live(&self) -> Option<usize> {
        self.maps.iter().flatten().find_map(|m| m.first_live())
    }
}

impl Check for Shadow {
    fn on_alloc(&self, p: *mut u8, size: usize) {
        if let Err(e) = self.map(p as usize, size).on_alloc(p, size) {
            panic!("shadow: {e}");
        }
        self.ledger.shard(percpu::index()).on_alloc(size);
        // SAFETY: the shadow just proved the block is ours alone.
        unsafe { canary::fill_edges(p, size, self.seed(), EDGE) };
    }

    fn on_free(&self, p: *mut u8, size: usize) {
        // SAFETY: the block is live and owned by the caller, who filled its
        // edges in on_alloc (possibly on another CPU, ordered by the mailbox).
        if let Err(e) = unsafe { canary::check_edges(p, size, self.seed(), EDGE) } {
            panic!("canary: {e}");
        }
        if let Err(e) = self.map(p as usize, size).on_free(p, size) {
            panic!("shadow: {e}");
        }
        self.ledger.shard(percpu::index()).on_free(size);
    }
}
