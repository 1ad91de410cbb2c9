//! Linearizability of recorded heap histories (feature `alloc`).
//!
//! A client records every heap call it makes as an [`Op`]: the call, what
//! it returned, and two stamps from one [`LinClock`], taken just before the
//! call and just after it returned. [`check`] then decides whether the
//! concurrent history has a *linearization*: a total order that keeps every
//! thread's own order, puts an operation after every operation that
//! returned before it was invoked, and in which each operation, applied one
//! at a time to the sequential specification [`HeapModel`], is legal and
//! returns what was recorded.
//!
//! # The sequential specification
//!
//! The abstract state is the set of live blocks (address ranges), the CPU
//! slots held by handles and the regions added so far.
//!
//! * `alloc(size)` returning `a`: a block of [`block_bytes`]`(size)` bytes,
//!   aligned to its size, inside usable pages of a region already added,
//!   disjoint from every live block; an object (at most [`MAX_SMALL`]
//!   bytes) lies in a [`SLAB`]-byte slab that no live block of another class
//!   and no page block shares (objects of one class fill whole slabs). The
//!   block becomes live. The address is *any* address that satisfies this:
//!   the specification is nondeterministic, so a step is checked, not
//!   computed.
//! * `alloc(size)` returning `None`: legal only if memory that can be hidden
//!   from the caller (see below) covers every *candidate* that could serve
//!   the request: a free aligned block of the size (pages all usable, no
//!   live block in it, not inside a slab that holds a live object) or, for
//!   an object, also a free slot of a slab of its class (capacity minus the
//!   live objects of that slab, [`slab_capacity`]).
//! * `free(p)` / `try_free(p)` returning `Ok`: a live block starts at `p`;
//!   it stops being live. Returning `Err(e)`: no live block starts at `p`
//!   and `e` names `p`; nothing changes.
//! * `handle()` claims a free CPU slot (`None` only when all are held),
//!   `handle_for(c)` claims slot `c` (`None` only when it is held); dropping
//!   a handle frees its slot; `reclaim()` changes nothing; `add_region`
//!   makes the region's pages usable.
//!
//! **Out-of-memory allowance.** The heap's contract (`Heap::cpu_cache_cap`)
//! lets each CPU that holds a handle keep up to `cpu_cache_cap` bytes in its
//! caches, out of reach of other callers; a handle's own allocation flushes
//! its magazines but keeps its current slabs (one per small class). So a
//! `None` may hide `cpu_cache_cap` bytes per *other* slot held at its
//! linearization point, plus [`OWN_SLABS`] slabs if the caller is a handle.
//! Every hidden candidate needs at least [`GRANULE`] hidden bytes (the
//! smallest object, in a magazine or a current slab, poisons one aligned
//! block or one slot), so a `None` is refused only when `GRANULE ×
//! candidates` exceeds the allowance. This over-approximates what can be
//! hidden (it is sound: it never refuses a `None` the contract allows);
//! with caps of 144 KiB and more it leaves a `None` unconstrained whenever
//! another handle is held on a small heap, and checks it exactly (no
//! candidate at all) when none is, which is the shared path after handles
//! were released and every call on a heap without handles.
//!
//! # The search
//!
//! A Wing–Gong search with Lowe's memoization: depth first over the
//! operations that may come next (each thread's next one, if every
//! operation that returned before it was invoked is placed and none placed
//! was invoked after it returned), remembering every `(placed prefix per
//! thread, abstract state)` pair already explored, so each is expanded at
//! most once. Both are small here (a few threads of a dozen operations, a
//! few live blocks), so a history is decided in time polynomial in its
//! length even when it is not linearizable, where an unmemoized search
//! (such as `stateright`'s `LinearizabilityTester`) must try every
//! interleaving before it can say no.

extern crate alloc;

use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

/// Bytes per page: the smallest buddy block.
pub const PAGE: usize = 4096;
/// Bytes per slab: objects of one class fill such aligned blocks.
pub const SLAB: usize = 4 * PAGE;
/// Largest request served by a slab object.
pub const MAX_SMALL: usize = 2048;
/// Smallest object: the least memory that can hide a candidate.
pub const GRANULE: usize = 8;
/// Small size classes (8 B to 2 KiB) of the power-of-two API (`alloc`):
/// a handle keeps at most one current slab of each.
pub const SMALL_CLASSES: usize = 9;
/// Slabs a handle's own allocation may find held by its own cache (its
/// current slabs, which its out-of-memory path does not give up). The heap
/// has fitted classes too (`alloc_fit`), but the histories checked here
/// come only from `alloc`, so a handle owns current slabs of these nine
/// classes at most; other CPUs are bounded by `cpu_cache_cap`, which the
/// heap reports and which counts every class.
pub const OWN_SLABS: usize = SMALL_CLASSES;

/// Bytes of the block that serves a request of `size` bytes (`size > 0`):
/// a power-of-two object of at least [`GRANULE`] bytes up to [`MAX_SMALL`],
/// else a power-of-two number of pages.
pub fn block_bytes(size: usize) -> usize {
    if size <= MAX_SMALL {
        size.max(GRANULE).next_power_of_two()
    } else {
        size.div_ceil(PAGE).next_power_of_two() * PAGE
    }
}

/// Objects a slab of `bytes`-byte objects holds: all that fit when at most
/// 64 do (the free bitmap then fits the descriptor), else all but those
/// whose space at the slab's tail holds a bitmap of one bit per object.
/// A lower bound for slab layouts without the tail (more slots only make
/// more candidates, so a smaller count never refuses a legal `None`).
pub fn slab_capacity(bytes: usize) -> usize {
    let n = SLAB / bytes;
    if n <= 64 {
        n
    } else {
        n - (n / 8).div_ceil(bytes)
    }
}

/// How a call reached the heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Path {
    /// The handle-less shared path.
    Shared,
    /// The handle of this CPU slot.
    Handle(u8),
}

/// A heap call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// `alloc(size)`.
    Alloc {
        /// Requested bytes.
        size: usize,
        /// Through which path.
        path: Path,
    },
    /// `try_free(addr)`.
    Free {
        /// The pointer passed.
        addr: usize,
        /// Through which path.
        path: Path,
    },
    /// `handle()` (`cpu: None`) or `handle_for(cpu)`.
    Claim {
        /// The slot asked for, if any.
        cpu: Option<u8>,
    },
    /// Dropping the handle of slot `cpu`.
    Release {
        /// The slot.
        cpu: u8,
    },
    /// `reclaim()`.
    Reclaim,
    /// `add_region` of the model's region `region` (index into
    /// [`HeapModel::regions`], 1 or more).
    AddRegion {
        /// The region.
        region: u8,
    },
}

/// What a call returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ret {
    /// `alloc` returned a block at this address.
    Block(usize),
    /// `alloc` returned `None`.
    OutOfMemory,
    /// `try_free` returned `Ok`.
    Freed,
    /// `try_free` returned `Err(e)`; `named` is `e.ptr() == addr`.
    Refused {
        /// The error names the pointer passed.
        named: bool,
    },
    /// A claim returned the handle of this slot.
    Claimed(u8),
    /// A claim returned `None`.
    NoSlot,
    /// A release, `reclaim` or `add_region` returned (`add_region`: `Ok`).
    Done,
    /// `add_region` returned `Err`.
    NotAdded,
}

/// One recorded call: `invoke` and `ret_at` are stamps of one [`LinClock`]
/// taken just before the call and just after it returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op {
    /// The calling thread (any small index).
    pub thread: usize,
    /// The call.
    pub call: Call,
    /// Its result.
    pub ret: Ret,
    /// Stamp before the call.
    pub invoke: u64,
    /// Stamp after the call returned.
    pub ret_at: u64,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = |p: Path| match p {
            Path::Shared => String::from("shared"),
            Path::Handle(c) => format!("cpu{c}"),
        };
        match self.call {
            Call::Alloc { size, path: p } => write!(f, "{} alloc({size})", path(p))?,
            Call::Free { addr, path: p } => write!(f, "{} free({addr:#x})", path(p))?,
            Call::Claim { cpu: None } => write!(f, "handle()")?,
            Call::Claim { cpu: Some(c) } => write!(f, "handle_for({c})")?,
            Call::Release { cpu } => write!(f, "drop(cpu{cpu})")?,
            Call::Reclaim => write!(f, "reclaim()")?,
            Call::AddRegion { region } => write!(f, "add_region(#{region})")?,
        }
        match self.ret {
            Ret::Block(a) => write!(f, " -> {a:#x}")?,
            Ret::OutOfMemory => write!(f, " -> None")?,
            Ret::Freed => write!(f, " -> Ok")?,
            Ret::Refused { named: true } => write!(f, " -> Err")?,
            Ret::Refused { named: false } => write!(f, " -> Err naming another pointer")?,
            Ret::Claimed(c) => write!(f, " -> cpu{c}")?,
            Ret::NoSlot => write!(f, " -> None")?,
            Ret::Done => {}
            Ret::NotAdded => write!(f, " -> Err")?,
        }
        write!(f, "  [{}, {}]", self.invoke, self.ret_at)
    }
}

/// Stamps for [`Op::invoke`] and [`Op::ret_at`]. `AcqRel`: a stamp that
/// reads a later value than another one is ordered after it by
/// happens-before, so "returned before it was invoked" in stamp order means
/// the first call's effects happened before the second call (with real
/// threads too; under shuttle the stamps are exact and are not scheduling
/// points).
#[derive(Debug, Default)]
pub struct LinClock {
    next: AtomicU64,
}

impl LinClock {
    /// A clock at 0.
    pub const fn new() -> Self {
        Self {
            next: AtomicU64::new(0),
        }
    }

    /// The next stamp.
    pub fn stamp(&self) -> u64 {
        self.next.fetch_add(1, Ordering::AcqRel)
    }
}

/// One thread's recorder: stamps each call around `f` and keeps the ops.
#[derive(Debug)]
pub struct LinRecorder<'c> {
    clock: &'c LinClock,
    thread: usize,
    ops: Vec<Op>,
}

impl<'c> LinRecorder<'c> {
    /// A recorder for `thread`.
    pub fn new(clock: &'c LinClock, thread: usize) -> Self {
        Self {
            clock,
            thread,
            ops: Vec::new(),
        }
    }

    /// Runs `f` (the call) between two stamps and records its result.
    pub fn record(&mut self, call: Call, f: impl FnOnce() -> Ret) -> Ret {
        let invoke = self.clock.stamp();
        let ret = f();
        let ret_at = self.clock.stamp();
        self.ops.push(Op {
            thread: self.thread,
            call,
            ret,
            invoke,
            ret_at,
        });
        ret
    }

    /// The ops recorded so far, in call order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// The recorded ops, in call order.
    pub fn into_ops(self) -> Vec<Op> {
        self.ops
    }
}

/// The specification's parameters: what the heap can hand out.
#[derive(Clone, Debug)]
pub struct HeapModel {
    /// Per region, the start addresses of its usable pages, sorted: region
    /// 0 is there from the start, the others once [`Call::AddRegion`]
    /// names them.
    pub regions: Vec<Vec<usize>>,
    /// CPU slots.
    pub cpus: usize,
    /// `Heap::cpu_cache_cap()`.
    pub cpu_cache_cap: usize,
    /// Memory that operations in flight hold for a moment, allowed to a
    /// concurrent `None` (see [`Transient`]); `None` for the strict
    /// specification.
    pub transient: Option<Transient>,
    /// Whether a `None` is judged (the no-false-OOM contract). Off for
    /// histories outside the contract: double frees racing allocations.
    pub judge_nones: bool,
}

/// What an operation in flight may hold for a moment, in [`SLAB`]-sized
/// aligned ranges, hiding every candidate inside them from a concurrent
/// allocation (the lenient specification; the strict one allows none):
///
/// * `reclaim()`: the slab its sweep has adopted (one at a time) and the
///   rounds of the depot magazine it is sending home (one range each);
/// * an allocation: the `reclaim` its out-of-memory path runs; for an
///   object also the slab it claims to take one from (the shared path) or
///   refills from; for a run of areas the areas it claimed before a later
///   one was taken;
/// * the free of a run of areas: the areas it has not released yet (it
///   releases them one by one, and the first may be reused before the last
///   is free);
/// * a free that returns `Ok` while another thread's free of the same
///   pointer returns `Err` (a double free: bad input): its whole block. It claims the block
///   first (the object's mark, the block's descriptor), which the racing
///   free's error reveals, and gives the memory back after (the object to
///   its slab, which cannot go home before; the pages to the tree). Only a
///   racing free of the pointer can see the claim before the memory is
///   back, so without one the free linearizes at its end and holds nothing.
///
/// Allocation is not linearizable without this allowance: a `None` can be
/// returned while such a hold hides free memory the whole time the caller
/// looks (see the strict suites of `verify/tests/shuttle_lin.rs`).
#[derive(Clone, Copy, Debug)]
pub struct Transient {
    /// Most rounds in one magazine (`Heap::magazine_capacity`, largest).
    pub rounds: usize,
    /// Bytes per area (a run claims whole areas).
    pub area: usize,
}

impl Transient {
    /// Ranges `op` may hold while in flight; `freed`: for a free, the bytes
    /// of the block its pointer was last allocated as; `racing`: a free
    /// that returned `Ok` while another thread's free of its pointer was
    /// refused ([`races_free`]).
    pub fn ranges(&self, op: &Op, freed: Option<usize>, racing: bool) -> usize {
        let reclaim = 1 + self.rounds;
        let run = |bytes: usize| bytes.saturating_sub(self.area).div_ceil(SLAB);
        let whole = |bytes: usize| bytes.div_ceil(SLAB);
        match op.call {
            Call::Reclaim => reclaim,
            Call::Alloc { size, .. } if size <= MAX_SMALL => reclaim + 1,
            Call::Alloc { size, .. } => reclaim + run(block_bytes(size)),
            Call::Free { .. } if racing => freed.map_or(0, whole),
            Call::Free { .. } => freed.map_or(0, run),
            _ => 0,
        }
    }
}

/// The abstract state: live blocks `(start, bytes)` sorted by start, held
/// CPU slots, added regions (bit per region).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct State {
    /// Live blocks, sorted.
    pub live: Vec<(usize, usize)>,
    /// Held CPU slots.
    pub held: u64,
    /// Regions present.
    pub regions: u64,
}

/// Why the specification refuses an operation in a state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The block is not aligned to its size.
    Misaligned,
    /// The block (or its slab) is not inside usable pages of an added region.
    OutsideHeap,
    /// The block overlaps this live block.
    Overlaps(usize, usize),
    /// The object shares its slab with this live block of another class or
    /// a page block.
    SharesSlab(usize, usize),
    /// `None` although candidates are left after every allowance.
    FalseOom {
        /// Candidates that could serve the request.
        candidates: usize,
        /// Ranges operations in flight may hold ([`Transient`]).
        held: usize,
        /// Candidates left outside the `held` ranges with the most.
        left: usize,
        /// Bytes the contract lets other CPUs (and the caller's slabs) hide.
        allowance: usize,
    },
    /// `Ok` from a free although no live block starts there.
    FreedNotLive,
    /// `Err` from a free of a live block's start.
    RefusedLive,
    /// The error names another pointer.
    WrongPointer,
    /// A claim returned a held or nonexistent slot, or `None` while the
    /// requested (or some) slot was free.
    BadClaim,
    /// A release of a slot that is not held.
    BadRelease,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Misaligned => write!(f, "block not aligned to its size"),
            Self::OutsideHeap => write!(f, "block outside the usable pages of added regions"),
            Self::Overlaps(a, n) => write!(f, "overlaps the live block {a:#x}+{n}"),
            Self::SharesSlab(a, n) => write!(
                f,
                "shares its slab with the live block {a:#x}+{n} of another class"
            ),
            Self::FalseOom {
                candidates,
                held,
                left,
                allowance,
            } => write!(
                f,
                "false out-of-memory: {candidates} free candidate block(s) or slot(s); \
                 {left} left outside the {held} range(s) operations in flight may hold, \
                 more than {allowance} hidden bytes can cover"
            ),
            Self::FreedNotLive => write!(f, "free returned Ok but no live block starts there"),
            Self::RefusedLive => write!(f, "free refused the start of a live block"),
            Self::WrongPointer => write!(f, "the error names another pointer"),
            Self::BadClaim => write!(f, "claim result does not match the held slots"),
            Self::BadRelease => write!(f, "release of a slot not held"),
        }
    }
}

impl HeapModel {
    /// The state before any call: region 0, nothing live, no slot held.
    pub fn initial(&self) -> State {
        State {
            regions: 1,
            ..State::default()
        }
    }

    fn usable(&self, s: &State, start: usize, len: usize) -> bool {
        (start..start + len).step_by(PAGE).all(|page| {
            self.regions
                .iter()
                .enumerate()
                .any(|(r, pages)| s.regions & (1 << r) != 0 && pages.binary_search(&page).is_ok())
        })
    }

    /// The slab of an object block, or `None` for a page block.
    fn slab_of(start: usize, bytes: usize) -> Option<usize> {
        (bytes <= MAX_SMALL).then_some(start & !(SLAB - 1))
    }

    /// Whether a block `(a, n)` may coexist with live block `(b, m)` in the
    /// slab discipline: objects of different classes, or an object and a
    /// page block, never share a slab.
    fn slab_clash(a: usize, n: usize, b: usize, m: usize) -> bool {
        match (Self::slab_of(a, n), Self::slab_of(b, m)) {
            (Some(x), Some(y)) => x == y && n != m,
            (Some(x), None) => x < b + m && b < x + SLAB,
            (None, Some(y)) => y < a + n && a < y + SLAB,
            (None, None) => false,
        }
    }

    /// Candidates for a request of `bytes` bytes in state `s`, grouped by
    /// what hides them together: per [`SLAB`]-aligned range for objects
    /// (free slots of a slab of the class, or the whole range free) and
    /// page blocks below a slab; one group per block for larger blocks
    /// (disjoint, so one hidden range hides at most one of them).
    pub fn candidates(&self, s: &State, bytes: usize) -> Vec<usize> {
        let block = bytes.max(if bytes <= MAX_SMALL { SLAB } else { PAGE });
        let mut groups: Vec<(usize, usize)> = Vec::new();
        let mut add = |key: usize, n: usize| match groups.iter_mut().find(|g| g.0 == key) {
            Some(g) => g.1 += n,
            None => groups.push((key, n)),
        };
        // Free aligned blocks: for an object, a whole free slab.
        for (r, pages) in self.regions.iter().enumerate() {
            if s.regions & (1 << r) == 0 {
                continue;
            }
            for &p in pages.iter().filter(|&&p| p % block == 0) {
                let free = self.usable(s, p, block)
                    && s.live.iter().all(|&(b, m)| {
                        let (lo, hi) = match Self::slab_of(b, m) {
                            Some(x) => (x, x + SLAB),
                            None => (b, b + m),
                        };
                        hi <= p || p + block <= lo
                    });
                if free {
                    add(p & !(SLAB - 1), 1);
                }
            }
        }
        if bytes <= MAX_SMALL {
            // Free slots of the slabs of this class.
            let mut slabs: Vec<usize> = s
                .live
                .iter()
                .filter(|&&(_, m)| m == bytes)
                .map(|&(b, _)| b & !(SLAB - 1))
                .collect();
            slabs.dedup(); // sorted by start, so each slab's objects are adjacent
            for x in slabs {
                let used = s
                    .live
                    .iter()
                    .filter(|&&(b, m)| m == bytes && b & !(SLAB - 1) == x)
                    .count();
                add(x, slab_capacity(bytes).saturating_sub(used));
            }
        }
        groups.into_iter().map(|g| g.1).filter(|&n| n > 0).collect()
    }

    /// Why a `None` for `size` bytes on `path` is refused in state `s` while
    /// operations in flight may hold `held` ranges; `None` if it is allowed.
    pub fn false_oom(&self, s: &State, size: usize, path: Path, held: usize) -> Option<Refusal> {
        if size == 0 || !self.judge_nones {
            return None;
        }
        let mut groups = self.candidates(s, block_bytes(size));
        let candidates = groups.iter().sum();
        groups.sort_unstable_by(|a, b| b.cmp(a));
        let left: usize = groups.iter().skip(held).sum();
        let allowance = self.allowance(s, path);
        (left * GRANULE > allowance).then_some(Refusal::FalseOom {
            candidates,
            held,
            left,
            allowance,
        })
    }

    /// Bytes a `None` on `path` may find hidden in state `s`.
    pub fn allowance(&self, s: &State, path: Path) -> usize {
        let own = match path {
            Path::Shared => 0,
            Path::Handle(c) => 1u64 << c,
        };
        let others = (s.held & !own).count_ones() as usize;
        let mine = if own != 0 { OWN_SLABS * SLAB } else { 0 };
        others * self.cpu_cache_cap + mine
    }

    /// Applies `op` to `s`: the next state, or why the specification
    /// refuses it. `held`: ranges that operations in flight during `op` may
    /// hold ([`Transient`]; 0 under the strict specification).
    pub fn step(&self, s: &State, op: &Op, held: usize) -> Result<State, Refusal> {
        let mut t = s.clone();
        match (op.call, op.ret) {
            (Call::Alloc { size, .. }, Ret::Block(a)) => {
                let n = block_bytes(size);
                if size == 0 || a % n != 0 {
                    return Err(Refusal::Misaligned);
                }
                let span = match Self::slab_of(a, n) {
                    Some(x) => (x, SLAB),
                    None => (a, n),
                };
                if !self.usable(s, span.0, span.1) {
                    return Err(Refusal::OutsideHeap);
                }
                for &(b, m) in &s.live {
                    if b < a + n && a < b + m {
                        return Err(Refusal::Overlaps(b, m));
                    }
                    if Self::slab_clash(a, n, b, m) {
                        return Err(Refusal::SharesSlab(b, m));
                    }
                }
                let i = t.live.partition_point(|&(b, _)| b < a);
                t.live.insert(i, (a, n));
            }
            (Call::Alloc { size, path }, Ret::OutOfMemory) => {
                if let Some(e) = self.false_oom(s, size, path, held) {
                    return Err(e);
                }
            }
            (Call::Free { addr, .. }, Ret::Freed) => {
                match t.live.iter().position(|&(b, _)| b == addr) {
                    Some(i) => {
                        t.live.remove(i);
                    }
                    None => return Err(Refusal::FreedNotLive),
                }
            }
            (Call::Free { addr, .. }, Ret::Refused { named }) => {
                if !named {
                    return Err(Refusal::WrongPointer);
                }
                if s.live.iter().any(|&(b, _)| b == addr) {
                    return Err(Refusal::RefusedLive);
                }
            }
            (Call::Claim { cpu }, Ret::Claimed(c)) => {
                let ok = (c as usize) < self.cpus
                    && s.held & (1 << c) == 0
                    && cpu.is_none_or(|want| want == c);
                if !ok {
                    return Err(Refusal::BadClaim);
                }
                t.held |= 1 << c;
            }
            (Call::Claim { cpu }, Ret::NoSlot) => {
                let all = (1u64 << self.cpus) - 1;
                let ok = match cpu {
                    None => s.held & all == all,
                    Some(c) => (c as usize) >= self.cpus || s.held & (1 << c) != 0,
                };
                if !ok {
                    return Err(Refusal::BadClaim);
                }
            }
            (Call::Release { cpu }, Ret::Done) => {
                if s.held & (1 << cpu) == 0 {
                    return Err(Refusal::BadRelease);
                }
                t.held &= !(1 << cpu);
            }
            (Call::Reclaim, Ret::Done) | (Call::AddRegion { .. }, Ret::NotAdded) => {}
            (Call::AddRegion { region }, Ret::Done) => t.regions |= 1 << region,
            (call, ret) => panic!("malformed op: {call:?} returned {ret:?}"),
        }
        Ok(t)
    }
}

/// A linearization found by [`check`].
#[derive(Clone, Debug)]
pub struct Linearization {
    /// Indices into the checked ops, in linearization order.
    pub order: Vec<usize>,
    /// The state after the last operation.
    pub end: State,
    /// `None` results placed where the allowance was 0: checked exactly
    /// (no candidate may exist).
    pub exact_nones: usize,
    /// `(prefix, state)` pairs the search expanded.
    pub explored: usize,
}

/// A history that is not linearizable (or too large to decide).
#[derive(Clone, Debug)]
pub struct NotLinearizable {
    /// The report: the history per thread, the longest linearizable prefix
    /// found, its state, and why each thread's next operation cannot follow.
    pub report: String,
    /// Operations in the longest linearizable prefix.
    pub placed: usize,
    /// Operations in the history.
    pub total: usize,
}

impl fmt::Display for NotLinearizable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.report)
    }
}

/// Expanded `(prefix, state)` pairs after which [`check`] gives up.
pub const EXPLORE_LIMIT: usize = 2_000_000;

struct Search<'a> {
    model: &'a HeapModel,
    ops: &'a [Op],
    /// Per thread, indices of its ops in call order.
    threads: Vec<Vec<usize>>,
    /// Per op and thread: how many of that thread's ops returned before the
    /// op was invoked (they must precede it) and how many were invoked
    /// before it returned (only those may precede it).
    bounds: Vec<Vec<(usize, usize)>>,
    /// Per op: ranges the other threads' operations in flight may hold.
    held: Vec<usize>,
    seen: BTreeSet<(Vec<usize>, State)>,
    order: Vec<usize>,
    deepest: (usize, Vec<usize>, State),
    exact_nones: usize,
    over_limit: bool,
}

impl Search<'_> {
    fn dfs(&mut self, at: &mut Vec<usize>, s: &State) -> bool {
        let placed: usize = at.iter().sum();
        if placed == self.ops.len() {
            return true;
        }
        if placed > self.deepest.0 || self.deepest.1.is_empty() {
            self.deepest = (placed, at.clone(), s.clone());
        }
        if !self.seen.insert((at.clone(), s.clone())) {
            return false;
        }
        if self.seen.len() > EXPLORE_LIMIT {
            self.over_limit = true;
            return false;
        }
        for t in 0..self.threads.len() {
            let Some(&i) = self.threads[t].get(at[t]) else {
                continue;
            };
            let timely = self.bounds[i]
                .iter()
                .enumerate()
                .all(|(u, &(lo, hi))| u == t || (at[u] >= lo && at[u] <= hi));
            if !timely {
                continue;
            }
            let Ok(next) = self.model.step(s, &self.ops[i], self.held[i]) else {
                continue;
            };
            at[t] += 1;
            self.order.push(i);
            if self.dfs(at, &next) {
                if let (Call::Alloc { path, .. }, Ret::OutOfMemory) =
                    (self.ops[i].call, self.ops[i].ret)
                {
                    let exact = self.model.judge_nones
                        && self.model.allowance(s, path) == 0
                        && self.held[i] == 0;
                    self.exact_nones += exact as usize;
                }
                return true;
            }
            self.order.pop();
            at[t] -= 1;
            if self.over_limit {
                return false;
            }
        }
        false
    }

    /// What other threads had in flight during op `i` (a free of the same
    /// pointer named with its path), the size of the block a free's pointer
    /// was last allocated as, and whether a handle was released before it
    /// began: the circumstances of a refusal.
    fn context(&self, i: usize) -> String {
        let o = &self.ops[i];
        let path = |p: Path| match p {
            Path::Shared => String::from("shared"),
            Path::Handle(c) => format!("cpu{c}"),
        };
        let mut r = String::new();
        if let Some(bytes) = freed_bytes(self.ops, o) {
            r += &format!(" [a {bytes}-byte block]");
        }
        let mut during: Vec<String> = Vec::new();
        for p in self.ops.iter().filter(|p| p.thread != o.thread) {
            if p.invoke < o.ret_at && o.invoke < p.ret_at {
                let kind = match (p.call, o.call) {
                    (Call::Free { addr, path: q }, Call::Free { addr: a, .. }) if addr == a => {
                        format!("free of it via {}", path(q))
                    }
                    (Call::Alloc { .. }, _) => String::from("alloc"),
                    (Call::Free { .. }, _) => String::from("free"),
                    (Call::Claim { .. }, _) => String::from("handle claim"),
                    (Call::Release { .. }, _) => String::from("handle release"),
                    (Call::Reclaim, _) => String::from("reclaim"),
                    (Call::AddRegion { .. }, _) => String::from("add_region"),
                };
                if !during.contains(&kind) {
                    during.push(kind);
                }
            }
        }
        if !during.is_empty() {
            during.sort();
            r += &format!(" [in flight: {}]", during.join(", "));
        }
        let released = self
            .ops
            .iter()
            .any(|p| matches!(p.call, Call::Release { .. }) && p.ret_at < o.invoke);
        if released {
            r += " [after a handle release]";
        }
        r
    }

    fn report(&self) -> String {
        let (placed, at, s) = &self.deepest;
        let mut r = String::new();
        if self.over_limit {
            r += &format!("undecided: more than {EXPLORE_LIMIT} states explored\n");
        }
        r += &format!(
            "not linearizable: {} operations, the longest linearizable prefix has {placed}\n",
            self.ops.len()
        );
        r += "history (per thread, [invoke, return] stamps):\n";
        for (t, ids) in self.threads.iter().enumerate() {
            for (k, &i) in ids.iter().enumerate() {
                let mark = if k < at[t] { ' ' } else { '*' };
                r += &format!("  {mark} T{t} #{k}: {}\n", self.ops[i]);
            }
        }
        r += "(* = not in the prefix)\nstate after the prefix: live";
        for &(a, n) in &s.live {
            r += &format!(" {a:#x}+{n}");
        }
        r += &format!(", slots held {:#b}, regions {:#b}\n", s.held, s.regions);
        r += "why no thread's next operation can follow it:\n";
        for (t, ids) in self.threads.iter().enumerate() {
            let Some(&i) = ids.get(at[t]) else { continue };
            let late = self.bounds[i]
                .iter()
                .enumerate()
                .find(|&(u, &(lo, hi))| u != t && (at[u] < lo || at[u] > hi));
            let why = match late {
                Some((u, &(lo, _))) if at[u] < lo => {
                    format!(
                        "must follow T{u} #{}, which returned before it began",
                        lo - 1
                    )
                }
                Some((u, _)) => format!("T{u} #{} in the prefix began after it returned", at[u]),
                None => match self.model.step(s, &self.ops[i], self.held[i]) {
                    Err(e) => format!("{e}{}", self.context(i)),
                    Ok(_) => String::from("legal here, but no linearization follows"),
                },
            };
            r += &format!("  T{t} #{}: {} -- {why}\n", at[t], self.ops[i]);
        }
        r
    }
}

/// For a free, the bytes of the largest block its pointer was allocated as
/// by an allocation that began before the free ended: the free's own block
/// may be an earlier one than the latest (a run freed area by area whose
/// first area an allocation reuses while the free is still in flight), and
/// the larger hold only widens the allowance.
fn freed_bytes(ops: &[Op], free: &Op) -> Option<usize> {
    let Call::Free { addr, .. } = free.call else {
        return None;
    };
    ops.iter()
        .filter(|p| p.ret == Ret::Block(addr) && p.invoke < free.ret_at)
        .filter_map(|p| match p.call {
            Call::Alloc { size, .. } => Some(block_bytes(size)),
            _ => None,
        })
        .max()
}

/// Whether `free` returned `Ok` while another thread's free of the same
/// pointer, which returned `Err`, was in flight: a racing double free
/// whose error reveals the claim ([`Transient`]). Two frees of a pointer
/// that both return `Ok` (the block was reallocated in between) hold
/// nothing: the reallocation shows the memory was back.
pub fn races_free(ops: &[Op], free: &Op) -> bool {
    let Call::Free { addr, .. } = free.call else {
        return false;
    };
    free.ret == Ret::Freed
        && ops.iter().any(|p| {
            p.thread != free.thread
                && matches!(p.call, Call::Free { addr: a, .. } if a == addr)
                && matches!(p.ret, Ret::Refused { .. })
                && p.invoke < free.ret_at
                && free.invoke < p.ret_at
        })
}

/// Decides whether `ops` (any order; each thread's calls must not overlap
/// in stamps) is linearizable with respect to `model`, starting in
/// `model.initial()`.
pub fn check(model: &HeapModel, ops: &[Op]) -> Result<Linearization, NotLinearizable> {
    let nthreads = ops.iter().map(|o| o.thread + 1).max().unwrap_or(0);
    let mut threads: Vec<Vec<usize>> = vec![Vec::new(); nthreads];
    for (i, o) in ops.iter().enumerate() {
        assert!(o.invoke < o.ret_at, "op {o} returned before it was invoked");
        threads[o.thread].push(i);
    }
    for ids in &mut threads {
        ids.sort_by_key(|&i| ops[i].invoke);
        for w in ids.windows(2) {
            assert!(
                ops[w[0]].ret_at < ops[w[1]].invoke,
                "one thread's calls overlap: {} and {}",
                ops[w[0]],
                ops[w[1]]
            );
        }
    }
    let bounds = ops
        .iter()
        .map(|o| {
            threads
                .iter()
                .map(|ids| {
                    let lo = ids.partition_point(|&j| ops[j].ret_at < o.invoke);
                    let hi = ids.partition_point(|&j| ops[j].invoke < o.ret_at);
                    (lo, hi)
                })
                .collect()
        })
        .collect();
    let held = ops
        .iter()
        .map(|o| match (o.ret, model.transient) {
            (Ret::OutOfMemory, Some(t)) => ops
                .iter()
                .filter(|p| p.thread != o.thread && p.invoke < o.ret_at && o.invoke < p.ret_at)
                .map(|p| t.ranges(p, freed_bytes(ops, p), races_free(ops, p)))
                .sum(),
            _ => 0,
        })
        .collect();
    let mut search = Search {
        model,
        ops,
        threads,
        bounds,
        held,
        seen: BTreeSet::new(),
        order: Vec::new(),
        deepest: (0, Vec::new(), model.initial()),
        exact_nones: 0,
        over_limit: false,
    };
    let mut at = vec![0; nthreads];
    let init = model.initial();
    if search.dfs(&mut at, &init) {
        let mut end = init;
        for &i in &search.order {
            end = model
                .step(&end, &ops[i], search.held[i])
                .expect("replay of a linearization");
        }
        return Ok(Linearization {
            order: search.order,
            end,
            exact_nones: search.exact_nones,
            explored: search.seen.len(),
        });
    }
    Err(NotLinearizable {
        report: search.report(),
        placed: search.deepest.0,
        total: ops.len(),
    })
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;

    /// Two areas of four pages at 0x10000.
    fn model() -> HeapModel {
        HeapModel {
            regions: vec![(0..8).map(|i| 0x10000 + i * PAGE).collect()],
            cpus: 2,
            cpu_cache_cap: 1 << 20,
            transient: None,
            judge_nones: true,
        }
    }

    struct H(Vec<Op>);

    impl H {
        fn op(&mut self, thread: usize, call: Call, ret: Ret, invoke: u64, ret_at: u64) {
            self.0.push(Op {
                thread,
                call,
                ret,
                invoke,
                ret_at,
            });
        }
    }

    fn alloc(size: usize) -> Call {
        Call::Alloc {
            size,
            path: Path::Shared,
        }
    }

    fn free(addr: usize) -> Call {
        Call::Free {
            addr,
            path: Path::Shared,
        }
    }

    #[test]
    fn racing_frees_exactly_one_wins() {
        let mut h = H(Vec::new());
        h.op(0, alloc(64), Ret::Block(0x10000), 0, 1);
        h.op(1, free(0x10000), Ret::Freed, 2, 5);
        h.op(2, free(0x10000), Ret::Refused { named: true }, 3, 4);
        check(&model(), &h.0).unwrap();
        h.0[2].ret = Ret::Freed;
        let e = check(&model(), &h.0).unwrap_err();
        assert!(e.report.contains("no live block starts there"), "{e}");
    }

    #[test]
    fn overlapping_windows_allow_reuse_but_not_overlap() {
        let mut h = H(Vec::new());
        h.op(0, alloc(8192), Ret::Block(0x10000), 0, 1);
        // Free and a reallocation of the same block, concurrent: legal.
        h.op(0, free(0x10000), Ret::Freed, 2, 6);
        h.op(1, alloc(4096), Ret::Block(0x11000), 3, 5);
        check(&model(), &h.0).unwrap();
        // The reallocation returned before the free began: an overlap.
        h.0[2].invoke = 0;
        h.0[2].ret_at = 1;
        h.0[0].invoke = 2;
        h.0[0].ret_at = 3;
        h.0[1].invoke = 4;
        let e = check(&model(), &h.0).unwrap_err();
        assert!(e.report.contains("overlaps"), "{e}");
    }

    #[test]
    fn none_needs_no_candidate_unless_a_handle_may_hide_it() {
        let mut h = H(Vec::new());
        h.op(0, alloc(16384), Ret::Block(0x10000), 0, 1);
        h.op(0, alloc(16384), Ret::OutOfMemory, 2, 3);
        let e = check(&model(), &h.0).unwrap_err();
        assert!(e.report.contains("false out-of-memory: 1 "), "{e}");
        // A 64 B object uses one slab; the second slab is still free.
        h.0[0].call = alloc(64);
        h.0[1].call = alloc(64);
        assert!(check(&model(), &h.0).is_err());
        // ... unless another CPU holds a handle (its caches may hide it).
        h.op(1, Call::Claim { cpu: None }, Ret::Claimed(1), 0, 1);
        h.0[1].call = alloc(16384);
        let lin = check(&model(), &h.0).unwrap();
        assert_eq!(lin.exact_nones, 0);
        // A full heap: the None is exact.
        let mut h = H(Vec::new());
        h.op(0, alloc(32768), Ret::Block(0x10000), 0, 1);
        h.op(0, alloc(4096), Ret::OutOfMemory, 2, 3);
        assert_eq!(check(&model(), &h.0).unwrap().exact_nones, 1);
    }

    #[test]
    fn slab_slots_are_candidates() {
        let mut h = H(Vec::new());
        h.op(0, alloc(16384), Ret::Block(0x10000), 0, 1);
        h.op(0, alloc(2048), Ret::Block(0x14000), 2, 3);
        h.op(0, alloc(2048), Ret::OutOfMemory, 4, 5);
        let e = check(&model(), &h.0).unwrap_err();
        assert!(e.report.contains("false out-of-memory: 7 "), "{e}");
        // A 4 KiB page cannot come from a slab that holds an object.
        h.0[2].call = alloc(4096);
        assert_eq!(check(&model(), &h.0).unwrap().exact_nones, 1);
        h.0[2].ret = Ret::Block(0x15000);
        let e = check(&model(), &h.0).unwrap_err();
        assert!(e.report.contains("shares its slab"), "{e}");
    }

    /// Three slabs with a free slot each: a concurrent `reclaim()` (its
    /// sweep's slab and one magazine round) may hide two of them, not three.
    #[test]
    fn transient_holds_hide_a_bounded_number_of_ranges() {
        let mut m = model();
        m.regions = vec![(0..12).map(|i| 0x10000 + i * PAGE).collect()];
        m.transient = Some(Transient {
            rounds: 1,
            area: SLAB,
        });
        let mut h = H(Vec::new());
        let mut stamp = 0;
        for slab in 0..3 {
            for i in 0..8 {
                h.op(
                    0,
                    alloc(2048),
                    Ret::Block(0x10000 + slab * SLAB + i * 2048),
                    stamp,
                    stamp + 1,
                );
                stamp += 2;
            }
            h.op(0, free(0x10000 + slab * SLAB), Ret::Freed, stamp, stamp + 1);
            stamp += 2;
        }
        h.op(0, alloc(2048), Ret::OutOfMemory, stamp, stamp + 3);
        h.op(1, Call::Reclaim, Ret::Done, stamp + 1, stamp + 2);
        let e = check(&m, &h.0).unwrap_err();
        assert!(e.report.contains("1 left outside the 2 range(s)"), "{e}");
        // Two free slots in one slab, one in another: both slabs may be held.
        h.0[17].call = free(0x10000 + SLAB + 2048);
        h.0[26].call = free(0x10000 + SLAB + 4096);
        check(&m, &h.0).unwrap();
        // The strict specification allows no hold.
        m.transient = None;
        assert!(check(&m, &h.0).is_err());
    }

    /// A free that wins a race with another free of its pointer holds its
    /// block while in flight (the loser's error shows it linearized first);
    /// the loser holds nothing, and neither does a free that returned.
    #[test]
    fn a_racing_free_holds_its_block_in_flight() {
        let mut m = model();
        m.transient = Some(Transient {
            rounds: 0,
            area: SLAB,
        });
        let mut h = H(Vec::new());
        h.op(0, alloc(64), Ret::Block(0x10000), 0, 1);
        h.op(1, free(0x10000), Ret::Freed, 2, 9);
        h.op(0, free(0x10000), Ret::Refused { named: true }, 3, 4);
        h.op(0, alloc(32768), Ret::OutOfMemory, 5, 6);
        check(&m, &h.0).unwrap();
        // The strict specification allows no hold.
        m.transient = None;
        assert!(check(&m, &h.0).is_err());
        m.transient = Some(Transient {
            rounds: 0,
            area: SLAB,
        });
        // The winner returned before the None: nothing is held.
        h.0[1].ret_at = 5;
        h.0[3].invoke = 6;
        h.0[3].ret_at = 7;
        let e = check(&m, &h.0).unwrap_err();
        assert!(e.report.contains("false out-of-memory: 1 "), "{e}");
        // The loser in flight, the winner returned: nothing is held.
        h.0[1] = Op {
            thread: 1,
            call: free(0x10000),
            ret: Ret::Refused { named: true },
            invoke: 2,
            ret_at: 9,
        };
        h.0[2].ret = Ret::Freed;
        h.0[3].invoke = 5;
        h.0[3].ret_at = 6;
        let e = check(&m, &h.0).unwrap_err();
        assert!(e.report.contains("false out-of-memory: 1 "), "{e}");
        // Two legitimate frees of the pointer (it was reallocated between
        // them) while the first is in flight: nothing is held.
        let mut h = H(Vec::new());
        h.op(0, alloc(64), Ret::Block(0x10000), 0, 1);
        h.op(0, free(0x10000), Ret::Freed, 2, 9);
        h.op(1, alloc(64), Ret::Block(0x10000), 3, 4);
        h.op(1, free(0x10000), Ret::Freed, 5, 6);
        h.op(2, alloc(32768), Ret::OutOfMemory, 7, 8);
        let e = check(&m, &h.0).unwrap_err();
        assert!(e.report.contains("false out-of-memory: 1 "), "{e}");
    }

    #[test]
    fn none_may_linearize_before_a_concurrent_free() {
        let mut h = H(Vec::new());
        h.op(0, alloc(32768), Ret::Block(0x10000), 0, 1);
        h.op(0, free(0x10000), Ret::Freed, 2, 5);
        h.op(1, alloc(4096), Ret::OutOfMemory, 3, 6);
        check(&model(), &h.0).unwrap();
        // After the free returned, the None is false.
        h.0[2].invoke = 6;
        h.0[2].ret_at = 7;
        assert!(check(&model(), &h.0).is_err());
    }

    #[test]
    fn handles_and_regions() {
        let mut m = model();
        m.regions.push((0..4).map(|i| 0x40000 + i * PAGE).collect());
        let mut h = H(Vec::new());
        h.op(0, alloc(32768), Ret::Block(0x10000), 0, 1);
        h.op(0, Call::AddRegion { region: 1 }, Ret::Done, 2, 5);
        // Concurrent with the add: either result; the block must be in region 1.
        h.op(1, alloc(4096), Ret::OutOfMemory, 3, 4);
        h.op(1, alloc(4096), Ret::Block(0x40000), 6, 7);
        check(&m, &h.0).unwrap();
        h.0[1].ret_at = 3;
        h.0[2].invoke = 4;
        h.0[2].ret_at = 5;
        assert!(check(&m, &h.0).is_err(), "None after the region was added");
        let mut h = H(Vec::new());
        h.op(0, Call::Claim { cpu: None }, Ret::Claimed(0), 0, 1);
        h.op(1, Call::Claim { cpu: None }, Ret::Claimed(0), 2, 3);
        assert!(check(&m, &h.0).is_err(), "one slot claimed twice");
        h.0[1].ret = Ret::Claimed(1);
        h.op(1, Call::Claim { cpu: Some(0) }, Ret::NoSlot, 4, 5);
        h.op(0, Call::Release { cpu: 0 }, Ret::Done, 6, 7);
        h.op(1, Call::Claim { cpu: None }, Ret::Claimed(0), 8, 9);
        check(&m, &h.0).unwrap();
    }

    /// xorshift64*, for the cross-check below.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
        }
    }

    /// Every permutation that respects thread order and real time, tried
    /// one by one (no memoization): the definition, for small histories.
    fn brute(m: &HeapModel, ops: &[Op]) -> bool {
        fn go(m: &HeapModel, ops: &[Op], used: &mut Vec<bool>, s: &State) -> bool {
            if used.iter().all(|&u| u) {
                return true;
            }
            for i in 0..ops.len() {
                if used[i] {
                    continue;
                }
                // Minimal: no unplaced op of its thread before it, and no
                // unplaced op that returned before it was invoked.
                let minimal = (0..ops.len()).all(|j| {
                    used[j]
                        || j == i
                        || !(ops[j].ret_at < ops[i].invoke
                            || (ops[j].thread == ops[i].thread && ops[j].invoke < ops[i].invoke))
                });
                if !minimal {
                    continue;
                }
                if let Ok(t) = m.step(s, &ops[i], 0) {
                    used[i] = true;
                    if go(m, ops, used, &t) {
                        return true;
                    }
                    used[i] = false;
                }
            }
            false
        }
        go(m, ops, &mut vec![false; ops.len()], &m.initial())
    }

    /// Random small histories over a few addresses: the memoized search
    /// agrees with the brute-force definition on every one.
    #[test]
    fn agrees_with_brute_force() {
        let m = model();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut yes, mut no) = (0, 0);
        for _ in 0..3000 {
            let n = 2 + rng.below(6) as usize;
            let mut ops = Vec::new();
            let mut clock = [0u64; 3];
            for _ in 0..n {
                let t = rng.below(3) as usize;
                let invoke = clock[t] + rng.below(4);
                let ret_at = invoke + 1 + rng.below(6);
                clock[t] = ret_at + 1;
                let addr = 0x10000 + rng.below(3) as usize * 2 * PAGE;
                let (call, ret) = match rng.below(5) {
                    0 | 1 => (
                        alloc(PAGE << rng.below(2)),
                        if rng.below(4) == 0 {
                            Ret::OutOfMemory
                        } else {
                            Ret::Block(addr)
                        },
                    ),
                    2 | 3 => (
                        free(addr),
                        if rng.below(3) == 0 {
                            Ret::Refused { named: true }
                        } else {
                            Ret::Freed
                        },
                    ),
                    _ => (Call::Claim { cpu: None }, Ret::Claimed(t as u8 % 2)),
                };
                ops.push(Op {
                    thread: t,
                    call,
                    ret,
                    invoke: invoke * 3 + t as u64,
                    ret_at: ret_at * 3 + t as u64,
                });
            }
            let fast = check(&m, &ops).is_ok();
            assert_eq!(fast, brute(&m, &ops), "disagree on {ops:#?}");
            if fast {
                yes += 1;
            } else {
                no += 1;
            }
        }
        assert!(yes > 300 && no > 300, "{yes} linearizable, {no} not");
    }
}
