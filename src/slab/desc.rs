//! The slab descriptor: owner, return list, abandoned-stack link, progress
//! word, free bitmap and the owner-only state (see `crate::slab` for the
//! ownership protocol and the free marks).

use super::{capacity, class_size, object_index, tag_word, Owner, FREE_TAG};
use crate::mutant::{self, Mutant};
use crate::region::{PageDesc, Region};
use crate::sync::{raw, AtomicU32, AtomicU64, Ordering, UnsafeCell};
use crate::PAGE_SIZE;

/// Owner word of a slab nobody owns.
pub(crate) const ABANDONED: u32 = Owner::Abandoned.token();

/// The return-list word: head object index + 1 (0 = empty) in bits 0..16,
/// number of objects in bits 16..32, and the `ABANDONED_FULL` flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Returns(pub(crate) u64);

impl Returns {
    const FULL: u64 = 1 << 32;

    pub(crate) fn head(self) -> u32 {
        (self.0 & 0xffff) as u32
    }
    pub(crate) fn count(self) -> u32 {
        ((self.0 >> 16) & 0xffff) as u32
    }
    pub(crate) fn abandoned_full(self) -> bool {
        self.0 & Self::FULL != 0
    }
    /// Push of object `i` (whose link already holds the old head); clears the
    /// flag, which makes the pusher responsible for publishing the slab.
    pub(crate) fn push(self, i: u32) -> Self {
        Self(((self.count() as u64 + 1) << 16) | (i as u64 + 1))
    }
}

/// Owner-only slab state.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Local {
    /// Head of the local free list (object index + 1, 0 = empty).
    free: u32,
    /// Objects never carved yet start at `bump`.
    bump: u32,
    /// Objects handed out (to users or magazines) and not yet back.
    pub(crate) handed: u32,
    /// Size class.
    pub(crate) class: u32,
}

impl Local {
    /// Objects carved so far.
    pub(crate) fn bump(self) -> u32 {
        self.bump
    }
}

/// A slab descriptor: type-stable metadata, one per four pages.
pub(crate) struct SlabDesc {
    pub(crate) owner: AtomicU32,
    returns: AtomicU64,
    /// Link of the abandoned stack (see `crate::stack`).
    pub(crate) link: AtomicU32,
    /// Owner-written, readable by anyone: objects carved (`bump`) in bits
    /// 0..32, takes from the slab so far in bits 32..64 (see `Progress`).
    progress: AtomicU64,
    /// The free bitmap of a slab of at most 64 objects (see the module doc).
    /// 32-bit words, like the bitmap in a slab's tail, so every atomic laid
    /// over slab memory (tags, bitmap words) has one size: memory that a
    /// released slab had as a bitmap may hold tags after reuse, and atomics
    /// of different sizes over the same bytes are not allowed to race.
    free_bits: [raw::AtomicU32; 2],
    local: UnsafeCell<Local>,
}

/// A snapshot of a slab's `progress` word.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress(u64);

impl Progress {
    /// Objects carved so far: indices at or above this were never handed out.
    pub(crate) fn carved(self) -> u32 {
        self.0 as u32
    }
}

/// Pages of a slab of class `c` opened once `bump` objects were carved: up
/// to the page the last carved object starts on, at least the first.
pub(crate) fn opened(c: u32, bump: u32) -> usize {
    match bump.checked_sub(1) {
        Some(last) => last as usize * class_size(c as usize) / PAGE_SIZE + 1,
        None => 1,
    }
}

/// Writes the free tag of every object that starts on page `k` of the slab
/// at `base` (class `c`); nothing in `checked` builds, which mark with bits.
///
/// # Safety
/// The slab is the caller's and none of those objects was handed out.
unsafe fn tag_page(base: usize, c: u32, k: usize) {
    if cfg!(feature = "checked") {
        return;
    }
    let size = class_size(c as usize);
    let first = (k * PAGE_SIZE).div_ceil(size) as u32;
    let end = ((k + 1) * PAGE_SIZE).div_ceil(size) as u32;
    for i in first..end.min(capacity(c as usize)) {
        let p = obj(base, c, i) as usize;
        // SAFETY: object `i` of the caller's slab, not handed out.
        unsafe { tag_word(p) }.store(FREE_TAG, Ordering::Relaxed);
    }
}

/// Address of object `i` of a slab at `base` in class `c`.
#[inline]
fn obj(base: usize, c: u32, i: u32) -> *mut u32 {
    (base + i as usize * class_size(c as usize)) as *mut u32
}

impl SlabDesc {
    /// A descriptor of pages that are not a slab: all fields zero (owner 0
    /// is no token), so a zero-filled region already holds valid ones.
    pub(crate) fn new() -> Self {
        Self {
            owner: AtomicU32::new(0),
            returns: AtomicU64::new(0),
            link: AtomicU32::new(0),
            progress: AtomicU64::new(0),
            free_bits: [raw::AtomicU32::new(0), raw::AtomicU32::new(0)],
            local: UnsafeCell::new(Local::default()),
        }
    }

    /// The bitmap word that holds object `i`'s bit, and the bit.
    ///
    /// # Safety
    /// The slab lives at `base` with class `c`, and `i < capacity(c)`.
    #[inline(always)]
    unsafe fn bit(&self, base: usize, c: usize, i: u32) -> (&raw::AtomicU32, u32) {
        let (word, mask) = (i as usize / 32, 1u32 << (i % 32));
        if capacity(c) <= 64 {
            return (&self.free_bits[word], mask);
        }
        let tail = base + capacity(c) as usize * class_size(c);
        // SAFETY: the bitmap lies in the slab's tail, 8-aligned, past every
        // object (`capacity`), and the slab is live (caller).
        (
            unsafe { &*((tail + word * 4) as *const raw::AtomicU32) },
            mask,
        )
    }

    /// Index of object `p` in the slab at `base` of class `c`.
    #[inline(always)]
    pub(crate) fn index_of(base: usize, c: usize, p: usize) -> u32 {
        object_index(c, p - base) as u32
    }

    /// Sets object `p`'s free bit; false if it was set already (the object
    /// is free: a double free, which then changed nothing).
    ///
    /// # Safety
    /// `p` is an object of this live slab at `base`, class `c`.
    #[inline]
    pub(crate) unsafe fn mark_free(&self, base: usize, c: usize, p: usize) -> bool {
        // SAFETY: forwarded.
        let (w, m) = unsafe { self.bit(base, c, Self::index_of(base, c, p)) };
        if mutant::on(Mutant::FreeBitTwoStep) {
            let old = w.load(Ordering::Acquire);
            w.store(old | m, Ordering::Release);
            return old & m == 0;
        }
        // Release: a checker that sees the bit also sees the object's tag and
        // the owner's `progress`; Acquire: orders us after the clearing.
        w.fetch_or(m, Ordering::AcqRel) & m == 0
    }

    /// Clears object `p`'s free bit (it leaves the slab layer, or in
    /// `checked` builds is handed to a user).
    ///
    /// # Safety
    /// As [`Self::mark_free`], and the caller holds the object.
    #[inline]
    pub(crate) unsafe fn mark_taken(&self, base: usize, c: usize, p: usize) {
        // SAFETY: forwarded.
        let (w, m) = unsafe { self.bit(base, c, Self::index_of(base, c, p)) };
        // Release: publishes the `progress` store made before it (see
        // `take`); pairs with the Acquire in `is_free`.
        let old = w.fetch_and(!m, Ordering::AcqRel);
        debug_assert!(old & m != 0, "taken object {p:#x} was not free");
    }

    /// Whether object `p`'s free bit is set (one Acquire load).
    ///
    /// # Safety
    /// As [`Self::mark_free`].
    #[inline]
    pub(crate) unsafe fn is_free(&self, base: usize, c: usize, p: usize) -> bool {
        // SAFETY: forwarded.
        let (w, m) = unsafe { self.bit(base, c, Self::index_of(base, c, p)) };
        // Acquire: pairs with the Release of `mark_taken`, so a checker that
        // sees the bit cleared also sees the `progress` store before it.
        w.load(Ordering::Acquire) & m != 0
    }

    /// The `progress` word (Acquire: pairs with `mark_taken`'s Release).
    pub(crate) fn progress(&self) -> Progress {
        Progress(self.progress.load(Ordering::Acquire))
    }

    /// The owner-only state (a copy).
    ///
    /// # Safety
    /// The caller owns the slab (or the heap is quiet).
    pub(crate) unsafe fn local(&self) -> Local {
        // SAFETY: exclusive by the caller's ownership.
        self.local.with(|l| unsafe { *l })
    }

    /// Starts a fresh slab of class `c` at `base` owned by `token`: every
    /// object free (bit set and, in the default build, tagged).
    ///
    /// # Safety
    /// The slab's memory at `base` was just obtained from the buddy tree by
    /// the caller.
    pub(crate) unsafe fn init(&self, base: usize, c: usize, token: u32) {
        // SAFETY: nobody else can reach a slab that was just allocated.
        self.local.with_mut(|l| unsafe {
            *l = Local {
                class: c as u32,
                ..Local::default()
            }
        });
        let cap = capacity(c);
        for w in 0..cap.div_ceil(32) {
            let n = (cap - w * 32).min(32);
            let bits = if n == 32 { u32::MAX } else { (1 << n) - 1 };
            // SAFETY: `w * 32 < cap`; the slab is ours (caller).
            let (word, _) = unsafe { self.bit(base, c, w * 32) };
            // Relaxed: published with the slab's descriptors (Release).
            word.store(bits, Ordering::Relaxed);
        }
        // SAFETY: page 0 of our fresh slab (opened from the start).
        unsafe { tag_page(base, c as u32, 0) };
        // Relaxed: published with the slab's descriptors (Release) or by the
        // abandoned stack's push.
        self.progress.store(0, Ordering::Relaxed);
        self.returns.store(0, Ordering::Relaxed);
        self.owner.store(token, Ordering::Relaxed);
    }

    /// Hands out up to `out.len()` objects of the slab at `base` in `reg`
    /// (local free list first, then uncarved objects), and first opens the
    /// pages the carved ones start on: tags their objects, then marks the
    /// page a slab page (Release: a free that reads the mark also reads the
    /// tags). Until then a page's descriptor says "unopened", which no free
    /// fast path takes, so a free of an object there (never handed out, and
    /// without a tag) is decided by the general path. Returns how many.
    ///
    /// Why lazily: a fresh slab that tagged all its objects at once made
    /// every class a program touches cost 16 KiB resident.
    ///
    /// # Safety
    /// The caller owns the slab, which lives at `base` in `reg`.
    pub(crate) unsafe fn take(&self, reg: &Region, base: usize, out: &mut [usize]) -> usize {
        // SAFETY: forwarded.
        let (n, opened) = unsafe { self.take_tagged(base, out) };
        // SAFETY: the caller owns the slab.
        let c = unsafe { self.local() }.class as usize;
        let page = reg.page_of(base);
        for k in opened {
            // Release: after the tags `take_tagged` wrote.
            reg.desc(page + k)
                .store(PageDesc::slab(c).0, Ordering::Release);
        }
        n
    }

    /// [`Self::take`] up to the page descriptors: carves, and tags the
    /// objects of the pages the carving reached for the first time, which
    /// it returns (the slab alone, also for models that have no region).
    ///
    /// # Safety
    /// The caller owns the slab, which lives at `base`.
    pub(crate) unsafe fn take_tagged(
        &self,
        base: usize,
        out: &mut [usize],
    ) -> (usize, core::ops::Range<usize>) {
        // SAFETY: the caller owns the slab.
        let before = unsafe { self.local() };
        // SAFETY: as above.
        let n = unsafe { self.carve(base, out) };
        // SAFETY: as above.
        let after = unsafe { self.local() }.bump;
        let c = before.class;
        let pages = opened(c, before.bump)..opened(c, after);
        for k in pages.clone() {
            // SAFETY: page `k` of our slab; its objects were never handed out.
            unsafe { tag_page(base, c, k) };
        }
        (n, pages)
    }

    /// Hands out up to `out.len()` objects: local free list first, then
    /// uncarved objects (see [`Self::take`]).
    ///
    /// # Safety
    /// The caller owns the slab, which lives at `base`.
    unsafe fn carve(&self, base: usize, out: &mut [usize]) -> usize {
        // SAFETY: exclusive by ownership; objects of a slab we own are ours.
        self.local.with_mut(|l| unsafe {
            let l = &mut *l;
            let cap = capacity(l.class as usize);
            let mut n = 0;
            while n < out.len() && l.free != 0 {
                let p = obj(base, l.class, l.free - 1);
                out[n] = p as usize;
                l.free = p.read();
                n += 1;
            }
            while n < out.len() && l.bump < cap {
                out[n] = obj(base, l.class, l.bump) as usize;
                l.bump += 1;
                n += 1;
            }
            l.handed += n as u32;
            if n > 0 {
                // One more take, and the new bump (single writer: the owner).
                let takes = (self.progress.load(Ordering::Relaxed) >> 32) + 1;
                // Relaxed: published by the Release of the `mark_taken`s that
                // follow before any taken object can be missed by a checker.
                self.progress
                    .store((takes << 32) | l.bump as u64, Ordering::Relaxed);
            }
            n
        })
    }

    /// Moves the return list to the local free list; returns how many
    /// objects came back. Panics if the list is longer than the slab (a
    /// cycle or a corrupted link), instead of looping forever.
    ///
    /// # Safety
    /// The caller owns the slab, which lives at `base`.
    pub(crate) unsafe fn collect(&self, base: usize) -> u32 {
        // Acquire: pairs with each pusher's Release CAS, so the links they
        // wrote into the objects are visible. Keeps no flag: only an owner
        // collects, and an owned slab never carries ABANDONED_FULL.
        let r = Returns(self.returns.swap(0, Ordering::Acquire));
        debug_assert!(!r.abandoned_full());
        if r.head() == 0 {
            return 0;
        }
        // SAFETY: exclusive by ownership; returned objects are free and ours.
        self.local.with_mut(|l| unsafe {
            let l = &mut *l;
            let mut tail = r.head();
            let mut n = 1;
            loop {
                let next = obj(base, l.class, tail - 1).read();
                if next == 0 {
                    break;
                }
                tail = next;
                n += 1;
                assert!(
                    n <= capacity(l.class as usize),
                    "magbuddy: slab at {base:#x}: return list is cyclic"
                );
            }
            obj(base, l.class, tail - 1).write(l.free);
            l.free = r.head();
            l.handed -= n;
            n
        })
    }

    /// Frees an object of a slab the caller owns.
    ///
    /// # Safety
    /// The caller owns the slab at `base`; `p` is one of its handed-out objects.
    pub(crate) unsafe fn free_local(&self, base: usize, p: usize) {
        // SAFETY: exclusive by ownership.
        self.local.with_mut(|l| unsafe {
            let l = &mut *l;
            let i = Self::index_of(base, l.class as usize, p);
            obj(base, l.class, i).write(l.free);
            l.free = i + 1;
            l.handed -= 1;
        })
    }

    /// Frees object `p` of class `c` into a slab someone else (or nobody)
    /// owns. Returns true when this push found the slab abandoned-full: the
    /// caller must then push the slab onto the abandoned stack.
    ///
    /// # Safety
    /// `p` is a handed-out object of the slab at `base`, class `c`, and
    /// nobody uses it after this call.
    pub(crate) unsafe fn free_remote(&self, base: usize, c: u32, p: usize) -> bool {
        let i = Self::index_of(base, c as usize, p);
        // Relaxed: a guess validated by the CAS.
        let mut seen = Returns(self.returns.load(Ordering::Relaxed));
        loop {
            // SAFETY: the object is ours until the CAS publishes it.
            unsafe { obj(base, c, i).write(seen.head()) };
            // Release: publishes the link written above (and the user's last
            // writes to the object); pairs with the Acquire swap in `collect`.
            let order = if mutant::on(Mutant::ReturnPushRelaxed) {
                Ordering::Relaxed
            } else {
                Ordering::Release
            };
            match self.returns.compare_exchange_weak(
                seen.0,
                seen.push(i).0,
                order,
                Ordering::Relaxed,
            ) {
                Ok(_) => return seen.abandoned_full(),
                Err(now) => seen = Returns(now),
            }
        }
    }

    /// Gives up ownership of a slab with nothing left to hand out: succeeds
    /// (and the slab becomes abandoned-full, owned by nobody, on no stack)
    /// only if its return list is empty; otherwise the caller still owns it
    /// and should `collect`.
    ///
    /// # Safety
    /// The caller owns the slab and holds `token`.
    pub(crate) unsafe fn try_abandon_full(&self, token: u32) -> bool {
        // Release: the owner-only state is published before anyone can adopt.
        self.owner.store(ABANDONED, Ordering::Release);
        // Release: orders the owner store before a pusher that clears the
        // flag publishes the slab; AcqRel on success for symmetry with pushes.
        if self
            .returns
            .compare_exchange(0, Returns::FULL, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            return true;
        }
        // Returns arrived: the slab is on no stack, so nobody can have
        // adopted it; take ownership back.
        // Relaxed: we are still the only one who may touch it.
        self.owner.store(token, Ordering::Relaxed);
        false
    }

    /// Adopts an abandoned slab just popped from an abandoned stack.
    pub(crate) fn adopt(&self, token: u32) -> bool {
        // AcqRel: Acquire pairs with the abandoning owner's Release, so its
        // owner-only state is ours to read.
        self.owner
            .compare_exchange(ABANDONED, token, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Gives up ownership of a slab that still has objects to hand out; the
    /// caller pushes it onto the abandoned stack.
    pub(crate) fn abandon(&self) {
        // Release: publishes the owner-only state to the next adopter.
        self.owner.store(ABANDONED, Ordering::Release);
    }

    /// Whether the slab still has objects to hand out without collecting.
    ///
    /// # Safety
    /// The caller owns the slab.
    pub(crate) unsafe fn has_local(&self) -> bool {
        // SAFETY: exclusive by ownership.
        let l = unsafe { self.local() };
        l.free != 0 || l.bump < capacity(l.class as usize)
    }

    /// Checks the slab at `base` at a quiet point: every object is exactly
    /// once never carved, on the local list, on the return list, or handed
    /// out (lists walked with a bound, so cycles are reported).
    ///
    /// # Safety
    /// No operation is in flight on the heap.
    pub(crate) unsafe fn check(
        &self,
        base: usize,
        c: usize,
        cpus: usize,
    ) -> Result<(), &'static str> {
        // SAFETY: quiet point (caller).
        let l = unsafe { self.local() };
        let cap = capacity(c);
        // Relaxed: quiet point.
        let owner = self.owner.load(Ordering::Relaxed);
        let known = match Owner::from_token(owner) {
            Some(Owner::Abandoned) => true,
            Some(Owner::Cpu(c)) => c.index() < cpus,
            Some(Owner::Shared) | None => false,
        };
        if !known {
            return Err("slab owned by an unknown token at a quiet point");
        }
        if l.class as usize != c || l.bump > cap || l.handed > cap {
            return Err("slab descriptor disagrees with its pages");
        }
        let free_bit = |i: u32| {
            // SAFETY: quiet point; object `i < cap` of this slab.
            unsafe { self.is_free(base, c, obj(base, l.class, i) as usize) }
        };
        let walk = |mut head: u32| -> Result<u32, &'static str> {
            let mut n = 0;
            while head != 0 {
                n += 1;
                if n > cap || head > l.bump {
                    return Err("slab free list is cyclic or names an uncarved object");
                }
                let p = obj(base, l.class, head - 1) as usize;
                if !free_bit(head - 1) {
                    return Err("object on a slab free list is not marked free");
                }
                // SAFETY: a free object of this slab holds its tag.
                let tag = unsafe { tag_word(p) }.load(Ordering::Relaxed);
                if !cfg!(feature = "checked") && tag != FREE_TAG {
                    return Err("object on a slab free list carries no free tag");
                }
                // SAFETY: a free object of this slab holds its link.
                head = unsafe { obj(base, l.class, head - 1).read() };
            }
            Ok(n)
        };
        let r = self.returns_snapshot();
        let returned = walk(r.head())?;
        if returned != r.count() {
            return Err("slab return list length differs from its count");
        }
        let local = walk(l.free)?;
        if local + l.handed + (cap - l.bump) != cap || returned > l.handed {
            return Err("slab objects are lost or counted twice");
        }
        if (l.bump..cap).any(|i| !free_bit(i)) {
            return Err("uncarved object is not marked free");
        }
        if self.progress().carved() != l.bump {
            return Err("published carve count differs from the bump index");
        }
        let marked = (0..cap).filter(|&i| free_bit(i)).count() as u32;
        let slab_free = local + returned + (cap - l.bump);
        // `checked` builds also mark the objects that sit in magazines.
        if marked < slab_free || (!cfg!(feature = "checked") && marked != slab_free) {
            return Err("slab free bitmap disagrees with its free lists");
        }
        Ok(())
    }

    /// Return-list snapshot (reports and validate).
    pub(crate) fn returns_snapshot(&self) -> Returns {
        // Relaxed: a snapshot.
        Returns(self.returns.load(Ordering::Relaxed))
    }

    /// Whether the `SlabReleaseWithReturns` mutant is on: `SlabPool::give_up`
    /// then releases a slab as soon as its return list is non-empty.
    pub(crate) fn release_ignores_returns() -> bool {
        mutant::on(Mutant::SlabReleaseWithReturns)
    }
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;
    use crate::slab::SLAB_BYTES;
    use std::vec;

    #[test]
    fn take_collect_free_keep_the_count() {
        let mem = vec![0u64; SLAB_BYTES / 8];
        let base = mem.as_ptr() as usize;
        let d = SlabDesc::new();
        // SAFETY: the slab memory is the test's own buffer, owned by `d`.
        unsafe {
            d.init(base, 6, 1); // 512 B, 32 objects
            let mut out = [0usize; 40];
            assert_eq!(d.take_tagged(base, &mut out).0, 32);
            assert!(!d.has_local());
            assert!(!d.free_remote(base, 6, out[3]));
            assert!(!d.free_remote(base, 6, out[7]));
            d.free_local(base, out[0]);
            assert_eq!(d.local().handed, 31, "remote frees count once collected");
            assert_eq!(d.collect(base), 2);
            assert_eq!(d.local().handed, 29);
            let mut again = [0usize; 4];
            assert_eq!(d.take_tagged(base, &mut again).0, 3);
            let mut got = again[..3].to_vec();
            got.sort();
            assert_eq!(got, [out[0], out[3], out[7]].to_vec());
        }
    }

    #[test]
    fn abandon_full_then_first_remote_free_publishes() {
        let mem = vec![0u64; SLAB_BYTES / 8];
        let base = mem.as_ptr() as usize;
        let d = SlabDesc::new();
        // SAFETY: as above.
        unsafe {
            d.init(base, 8, 1);
            let mut out = [0usize; 8];
            assert_eq!(d.take_tagged(base, &mut out).0, 8);
            assert!(d.try_abandon_full(1));
            assert_eq!(d.owner.load(Ordering::Relaxed), ABANDONED);
            assert!(d.free_remote(base, 8, out[0]), "first free publishes");
            assert!(!d.free_remote(base, 8, out[1]), "second does not");
            assert!(d.adopt(2));
            assert_eq!(d.collect(base), 2);
            // Abandoning with returns pending keeps ownership.
            assert!(!d.free_remote(base, 8, out[2]));
            assert!(!d.try_abandon_full(2));
            assert_eq!(d.owner.load(Ordering::Relaxed), 2);
        }
    }
}
