//! Canary fills: a client writes a known pattern into each block it owns
//! and checks it just before freeing, so any write by someone else (an
//! overlapping block, a stray free-list link, a use after free) shows up.
//!
//! # Pattern
//!
//! Byte `i` of a block at `addr` is byte `i % 8` (little-endian) of
//! `mix(key + i / 8)`, where `key = mix(addr ^ mix(seed))` and `mix` is the
//! splitmix64 finalizer. It depends on the block's *start* address, not only
//! on the byte's address: if the allocator hands out two overlapping blocks,
//! each fills the shared bytes with its own pattern and the first one to be
//! checked fails, even with one seed. A fresh seed per run (or per round)
//! also catches stale data from an earlier round that happens to sit at the
//! same address. All-zero or all-one memory never matches by accident except
//! with probability about `2^-8` per byte.
//!
//! # Full and edge checks
//!
//! [`fill`]/[`check`] cover every byte. For large blocks [`fill_edges`]/
//! [`check_edges`] cover only the first and last `edge` bytes, which is where
//! neighbours, headers and free-list links land. Both use the same pattern
//! at the same offsets, so an edge check of a fully filled block is fine; a
//! full check of an edge-filled block reads uninitialized bytes (don't).
//!
//! # Concurrency
//!
//! These are plain, non-atomic accesses: the caller must own the block.
//! When an allocator bug makes two threads own overlapping memory, their
//! fills race; that is the bug being hunted and in practice shows up as a
//! mismatch, but under miri it is reported as a data race instead. Run the
//! [`ShadowBitmap`](crate::ShadowBitmap) first: it reports the overlap
//! before any byte is written.

use core::fmt;
use core::ptr;

/// A byte that does not hold its canary value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CanaryError {
    /// Start of the block.
    pub block: usize,
    /// Length of the block.
    pub len: usize,
    /// Offset of the first bad byte.
    pub offset: usize,
    /// The canary value.
    pub expected: u8,
    /// What was there.
    pub found: u8,
}

impl fmt::Display for CanaryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "canary of block {:#x}+{} B smashed at offset {} ({:#x}): expected {:#04x}, found {:#04x}",
            self.block,
            self.len,
            self.offset,
            self.block.wrapping_add(self.offset),
            self.expected,
            self.found
        )
    }
}

/// splitmix64's finalizer: a cheap bijection that spreads every input bit.
const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Per-block key of the pattern.
const fn key(addr: usize, seed: u64) -> u64 {
    mix(addr as u64 ^ mix(seed))
}

/// The eight pattern bytes at offsets `8 * chunk .. 8 * chunk + 8`.
const fn chunk_bytes(key: u64, chunk: usize) -> [u8; 8] {
    mix(key.wrapping_add(chunk as u64)).to_le_bytes()
}

/// The canary byte at `offset` of a block at `addr` filled with `seed`.
pub const fn expected_byte(addr: usize, seed: u64, offset: usize) -> u8 {
    chunk_bytes(key(addr, seed), offset / 8)[offset % 8]
}

/// Fills all `len` bytes at `ptr` with the canary of `(ptr, seed)`.
///
/// # Safety
///
/// - `ptr` is valid for writes of `len` bytes.
/// - No other thread accesses those bytes during the call.
pub unsafe fn fill(ptr: *mut u8, len: usize, seed: u64) {
    // SAFETY: the caller's guarantees cover `0..len`.
    unsafe { fill_span(ptr, len, seed, 0, len) }
}

/// Checks all `len` bytes at `ptr` against the canary of `(ptr, seed)` and
/// reports the first bad byte.
///
/// # Safety
///
/// - `ptr` is valid for reads of `len` bytes, and they are initialized
///   (e.g. by [`fill`]).
/// - No other thread writes those bytes during the call.
pub unsafe fn check(ptr: *const u8, len: usize, seed: u64) -> Result<(), CanaryError> {
    // SAFETY: the caller's guarantees cover `0..len`.
    unsafe { check_span(ptr, len, seed, 0, len) }
}

/// Fills only the first and last `edge` bytes (all of them if `len <= 2 *
/// edge`) with the same values [`fill`] would write there.
///
/// # Safety
///
/// - `ptr` is valid for writes of `len` bytes.
/// - No other thread accesses the edge bytes during the call.
pub unsafe fn fill_edges(ptr: *mut u8, len: usize, seed: u64, edge: usize) {
    let (head, tail) = edges(len, edge);
    // SAFETY: both spans lie inside `0..len`, covered by the caller.
    unsafe {
        fill_span(ptr, len, seed, 0, head);
        fill_span(ptr, len, seed, tail, len);
    }
}

/// Checks only the bytes [`fill_edges`] with the same `edge` wrote.
///
/// # Safety
///
/// - `ptr` is valid for reads of `len` bytes, and the first and last
///   `edge` of them are initialized (e.g. by [`fill_edges`] or [`fill`]).
/// - No other thread writes those bytes during the call.
pub unsafe fn check_edges(
    ptr: *const u8,
    len: usize,
    seed: u64,
    edge: usize,
) -> Result<(), CanaryError> {
    let (head, tail) = edges(len, edge);
    // SAFETY: both spans lie inside `0..len`, covered by the caller.
    unsafe {
        check_span(ptr, len, seed, 0, head)?;
        check_span(ptr, len, seed, tail, len)
    }
}

/// End of the head span and start of the tail span; they meet (covering
/// the whole block) when the block is small.
fn edges(len: usize, edge: usize) -> (usize, usize) {
    if len <= edge.saturating_mul(2) {
        (len, len)
    } else {
        (edge, len - edge)
    }
}

/// Writes the canary of a `len`-byte block at `ptr` over offsets `from..to`.
///
/// # Safety
///
/// `from <= to <= len`; `ptr` is valid for unsynchronized writes of `from..to`.
unsafe fn fill_span(ptr: *mut u8, len: usize, seed: u64, from: usize, to: usize) {
    debug_assert!(from <= to && to <= len);
    let k = key(ptr.addr(), seed);
    let mut i = from;
    while i < to {
        let bytes = chunk_bytes(k, i / 8);
        let (lo, n) = (i % 8, (8 - i % 8).min(to - i));
        // SAFETY: `i .. i + n` lies in `from..to`, which the caller made
        // writable; `bytes[lo..lo + n]` is in bounds as `lo + n <= 8`.
        unsafe { ptr::copy_nonoverlapping(bytes.as_ptr().add(lo), ptr.add(i), n) };
        i += n;
    }
}

/// Compares offsets `from..to` of a `len`-byte block at `ptr` with its canary.
///
/// # Safety
///
/// `from <= to <= len`; `ptr` is valid for reads of `from..to`, which are
/// initialized and not written concurrently.
unsafe fn check_span(
    ptr: *const u8,
    len: usize,
    seed: u64,
    from: usize,
    to: usize,
) -> Result<(), CanaryError> {
    debug_assert!(from <= to && to <= len);
    let k = key(ptr.addr(), seed);
    let mut i = from;
    while i < to {
        let want = chunk_bytes(k, i / 8);
        let (lo, n) = (i % 8, (8 - i % 8).min(to - i));
        let mut got = [0u8; 8];
        // SAFETY: `i .. i + n` lies in `from..to`, readable and initialized
        // per the caller; the destination range is in bounds of `got`.
        unsafe { ptr::copy_nonoverlapping(ptr.add(i), got.as_mut_ptr().add(lo), n) };
        if got[lo..lo + n] != want[lo..lo + n] {
            let j = (lo..lo + n).find(|&j| got[j] != want[j]).unwrap_or(lo);
            return Err(CanaryError {
                block: ptr.addr(),
                len,
                offset: i - lo + j,
                expected: want[j],
                found: got[j],
            });
        }
        i += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;

    #[test]
    fn fill_then_check_passes_for_all_lengths_and_offsets() {
        let mut buf = [0u8; 200];
        for start in 0..9 {
            for len in 0..if cfg!(miri) { 40 } else { 150 } {
                let p = buf[start..].as_mut_ptr();
                // SAFETY: `start + len <= 200`; `buf` is ours.
                unsafe {
                    fill(p, len, 7);
                    check(p, len, 7).unwrap();
                    check_edges(p, len, 7, 16).unwrap();
                }
                if len > 0 {
                    assert_eq!(buf[start + len - 1], expected_byte(p.addr(), 7, len - 1));
                }
            }
        }
    }

    #[test]
    fn catches_a_smashed_byte() {
        let mut buf = [0u8; 256];
        let p = buf.as_mut_ptr();
        // SAFETY: `buf` holds 256 bytes and is ours.
        unsafe { fill(p, 256, 1) };
        let expected = buf[77];
        buf[77] ^= 0x40;
        let p = buf.as_ptr();
        // SAFETY: as above; all bytes were initialized by `fill`.
        let e = unsafe { check(p, 256, 1) }.unwrap_err();
        assert_eq!(
            e,
            CanaryError {
                block: p.addr(),
                len: 256,
                offset: 77,
                expected,
                found: expected ^ 0x40
            }
        );
        let msg = std::format!("{e}");
        assert!(
            msg.contains("offset 77") && msg.contains(&std::format!("{:#x}", p.addr())),
            "{msg}"
        );
        // The wrong seed is caught too.
        // SAFETY: as above.
        assert!(unsafe { check(p, 256, 2) }.is_err());
    }

    /// Two overlapping blocks with the same seed: the second fill overwrites
    /// the shared bytes with its own pattern and the first block's check fails.
    #[test]
    fn tells_overlapping_blocks_apart() {
        let mut buf = [0u8; 128];
        let a = buf.as_mut_ptr();
        // SAFETY: `a + 32 .. a + 96` is inside `buf`.
        let b = unsafe { a.add(32) };
        // SAFETY: both blocks lie inside `buf`, which this thread owns.
        unsafe {
            fill(a, 64, 3);
            fill(b, 64, 3);
            check(b, 64, 3).unwrap();
            let e = check(a, 64, 3).unwrap_err();
            assert_eq!(e.offset, 32);
        }
    }

    #[test]
    fn edge_variants_cover_only_edges() {
        let mut buf = [0u8; 4096];
        // SAFETY: `buf` holds 4096 bytes; edges are initialized by `fill_edges`.
        unsafe { fill_edges(buf.as_mut_ptr(), 4096, 9, 64) };
        // The middle is not checked.
        buf[2000] = 0xaa;
        // SAFETY: as above.
        unsafe { check_edges(buf.as_ptr(), 4096, 9, 64) }.unwrap();
        // The tail is.
        buf[4093] ^= 1;
        // SAFETY: as above.
        let e = unsafe { check_edges(buf.as_ptr(), 4096, 9, 64) }.unwrap_err();
        assert_eq!(e.offset, 4093);
        // So is the head.
        buf[4093] ^= 1;
        buf[5] ^= 1;
        // SAFETY: as above.
        let e = unsafe { check_edges(buf.as_ptr(), 4096, 9, 64) }.unwrap_err();
        assert_eq!(e.offset, 5);
    }
}
