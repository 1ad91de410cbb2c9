//! Shadow bitmap of live bytes: catches overlapping blocks, misaligned
//! blocks and frees of memory that is not live, as they happen.
//!
//! # Representation
//!
//! The checked range `[base, base + len)` is cut into granules of `granule`
//! bytes (a power of two, at most the allocator's smallest block). Granule
//! `g` covers `[base + g * granule, base + (g + 1) * granule)` and is bit
//! `g % 64` of word `g / 64` in caller-provided storage, so the checker needs
//! no heap and works on bare metal. A bit is set exactly while some accepted
//! block that touches the granule is live:
//!
//! ```text
//!   live_granules() == Σ over live blocks b of granules(b)      (no violation yet)
//! ```
//!
//! # Operations
//!
//! `on_alloc` sets a block's bits word by word with `fetch_or`; a bit that
//! was already set means the allocator handed out memory that is still live.
//! `on_free` clears them with `fetch_and`; a bit that was already clear means
//! a double free, a wrong size, or a block that was never handed out. Both are
//! wait-free: one read-modify-write per word, so blocks that share a word
//! (neighbours freed and allocated by different threads) never lose updates.
//!
//! A rejected operation has no lasting effect: `on_alloc` clears only the
//! bits it newly set, and `on_free` sets back only the bits it cleared, so the
//! bitmap keeps describing the accepted blocks and the run can go on.
//!
//! # Exactness under concurrency
//!
//! While no violation occurs every report is exact. A rejected multi-word
//! operation is visible to other threads between its first write and its
//! rollback, so *after* the first reported violation later reports (or their
//! absence) may be consequences of it. A run with a violation never passes.
//!
//! Every access is `Relaxed`. The checker is told about a free before the
//! allocator's free is called and about an allocation after the allocator
//! returned, so whenever the allocator (correctly) reuses memory, its own
//! synchronization makes the `on_free` happen before the `on_alloc`; two
//! read-modify-writes of one word ordered by happens-before are ordered the
//! same way in that word's modification order, which is all this needs.
//! Stronger orderings would add happens-before edges of their own and could
//! hide a missing `Release`/`Acquire` in the allocator from loom or miri.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

mod error;

pub use error::{ShadowConfigError, ShadowError};

/// Bits per storage word.
const BITS: usize = 64;

/// Number of `AtomicU64` words a [`ShadowBitmap`] over `len` bytes with the
/// given `granule` needs.
///
/// # Panics
///
/// If `granule` is zero (at compile time when used in a `const`).
pub const fn words_needed(len: usize, granule: usize) -> usize {
    len.div_ceil(granule).div_ceil(BITS)
}

/// One bit per granule of a range, set while the granule is live.
/// See the [module docs](self).
#[derive(Debug)]
pub struct ShadowBitmap<'a> {
    base: usize,
    len: usize,
    granule_shift: u32,
    max_align: usize,
    words: &'a [AtomicU64],
}

impl<'a> ShadowBitmap<'a> {
    /// A bitmap over `[base, base + len)` with the given `granule`, checking
    /// alignment up to `max_align`, in `words` (at least
    /// [`words_needed(len, granule)`](words_needed) of them, all zero unless
    /// the caller wants to start with live granules).
    pub fn new(
        base: usize,
        len: usize,
        granule: usize,
        max_align: usize,
        words: &'a [AtomicU64],
    ) -> Result<Self, ShadowConfigError> {
        if !granule.is_power_of_two() {
            return Err(ShadowConfigError::BadGranule(granule));
        }
        if !max_align.is_power_of_two() {
            return Err(ShadowConfigError::BadMaxAlign(max_align));
        }
        if base & (granule - 1) != 0 {
            return Err(ShadowConfigError::BaseNotGranuleAligned { base, granule });
        }
        if base.checked_add(len).is_none() {
            return Err(ShadowConfigError::RangeOverflow);
        }
        let needed = words_needed(len, granule);
        if words.len() < needed {
            return Err(ShadowConfigError::StorageTooSmall {
                needed,
                given: words.len(),
            });
        }
        Ok(Self {
            base,
            len,
            granule_shift: granule.trailing_zeros(),
            max_align,
            words,
        })
    }

    /// Start of the checked range.
    pub fn base(&self) -> usize {
        self.base
    }

    /// Length of the checked range in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes per bit.
    pub fn granule(&self) -> usize {
        1 << self.granule_shift
    }

    /// Largest alignment [`on_alloc`](Self::on_alloc) demands.
    pub fn max_align(&self) -> usize {
        self.max_align
    }

    /// Records that the allocator returned `ptr` for `size` bytes. On error
    /// the bitmap is left as it was (see the module docs).
    pub fn on_alloc(&self, ptr: *const u8, size: usize) -> Result<(), ShadowError> {
        self.on_alloc_addr(ptr.addr(), size)
    }

    /// [`on_alloc`](Self::on_alloc) for a bare address.
    pub fn on_alloc_addr(&self, addr: usize, size: usize) -> Result<(), ShadowError> {
        self.on_alloc_aligned(addr, size, 1)
    }

    /// [`on_alloc_addr`](Self::on_alloc_addr) that also demands `align`
    /// (e.g. a `Layout`'s), beyond the natural alignment. `align` must be a
    /// power of two; it is not capped at `max_align`.
    pub fn on_alloc_aligned(
        &self,
        addr: usize,
        size: usize,
        align: usize,
    ) -> Result<(), ShadowError> {
        let (first, last) = self.granules(addr, size)?;
        self.check_align(addr, size, align)?;
        self.set_range(first, last)
            .map_err(|g| ShadowError::Overlap {
                addr,
                size,
                conflict: self.granule_addr(g),
            })
    }

    /// Records that the client is about to free `ptr` of `size` bytes. Call
    /// it *before* the allocator's free (see the module docs). On error the
    /// bitmap is left as it was.
    pub fn on_free(&self, ptr: *const u8, size: usize) -> Result<(), ShadowError> {
        self.on_free_addr(ptr.addr(), size)
    }

    /// [`on_free`](Self::on_free) for a bare address.
    pub fn on_free_addr(&self, addr: usize, size: usize) -> Result<(), ShadowError> {
        let (first, last) = self.granules(addr, size)?;
        self.check_align(addr, size, 1)?;
        self.clear_range(first, last)
            .map_err(|g| ShadowError::NotLive {
                addr,
                size,
                missing: self.granule_addr(g),
            })
    }

    /// Whether every granule of `[addr, addr + size)` is live. A snapshot;
    /// exact only when no operation on those granules is in flight.
    pub fn is_live(&self, addr: usize, size: usize) -> bool {
        let Ok((first, last)) = self.granules(addr, size) else {
            return false;
        };
        // Relaxed: a snapshot for reports and tests; see the module docs.
        (first..=last).all(|g| self.words[g / BITS].load(Relaxed) & (1 << (g % BITS)) != 0)
    }

    /// Number of live granules. Exact when no operation is in flight (e.g.
    /// after joining the threads, which orders their updates before this).
    pub fn live_granules(&self) -> usize {
        let n = words_needed(self.len, self.granule());
        // Relaxed: the caller's join (or other synchronization) orders the
        // updates it wants counted; see the method docs.
        self.words[..n]
            .iter()
            .map(|w| w.load(Relaxed).count_ones() as usize)
            .sum()
    }

    /// Live granules times the granule size (an upper bound on live bytes).
    pub fn live_bytes(&self) -> usize {
        self.live_granules() << self.granule_shift
    }

    /// Whether no granule is live: the end-of-run check.
    pub fn is_empty(&self) -> bool {
        self.first_live().is_none()
    }

    /// Address of the lowest live granule, to name a leaked block.
    pub fn first_live(&self) -> Option<usize> {
        let n = words_needed(self.len, self.granule());
        // Relaxed: as in `live_granules`.
        let (i, w) = self.words[..n]
            .iter()
            .map(|w| w.load(Relaxed))
            .enumerate()
            .find(|&(_, w)| w != 0)?;
        Some(self.granule_addr(i * BITS + w.trailing_zeros() as usize))
    }

    /// Marks everything free. Not meant to race with other operations.
    pub fn clear(&self) {
        for w in self.words {
            // Relaxed: callers reset between runs, after synchronizing.
            w.store(0, Relaxed);
        }
    }

    /// Start address of granule `g`.
    fn granule_addr(&self, g: usize) -> usize {
        self.base + (g << self.granule_shift)
    }

    /// First and last granule of a block, after the null, size and range checks.
    fn granules(&self, addr: usize, size: usize) -> Result<(usize, usize), ShadowError> {
        if addr == 0 {
            return Err(ShadowError::Null { size });
        }
        if size == 0 {
            return Err(ShadowError::ZeroSize { addr });
        }
        let out = ShadowError::OutOfRange {
            addr,
            size,
            base: self.base,
            len: self.len,
        };
        let off = addr.checked_sub(self.base).ok_or(out)?;
        match off.checked_add(size) {
            Some(end) if end <= self.len => {
                Ok((off >> self.granule_shift, (end - 1) >> self.granule_shift))
            }
            _ => Err(out),
        }
    }

    /// Natural alignment `min(2^ceil(log2 size), max_align)`, raised to `align`.
    fn check_align(&self, addr: usize, size: usize, align: usize) -> Result<(), ShadowError> {
        let natural = size.checked_next_power_of_two().unwrap_or(self.max_align);
        let need = natural.min(self.max_align).max(align);
        if addr & (need - 1) != 0 {
            return Err(ShadowError::Misaligned {
                addr,
                size,
                align: need,
            });
        }
        Ok(())
    }

    /// Sets granules `first..=last`; on a clash undoes what it set and
    /// returns the lowest clashing granule.
    fn set_range(&self, first: usize, last: usize) -> Result<(), usize> {
        for w in first / BITS..=last / BITS {
            let m = word_mask(w, first, last);
            // Relaxed: see the module docs; the RMW makes neighbours that
            // share this word (other threads' blocks) keep their bits.
            let old = self.words[w].fetch_or(m, Relaxed);
            let clash = old & m;
            if clash != 0 {
                // Undo only our own bits: the clashing ones belong to a live block.
                // Relaxed: as above.
                self.words[w].fetch_and(!(m & !old), Relaxed);
                for v in first / BITS..w {
                    // Relaxed: as above. Earlier words had no clash, so all of
                    // their masked bits were set by us.
                    self.words[v].fetch_and(!word_mask(v, first, last), Relaxed);
                }
                return Err(w * BITS + clash.trailing_zeros() as usize);
            }
        }
        Ok(())
    }

    /// Clears granules `first..=last`; if one was not live, restores what it
    /// cleared and returns the lowest such granule.
    fn clear_range(&self, first: usize, last: usize) -> Result<(), usize> {
        for w in first / BITS..=last / BITS {
            let m = word_mask(w, first, last);
            // Relaxed: see the module docs and `set_range`.
            let old = self.words[w].fetch_and(!m, Relaxed);
            let missing = m & !old;
            if missing != 0 {
                // Put back the live bits we cleared; they belong to some
                // other live block (or to this one, freed with a wrong size).
                // Relaxed: as above.
                self.words[w].fetch_or(m & old, Relaxed);
                for v in first / BITS..w {
                    // Relaxed: as above. Earlier words were fully live.
                    self.words[v].fetch_or(word_mask(v, first, last), Relaxed);
                }
                return Err(w * BITS + missing.trailing_zeros() as usize);
            }
        }
        Ok(())
    }
}

/// Bits of word `w` that lie in granules `first..=last` (which touch `w`).
fn word_mask(w: usize, first: usize, last: usize) -> u64 {
    let lo = first.max(w * BITS) - w * BITS;
    let hi = last.min(w * BITS + BITS - 1) - w * BITS;
    (u64::MAX >> (BITS - 1 - hi)) & (u64::MAX << lo)
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::sync::Barrier;
    use std::thread;
    use std::vec::Vec;

    const BASE: usize = 0x10_0000;
    const LEN: usize = 64 * 1024;

    fn storage(len: usize, granule: usize) -> Vec<AtomicU64> {
        (0..words_needed(len, granule))
            .map(|_| AtomicU64::new(0))
            .collect()
    }

    #[test]
    fn words_needed_rounds_up() {
        assert_eq!(words_needed(0, 8), 0);
        assert_eq!(words_needed(8, 8), 1);
        assert_eq!(words_needed(64 * 8, 8), 1);
        assert_eq!(words_needed(64 * 8 + 1, 8), 2);
    }

    #[test]
    fn config_is_checked() {
        let s = storage(LEN, 16);
        assert_eq!(
            ShadowBitmap::new(BASE, LEN, 12, 4096, &s).unwrap_err(),
            ShadowConfigError::BadGranule(12)
        );
        assert_eq!(
            ShadowBitmap::new(BASE, LEN, 16, 0, &s).unwrap_err(),
            ShadowConfigError::BadMaxAlign(0)
        );
        assert!(matches!(
            ShadowBitmap::new(BASE + 8, LEN, 16, 4096, &s),
            Err(ShadowConfigError::BaseNotGranuleAligned { .. })
        ));
        assert!(matches!(
            ShadowBitmap::new(BASE, LEN, 8, 4096, &s),
            Err(ShadowConfigError::StorageTooSmall { .. })
        ));
    }

    #[test]
    fn accepts_a_correct_history() {
        let s = storage(LEN, 16);
        let sh = ShadowBitmap::new(BASE, LEN, 16, 4096, &s).unwrap();
        sh.on_alloc_addr(BASE, 4096).unwrap();
        sh.on_alloc_addr(BASE + 4096, 16).unwrap();
        sh.on_alloc_addr(BASE + 4096 + 32, 32).unwrap();
        sh.on_alloc_addr(BASE + 8192, 8192).unwrap();
        assert_eq!(sh.live_bytes(), 4096 + 16 + 32 + 8192);
        sh.on_free_addr(BASE, 4096).unwrap();
        sh.on_free_addr(BASE + 4096 + 32, 32).unwrap();
        sh.on_alloc_addr(BASE, 2048).unwrap();
        sh.on_free_addr(BASE + 4096, 16).unwrap();
        sh.on_free_addr(BASE, 2048).unwrap();
        assert_eq!(sh.first_live(), Some(BASE + 8192));
        sh.on_free_addr(BASE + 8192, 8192).unwrap();
        assert!(sh.is_empty());
    }

    #[test]
    fn catches_overlap_and_rolls_back() {
        let s = storage(LEN, 16);
        let sh = ShadowBitmap::new(BASE, LEN, 16, 4096, &s).unwrap();
        sh.on_alloc_addr(BASE + 2048 + 512, 64).unwrap();
        // Spans several words; the clash is in the middle.
        let e = sh.on_alloc_addr(BASE + 2048, 2048).unwrap_err();
        assert_eq!(
            e,
            ShadowError::Overlap {
                addr: BASE + 2048,
                size: 2048,
                conflict: BASE + 2048 + 512
            }
        );
        assert!(std::format!("{e}").contains("0x100a00"));
        // Only the first block is live, and its bits survived the rollback.
        assert_eq!(sh.live_bytes(), 64);
        assert!(sh.is_live(BASE + 2048 + 512, 64));
        sh.on_free_addr(BASE + 2048 + 512, 64).unwrap();
        assert!(sh.is_empty());
    }

    #[test]
    fn catches_misalignment_null_range_and_zero() {
        let s = storage(LEN, 8);
        let sh = ShadowBitmap::new(BASE, LEN, 8, 256, &s).unwrap();
        assert_eq!(
            sh.on_alloc_addr(BASE + 32, 64),
            Err(ShadowError::Misaligned {
                addr: BASE + 32,
                size: 64,
                align: 64
            })
        );
        // 48 B needs 64 B alignment; 4096 B is capped at max_align = 256.
        assert!(sh.on_alloc_addr(BASE + 16, 48).is_err());
        sh.on_alloc_addr(BASE + 256, 4096).unwrap();
        assert_eq!(
            sh.on_alloc_aligned(BASE + 8192 + 8, 8, 4096),
            Err(ShadowError::Misaligned {
                addr: BASE + 8192 + 8,
                size: 8,
                align: 4096
            })
        );
        assert_eq!(
            sh.on_alloc(core::ptr::null(), 8),
            Err(ShadowError::Null { size: 8 })
        );
        assert_eq!(
            sh.on_alloc_addr(BASE, 0),
            Err(ShadowError::ZeroSize { addr: BASE })
        );
        assert!(matches!(
            sh.on_alloc_addr(BASE + LEN - 8, 16),
            Err(ShadowError::OutOfRange { .. })
        ));
        assert!(matches!(
            sh.on_alloc_addr(BASE - 64, 8),
            Err(ShadowError::OutOfRange { .. })
        ));
        assert!(matches!(
            sh.on_alloc_addr(usize::MAX - 7, 8),
            Err(ShadowError::OutOfRange { .. })
        ));
        assert_eq!(sh.live_bytes(), 4096);
    }

    #[test]
    fn catches_double_free_wrong_size_and_never_allocated() {
        let s = storage(LEN, 16);
        let sh = ShadowBitmap::new(BASE, LEN, 16, 4096, &s).unwrap();
        sh.on_alloc_addr(BASE, 1024).unwrap();
        sh.on_alloc_addr(BASE + 1024, 1024).unwrap();
        sh.on_free_addr(BASE + 1024, 1024).unwrap();
        let e = sh.on_free_addr(BASE + 1024, 1024).unwrap_err();
        assert_eq!(
            e,
            ShadowError::NotLive {
                addr: BASE + 1024,
                size: 1024,
                missing: BASE + 1024
            }
        );
        // Wrong size: the first half is live and must stay live after the rejection.
        let e = sh.on_free_addr(BASE, 2048).unwrap_err();
        assert_eq!(
            e,
            ShadowError::NotLive {
                addr: BASE,
                size: 2048,
                missing: BASE + 1024
            }
        );
        assert!(sh.is_live(BASE, 1024));
        assert_eq!(sh.live_bytes(), 1024);
        assert!(matches!(
            sh.on_free_addr(BASE + 8192, 64),
            Err(ShadowError::NotLive { .. })
        ));
        assert!(std::format!("{e}").contains("double free"));
        sh.on_free_addr(BASE, 1024).unwrap();
        assert!(sh.is_empty());
    }

    /// Four threads own interleaved granules, so every word is shared by all
    /// of them; lost updates would show as false reports or a non-empty end.
    #[test]
    fn concurrent_disjoint_blocks_in_shared_words() {
        const G: usize = 16;
        let s = storage(LEN, G);
        let sh = ShadowBitmap::new(BASE, LEN, G, 4096, &s).unwrap();
        thread::scope(|scope| {
            for t in 0..4 {
                let sh = &sh;
                scope.spawn(move || {
                    for round in 0..if cfg!(miri) { 4 } else { 200 } {
                        let mine = (t..if cfg!(miri) { 256 } else { LEN / G })
                            .step_by(4)
                            .map(|g| BASE + g * G);
                        for a in mine.clone() {
                            sh.on_alloc_addr(a, G).unwrap();
                        }
                        if round % 2 == 0 {
                            assert!(sh.on_alloc_addr(BASE + t * G, G).is_err());
                        }
                        for a in mine {
                            sh.on_free_addr(a, G).unwrap();
                        }
                    }
                });
            }
        });
        assert!(sh.is_empty());
    }

    /// Threads race to allocate the same multi-word block: exactly one wins
    /// each round and the losers' rollbacks leave the winner's bits alone.
    #[test]
    fn concurrent_clash_has_one_winner() {
        let s = storage(LEN, 8);
        let sh = ShadowBitmap::new(BASE, LEN, 8, 4096, &s).unwrap();
        const ROUNDS: usize = if cfg!(miri) { 5 } else { 500 };
        let barrier = Barrier::new(4);
        let (wins, frees) = thread::scope(|scope| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        let (mut wins, mut frees) = (0, 0);
                        for _ in 0..ROUNDS {
                            barrier.wait();
                            wins += usize::from(sh.on_alloc_addr(BASE + 4096, 2048).is_ok());
                            barrier.wait();
                            assert_eq!(sh.live_bytes(), 2048);
                            barrier.wait();
                            // Every thread frees; exactly one free is accepted.
                            frees += usize::from(sh.on_free_addr(BASE + 4096, 2048).is_ok());
                            barrier.wait();
                            assert!(sh.is_empty());
                        }
                        (wins, frees)
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap())
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
        });
        assert_eq!((wins, frees), (ROUNDS, ROUNDS));
    }
}
