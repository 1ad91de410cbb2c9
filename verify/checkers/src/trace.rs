//! Trace replay: threads log their allocations and frees with global
//! sequence numbers; afterwards the log is sorted and replayed into a
//! [`ShadowBitmap`], which finds overlapping blocks and bad frees without
//! any checking work on the timed path beyond one `fetch_add` per event.
//!
//! # Recording rule
//!
//! Events are recorded by the *client*, around the allocator's calls:
//!
//! - an `alloc` event is stamped **after** the allocator returned the block;
//! - a `free` event is stamped **before** the allocator's free is called.
//!
//! Stamps come from one [`SeqClock`] (`fetch_add`), and each thread writes
//! its events into its own caller-provided buffer ([`Recorder`]).
//!
//! # Why sequence order is a valid linearization
//!
//! Call the stamped interval of a block `[seq(alloc), seq(free)]`. The
//! client owns the block from the moment alloc returns until it calls free,
//! and the rule stamps inside that window, so the stamped interval lies
//! within the client's ownership. If the allocator is correct, two clients
//! never own overlapping bytes at once: the later owner got them through
//! the allocator, whose synchronization makes the earlier owner's free call
//! happen before the later owner's alloc return. The stamps are taken
//! before and after those calls, so the earlier `fetch_add` happens before
//! the later one, and `fetch_add`s on one counter that are ordered by
//! happens-before return increasing values. Hence `seq(free) < seq(alloc')`
//! and replay in sequence order never shows a false overlap. Conversely, a
//! replayed overlap means two clients really owned the same bytes at once.
//! Replay can miss an overlap whose windows did not intersect in stamp order;
//! the online [`ShadowBitmap`] checks the same rule as it happens.
//!
//! The seed allocator logged inside the allocator, after releasing its
//! lock. Then thread A could free block X (and unlock), thread B allocate X
//! and log "alloc X" before A's "free X" was logged: the log showed X
//! allocated twice, a false overlap. Stamping from the client side puts the
//! free's stamp before A's call, which precedes B's allocation.
//!
//! The clock's `fetch_add` is `Relaxed`: the argument above needs only the
//! allocator's own happens-before edges plus the counter's single
//! modification order, and a stronger ordering here would add edges that
//! hide the allocator's missing ones from loom or miri.
//!
//! # Storage
//!
//! No allocation: each [`Recorder`] writes into a `&mut [Event]`. For a
//! bare-metal run, split one array with `chunks_mut` (one chunk per CPU);
//! [`Recorder::new`] fills its chunk with [`Event::EMPTY`], so after the run
//! the whole array can be passed to [`replay`], which skips empty slots.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::shadow::{ShadowBitmap, ShadowError};

/// What an [`Event`] records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The allocator returned the block.
    Alloc,
    /// The client is about to free the block.
    Free,
    /// An unused slot; skipped by [`replay`].
    Empty,
}

/// One logged operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// Global sequence number from the run's [`SeqClock`].
    pub seq: u64,
    /// Allocation, free or empty slot.
    pub kind: EventKind,
    /// Address of the block.
    pub addr: usize,
    /// Size of the block.
    pub size: usize,
}

impl Event {
    /// An unused slot; sorts after every real event.
    pub const EMPTY: Event = Event {
        seq: u64::MAX,
        kind: EventKind::Empty,
        addr: 0,
        size: 0,
    };
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            EventKind::Alloc => "alloc",
            EventKind::Free => "free",
            EventKind::Empty => return f.write_str("empty"),
        };
        write!(
            f,
            "seq {}: {what} {:#x}+{} B",
            self.seq, self.addr, self.size
        )
    }
}

/// The run-wide source of sequence numbers.
#[derive(Debug, Default)]
pub struct SeqClock {
    next: AtomicU64,
}

impl SeqClock {
    /// A clock starting at 0; `const`, so it can be a `static`.
    pub const fn new() -> Self {
        Self {
            next: AtomicU64::new(0),
        }
    }

    /// The next sequence number.
    #[inline]
    pub fn stamp(&self) -> u64 {
        // Relaxed: see the module docs; the allocator's own synchronization
        // orders the stamps that must be ordered.
        self.next.fetch_add(1, Relaxed)
    }

    /// How many stamps were issued (exact once the recording threads joined).
    pub fn issued(&self) -> u64 {
        // Relaxed: a count read after the caller synchronized.
        self.next.load(Relaxed)
    }
}

/// A [`Recorder`]'s buffer is full; the event was not stamped or stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceFull {
    /// Events the buffer holds.
    pub capacity: usize,
}

impl fmt::Display for TraceFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "trace buffer full after {} events; the trace is incomplete",
            self.capacity
        )
    }
}

/// One thread's event log, in a caller-provided buffer.
///
/// A dropped event would make replay wrong (a lost free looks like an
/// overlap later), so a full buffer is an error the caller must not ignore.
#[derive(Debug)]
pub struct Recorder<'c, 'b> {
    clock: &'c SeqClock,
    buf: &'b mut [Event],
    len: usize,
}

impl<'c, 'b> Recorder<'c, 'b> {
    /// A recorder stamping from `clock` into `buf`, which it fills with
    /// [`Event::EMPTY`].
    pub fn new(clock: &'c SeqClock, buf: &'b mut [Event]) -> Self {
        buf.fill(Event::EMPTY);
        Self { clock, buf, len: 0 }
    }

    /// Logs that the allocator returned `ptr` for `size` bytes. Call it
    /// *after* the allocation returned, and only for non-null results.
    /// Returns the event's sequence number.
    #[inline]
    pub fn record_alloc(&mut self, ptr: *const u8, size: usize) -> Result<u64, TraceFull> {
        self.record(EventKind::Alloc, ptr.addr(), size)
    }

    /// Logs that the client frees `ptr` of `size` bytes. Call it *before*
    /// calling the allocator's free. Returns the event's sequence number.
    #[inline]
    pub fn record_free(&mut self, ptr: *const u8, size: usize) -> Result<u64, TraceFull> {
        self.record(EventKind::Free, ptr.addr(), size)
    }

    /// Logs an event for a bare address (`kind` must not be `Empty`).
    #[inline]
    pub fn record(&mut self, kind: EventKind, addr: usize, size: usize) -> Result<u64, TraceFull> {
        debug_assert!(kind != EventKind::Empty, "recording an empty event");
        let slot = self
            .buf
            .get_mut(self.len)
            .ok_or(TraceFull { capacity: self.len })?;
        let seq = self.clock.stamp();
        *slot = Event {
            seq,
            kind,
            addr,
            size,
        };
        self.len += 1;
        Ok(seq)
    }

    /// Events recorded so far.
    pub fn events(&self) -> &[Event] {
        &self.buf[..self.len]
    }

    /// Number of events recorded.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Gives the buffer back, e.g. to replay one thread's trace alone.
    pub fn into_buffer(self) -> &'b mut [Event] {
        self.buf
    }
}

/// Summary of a trace that replayed without violations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Events replayed (empty slots not counted).
    pub events: usize,
    /// Allocation events.
    pub allocs: u64,
    /// Free events.
    pub frees: u64,
    /// Most bytes live at once, in sequence order.
    pub peak_live_bytes: usize,
    /// Bytes still live after the last event, as the shadow counts them
    /// (whole granules, including blocks marked before the replay).
    pub live_bytes_at_end: usize,
}

impl ReplayReport {
    /// Whether every allocated block was freed.
    pub fn is_balanced(&self) -> bool {
        self.allocs == self.frees && self.live_bytes_at_end == 0
    }
}

/// A violation found by [`replay`]. Indices are into the sorted slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayError {
    /// The shadow bitmap rejected an event.
    Shadow {
        /// Index of the rejected event.
        index: usize,
        /// The rejected event.
        event: Event,
        /// What the shadow bitmap found.
        error: ShadowError,
        /// The latest earlier event touching the conflicting granule: for an
        /// overlap the live block's allocation, for a bad free the earlier
        /// free (a double free); `None` if no earlier event touched it.
        related: Option<(usize, Event)>,
    },
    /// Two events carry one sequence number: they were not stamped by one
    /// [`SeqClock`], so their order is unknown.
    DuplicateSeq {
        /// The sequence number.
        seq: u64,
        /// Index of the first such event.
        first: usize,
        /// Index of the second.
        second: usize,
    },
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Shadow {
                index,
                event,
                error,
                related,
            } => {
                write!(f, "event #{index} ({event}): {error}")?;
                match related {
                    Some((j, e)) => write!(f, "; last earlier event there: #{j} ({e})"),
                    None => f.write_str("; no earlier event touched it"),
                }
            }
            Self::DuplicateSeq { seq, first, second } => {
                write!(
                    f,
                    "events #{first} and #{second} share sequence number {seq}"
                )
            }
        }
    }
}

/// Sorts `events` by sequence number and replays them into `shadow`,
/// stopping at the first violation. Empty slots are skipped. The slice is
/// left sorted, so error indices point into it.
///
/// `shadow` should start empty (blocks live before the trace began can be
/// marked first, but then [`ReplayError::Shadow::related`] may be `None`).
/// On success the report's `live_bytes_at_end` is the shadow's live bytes,
/// which includes blocks that were live before the trace.
pub fn replay(
    events: &mut [Event],
    shadow: &ShadowBitmap<'_>,
) -> Result<ReplayReport, ReplayError> {
    events.sort_unstable_by_key(|e| e.seq);
    let mut report = ReplayReport::default();
    let mut live = 0usize;
    for (index, &event) in events.iter().enumerate() {
        if event.kind == EventKind::Empty {
            continue;
        }
        if index > 0 && events[index - 1].seq == event.seq {
            return Err(ReplayError::DuplicateSeq {
                seq: event.seq,
                first: index - 1,
                second: index,
            });
        }
        let result = if event.kind == EventKind::Alloc {
            shadow.on_alloc_addr(event.addr, event.size)
        } else {
            shadow.on_free_addr(event.addr, event.size)
        };
        if let Err(error) = result {
            let related = match error {
                ShadowError::Overlap { conflict: g, .. }
                | ShadowError::NotLive { missing: g, .. } => {
                    last_touching(&events[..index], g, shadow.granule())
                }
                _ => None,
            };
            return Err(ReplayError::Shadow {
                index,
                event,
                error,
                related,
            });
        }
        report.events += 1;
        if event.kind == EventKind::Alloc {
            report.allocs += 1;
            live += event.size;
            report.peak_live_bytes = report.peak_live_bytes.max(live);
        } else {
            report.frees += 1;
            live = live.saturating_sub(event.size);
        }
    }
    report.live_bytes_at_end = shadow.live_bytes();
    Ok(report)
}

/// The latest event in `events` whose block touches the granule at `g`.
fn last_touching(events: &[Event], g: usize, granule: usize) -> Option<(usize, Event)> {
    events
        .iter()
        .enumerate()
        .rev()
        .find(|(_, e)| {
            e.kind != EventKind::Empty
                && e.addr < g.saturating_add(granule)
                && g < e.addr.saturating_add(e.size)
        })
        .map(|(i, &e)| (i, e))
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use core::sync::atomic::AtomicU64;
    use std::sync::Mutex;
    use std::vec::Vec;
    use std::{format, thread, vec};

    const BASE: usize = 0x4000_0000;
    const LEN: usize = 1 << 16;
    const G: usize = 16;

    fn storage() -> Vec<AtomicU64> {
        (0..crate::words_needed(LEN, G))
            .map(|_| AtomicU64::new(0))
            .collect()
    }

    fn ev(seq: u64, kind: EventKind, addr: usize, size: usize) -> Event {
        Event {
            seq,
            kind,
            addr,
            size,
        }
    }

    #[test]
    fn recorder_stamps_and_reports_full() {
        let clock = SeqClock::new();
        let mut buf = [ev(5, EventKind::Alloc, 1, 1); 2];
        let mut r = Recorder::new(&clock, &mut buf);
        assert_eq!(r.record(EventKind::Alloc, BASE, 64), Ok(0));
        assert_eq!(r.record(EventKind::Free, BASE, 64), Ok(1));
        assert_eq!(
            r.record(EventKind::Alloc, BASE, 64),
            Err(TraceFull { capacity: 2 })
        );
        assert_eq!(clock.issued(), 2);
        assert_eq!(r.events()[1], ev(1, EventKind::Free, BASE, 64));
    }

    #[test]
    fn replays_a_correct_trace_out_of_order() {
        let s = storage();
        let sh = ShadowBitmap::new(BASE, LEN, G, 4096, &s).unwrap();
        // Shuffled in storage, as per-thread buffers would be; plus empty slots.
        let mut t = vec![
            ev(3, EventKind::Alloc, BASE, 64),
            Event::EMPTY,
            ev(0, EventKind::Alloc, BASE, 64),
            ev(2, EventKind::Free, BASE, 64),
            ev(1, EventKind::Alloc, BASE + 64, 64),
            ev(4, EventKind::Free, BASE + 64, 64),
            ev(5, EventKind::Free, BASE, 64),
            Event::EMPTY,
        ];
        let r = replay(&mut t, &sh).unwrap();
        assert_eq!(
            (r.events, r.allocs, r.frees, r.peak_live_bytes),
            (6, 3, 3, 128)
        );
        assert!(r.is_balanced() && sh.is_empty());
        assert_eq!(t[0].seq, 0);
    }

    #[test]
    fn catches_a_genuine_overlap() {
        let s = storage();
        let sh = ShadowBitmap::new(BASE, LEN, G, 4096, &s).unwrap();
        let mut t = [
            ev(7, EventKind::Alloc, BASE + 256, 128),
            ev(2, EventKind::Alloc, BASE + 256, 256),
            ev(3, EventKind::Alloc, BASE + 1024, 64),
        ];
        let e = replay(&mut t, &sh).unwrap_err();
        let ReplayError::Shadow {
            index,
            error,
            related,
            ..
        } = e
        else {
            panic!("{e}")
        };
        assert_eq!(index, 2);
        assert!(
            matches!(error, ShadowError::Overlap { addr, conflict, .. } if addr == BASE + 256 && conflict == BASE + 256)
        );
        assert_eq!(related, Some((0, ev(2, EventKind::Alloc, BASE + 256, 256))));
        let msg = format!("{e}");
        assert!(
            msg.contains("seq 7") && msg.contains("seq 2") && msg.contains("0x40000100"),
            "{msg}"
        );
    }

    #[test]
    fn catches_double_free_and_free_of_never_allocated() {
        let s = storage();
        let sh = ShadowBitmap::new(BASE, LEN, G, 4096, &s).unwrap();
        let mut t = [
            ev(0, EventKind::Alloc, BASE, 32),
            ev(1, EventKind::Free, BASE, 32),
            ev(2, EventKind::Free, BASE, 32),
        ];
        let e = replay(&mut t, &sh).unwrap_err();
        assert!(
            matches!(
                e,
                ReplayError::Shadow {
                    index: 2,
                    related: Some((1, _)),
                    ..
                }
            ),
            "{e}"
        );
        assert!(format!("{e}").contains("double free"));

        sh.clear();
        let mut t = [ev(0, EventKind::Free, BASE + 512, 32)];
        let e = replay(&mut t, &sh).unwrap_err();
        assert!(
            matches!(
                e,
                ReplayError::Shadow {
                    index: 0,
                    related: None,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn catches_duplicate_sequence_numbers() {
        let s = storage();
        let sh = ShadowBitmap::new(BASE, LEN, G, 4096, &s).unwrap();
        let mut t = [
            ev(0, EventKind::Alloc, BASE, 32),
            ev(0, EventKind::Alloc, BASE + 32, 32),
        ];
        assert!(matches!(
            replay(&mut t, &sh),
            Err(ReplayError::DuplicateSeq { seq: 0, .. })
        ));
    }

    /// The seed bug, replayed deterministically. A frees X and B reuses it.
    /// Logged inside the allocator after unlocking, B's "alloc X" can get its
    /// stamp before A's "free X": a false overlap. With the client-side rule
    /// A stamps before calling free, so the same interleaving replays clean.
    #[test]
    fn logging_after_unlock_gives_false_overlaps_client_side_does_not() {
        let s = storage();
        let sh = ShadowBitmap::new(BASE, LEN, G, 4096, &s).unwrap();
        let x = BASE + 128;
        // Allocator-side logging: alloc X (0); A: free X, unlock | B: alloc X,
        // unlock, log (1) | A: log free (2).
        let mut bad = [
            ev(0, EventKind::Alloc, x, 64),
            ev(2, EventKind::Free, x, 64),
            ev(1, EventKind::Alloc, x, 64),
        ];
        assert!(matches!(
            replay(&mut bad, &sh),
            Err(ReplayError::Shadow {
                error: ShadowError::Overlap { .. },
                ..
            })
        ));

        sh.clear();
        // Client-side: A logs the free (1) before its call, B logs after return (2).
        let mut good = [
            ev(0, EventKind::Alloc, x, 64),
            ev(1, EventKind::Free, x, 64),
            ev(2, EventKind::Alloc, x, 64),
        ];
        let r = replay(&mut good, &sh).unwrap();
        assert_eq!(r.live_bytes_at_end, 64);
    }

    /// A correct allocator (a locked LIFO of slots, so blocks are reused at
    /// once, often by another thread) driven by 4 threads with remote frees,
    /// recorded with the client-side rule into chunks of one array. Replay
    /// must never report an overlap.
    #[test]
    fn interleaved_correct_histories_never_report_false_overlaps() {
        const SLOTS: usize = 32;
        const SLOT: usize = 64;
        const OPS: usize = if cfg!(miri) { 300 } else { 20_000 };
        for round in 0..if cfg!(miri) { 1 } else { 5u64 } {
            let pool = Mutex::new((0..SLOTS).map(|i| BASE + i * SLOT).collect::<Vec<_>>());
            // A hand-off list so blocks are freed by a thread other than their allocator.
            let handoff = Mutex::new(Vec::new());
            let clock = SeqClock::new();
            let mut all = vec![Event::EMPTY; 4 * 2 * OPS];
            thread::scope(|s| {
                for (t, chunk) in all.chunks_mut(2 * OPS).enumerate() {
                    let (pool, handoff, clock) = (&pool, &handoff, &clock);
                    s.spawn(move || {
                        let mut rec = Recorder::new(clock, chunk);
                        let mut rng = (t as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ round;
                        let mut held = Vec::new();
                        for _ in 0..OPS {
                            rng ^= rng << 13;
                            rng ^= rng >> 7;
                            rng ^= rng << 17;
                            if rng % 3 != 0 {
                                let got = pool.lock().unwrap().pop();
                                if let Some(a) = got {
                                    rec.record(EventKind::Alloc, a, SLOT).unwrap(); // after return
                                    if rng % 5 == 0 {
                                        handoff.lock().unwrap().push(a);
                                    } else {
                                        held.push(a);
                                    }
                                }
                            } else {
                                let victim = match handoff.lock().unwrap().pop() {
                                    Some(a) => Some(a),
                                    None => held.pop(),
                                };
                                if let Some(a) = victim {
                                    rec.record(EventKind::Free, a, SLOT).unwrap(); // before the call
                                    pool.lock().unwrap().push(a);
                                }
                            }
                        }
                        for a in held {
                            rec.record(EventKind::Free, a, SLOT).unwrap();
                            pool.lock().unwrap().push(a);
                        }
                    });
                }
            });
            for a in handoff.into_inner().unwrap() {
                let seq = clock.stamp();
                let slot = all.iter_mut().find(|e| e.kind == EventKind::Empty).unwrap();
                *slot = ev(seq, EventKind::Free, a, SLOT);
            }
            let s = storage();
            let sh = ShadowBitmap::new(BASE, LEN, G, 4096, &s).unwrap();
            let r = replay(&mut all, &sh).unwrap_or_else(|e| panic!("false report: {e}"));
            assert!(r.is_balanced() && sh.is_empty(), "{r:?}");
            assert_eq!(r.events as u64, clock.issued());
            assert!(r.allocs as usize > OPS / 2);
        }
    }
}
