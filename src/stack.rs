//! A lock-free stack of indices into type-stable storage (Treiber, with a
//! version tag), used for the magazine depot and the abandoned-slab lists.
//!
//! The head is one `AtomicU64`: `index + 1` in the low half (0 = empty) and a
//! 32-bit tag in the high half, bumped by every successful push and pop, so a
//! pop whose head was popped and pushed back in between fails its CAS (ABA).
//! Links live in the nodes' own `AtomicU32`s, which are never returned to the
//! buddy allocator: a stale pop reads metadata, never user memory, and the
//! read is atomic, so it is no data race either. A tag wraps after 2^32
//! operations on one stack while a pop is stalled between its load and CAS.

use crate::mutant::{self, Mutant};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

const EMPTY: u32 = 0;

#[inline]
const fn pack(index_plus_one: u32, tag: u32) -> u64 {
    ((tag as u64) << 32) | index_plus_one as u64
}

#[inline]
const fn unpack(word: u64) -> (u32, u32) {
    (word as u32, (word >> 32) as u32)
}

/// The tag after an update. The `DepotPopWithoutTag` mutant keeps it
/// constant: a plain Treiber stack, open to ABA.
#[inline]
fn next_tag(tag: u32) -> u32 {
    if mutant::on(Mutant::DepotPopWithoutTag) {
        tag
    } else {
        tag.wrapping_add(1)
    }
}

/// The head of one stack.
pub(crate) struct IndexStack {
    head: AtomicU64,
}

impl IndexStack {
    pub(crate) fn new() -> Self {
        Self {
            head: AtomicU64::new(pack(EMPTY, 0)),
        }
    }

    /// A stack holding `0..n` (0 on top), with the links written into
    /// `link(i)`; used at init, before the stack is shared.
    pub(crate) fn filled<'a>(n: u32, link: impl Fn(u32) -> &'a AtomicU32) -> Self {
        for i in 0..n {
            // Relaxed: init-time, published with the heap itself.
            link(i).store(if i + 1 < n { i + 2 } else { EMPTY }, Ordering::Relaxed);
        }
        Self {
            head: AtomicU64::new(pack(if n > 0 { 1 } else { EMPTY }, 0)),
        }
    }

    /// Pushes node `i`, whose link is `link`.
    #[inline]
    pub(crate) fn push(&self, i: u32, link: &AtomicU32) {
        // Relaxed: the CAS below validates the guess.
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            let (top, tag) = unpack(head);
            // Relaxed: published by the Release CAS below.
            link.store(top, Ordering::Relaxed);
            // Release: the node's link and contents (a full magazine, an
            // abandoned slab's owner state) are visible to whoever pops it.
            match self.head.compare_exchange_weak(
                head,
                pack(i + 1, next_tag(tag)),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(seen) => head = seen,
            }
        }
    }

    /// Pops the top node. `link(i)` gives node `i`'s link.
    #[inline]
    pub(crate) fn pop<'a>(&self, link: impl Fn(u32) -> &'a AtomicU32) -> Option<u32> {
        // Acquire: pairs with the push that published the top node, so its
        // link is read as written by that push (or later).
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            let (top, tag) = unpack(head);
            if top == EMPTY {
                return None;
            }
            // Relaxed: ordered by the Acquire above; if the node was popped
            // and pushed again meanwhile, the tag makes the CAS fail.
            let next = link(top - 1).load(Ordering::Relaxed);
            let tag = if mutant::on(Mutant::DepotPopWithoutTag) {
                tag
            } else {
                tag.wrapping_add(1)
            };
            // AcqRel: Acquire for the node's contents as above; Release
            // orders our read of the link before the next owner's push.
            match self.head.compare_exchange_weak(
                head,
                pack(next, tag),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(top - 1),
                Err(seen) => head = seen,
            }
        }
    }
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn lifo_with_links_in_nodes() {
        let links: Vec<AtomicU32> = (0..4).map(|_| AtomicU32::new(0)).collect();
        let s = IndexStack::filled(3, |i| &links[i as usize]);
        assert_eq!(s.pop(|i| &links[i as usize]), Some(0));
        s.push(3, &links[3]);
        assert_eq!(s.pop(|i| &links[i as usize]), Some(3));
        assert_eq!(s.pop(|i| &links[i as usize]), Some(1));
        assert_eq!(s.pop(|i| &links[i as usize]), Some(2));
        assert_eq!(s.pop(|i| &links[i as usize]), None);
    }

    #[test]
    fn threads_never_lose_or_duplicate_nodes() {
        const N: u32 = 64;
        let links: Vec<AtomicU32> = (0..N).map(|_| AtomicU32::new(0)).collect();
        let s = IndexStack::filled(N, |i| &links[i as usize]);
        std::thread::scope(|sc| {
            for _ in 0..4 {
                sc.spawn(|| {
                    for _ in 0..20_000 {
                        if let Some(i) = s.pop(|i| &links[i as usize]) {
                            s.push(i, &links[i as usize]);
                        }
                    }
                });
            }
        });
        let mut seen = std::collections::BTreeSet::new();
        while let Some(i) = s.pop(|i| &links[i as usize]) {
            assert!(seen.insert(i), "node {i} twice");
        }
        assert_eq!(seen.len(), N as usize);
    }
}
