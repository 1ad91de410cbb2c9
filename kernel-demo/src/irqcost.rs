//! What the kernel contract costs at the per-CPU handle: a CPU's handle must
//! never be re-entered, so the harness wraps every handle call in
//! `irq_save`/`irq_restore` (`adapters::irq_off`). This times small
//! alloc+free pairs on CPU 0 three ways, interleaved, and reports the
//! medians:
//!
//! * `bare`: the handle's calls alone, interrupts off for the whole loop
//!   (what a caller that already runs with interrupts off pays);
//! * `toggled`: the same calls, each wrapped as the harness's adapter
//!   (`MagCpu`) wraps it, in `adapters::irq_off`, with interrupts on outside
//!   the calls, so every call pays `pushfq; pop; cli` and `sti`;
//! * `shared`: the handle-less shared path (what interrupt handlers use),
//!   interrupts off for the whole loop.
//!
//! `toggled - bare` is the price of the toggling. The ways call the handle
//! directly rather than through `MagCpu` (whose methods the compiler keeps
//! out of line, computing the size class at run time), so that the compiled
//! loops differ only in the toggle: both inline the handle's fast path with
//! the size class folded (`make disasm-irq` shows them). It runs between the
//! magbuddy and SpinHeap runs, when the heap RAM belongs to nobody, over a
//! small heap of its own; the other CPUs wait (halted) at a barrier, and CPU
//! 0's APIC timer is stopped meanwhile, so no tick's work lands in the
//! `toggled` loop (the only one that lets interrupts in).

use crate::adapters::irq_off;
use crate::arch::{apic, cpu};
use crate::demo::Config;
use crate::report::{IrqCost, Way};
use crate::sync::Barrier;
use magbuddy::Heap;

/// Bytes per object: a small-object size class, as the timed `small` module
/// and the benches' small pair mostly allocate.
const SIZE: usize = 64;
/// Live objects: each pair allocates one and frees the oldest (a ring).
const RING: usize = 64;
/// Pairs per timed loop and unit of `scale` (`make test`: 20,000, about
/// 0.2 s for the whole measurement under TCG; `make run` with `SCALE=5`:
/// 100,000, the slowest way's loop, `shared`, 0.1-0.2 s).
const PAIRS_PER_SCALE: usize = 20_000;
/// Untimed pairs per way before the first timed round: carves the slab and
/// fills the magazines, and lets TCG translate the loops.
const WARMUP: usize = 16 * RING;
/// Timed repetitions of each way, interleaved; the median is reported, so
/// one host preemption does not decide a figure.
pub const REPS: usize = 5;
/// Bytes of the heap built for the measurement (at the bottom of the
/// largest heap range): 65 live objects need one slab.
const HEAP_BYTES: usize = 16 << 20;

static BARRIER: Barrier = Barrier::new();

/// Measures on CPU 0 while the others wait; CPU 0 returns the figures.
///
/// Call between two allocator runs (`demo::run`), when no allocator owns
/// the heap ranges.
pub fn run(cfg: &Config, c: usize) -> Option<IrqCost> {
    let r = (c == 0).then(|| measure(cfg));
    BARRIER.wait(cfg.n, "interrupt-toggle cost measured");
    r
}

fn measure(cfg: &Config) -> IrqCost {
    let range = cfg
        .ranges()
        .iter()
        .max_by_key(|r| r.len())
        .expect("no heap range");
    let len = HEAP_BYTES.min(range.len() as usize);
    // SAFETY: identity-mapped heap RAM that no allocator owns between two
    // `demo::run`s (the last one's CPU 0 dropped it after its final
    // barrier, and every CPU cleared its tick hook before that barrier);
    // this heap is dead before this function returns, before the next
    // allocator is built over the same RAM.
    let heap = unsafe { Heap::init(range.start as *mut u8, len, 1) }
        .unwrap_or_else(|e| panic!("irq cost: heap over {range:x?}: {e}"));
    let mut h = heap.handle_for(0).expect("irq cost: handle 0");
    let timer = apic::timer_running();
    apic::stop_timer();
    assert!(
        cpu::irq_enabled(),
        "irq cost: interrupts must be on, or irq_restore never executes sti"
    );
    let pairs = PAIRS_PER_SCALE * cfg.scale;
    let mut ring = [core::ptr::null_mut(); RING];
    for p in &mut ring {
        *p = h.alloc(SIZE).expect("irq cost: alloc").as_ptr();
    }
    // Ticks per pair of each way, per timed round.
    let mut samples = [[0.0; REPS]; 3];
    // Round 0 is the warm-up; rounds 1..=REPS are timed, a, b, c in turn.
    for round in 0..=REPS {
        let n = if round == 0 { WARMUP } else { pairs };
        let bare = irq_off(|| {
            ticks(&mut ring, n, |old| {
                let new = h.alloc(SIZE).expect("irq cost: alloc");
                // SAFETY: `old` is a live block of this heap from the ring;
                // the ring slot takes `new` instead, so it is freed once.
                unsafe { h.free(old) };
                new.as_ptr()
            })
        });
        let toggled = ticks(&mut ring, n, |old| {
            let new = irq_off(|| h.alloc(SIZE)).expect("irq cost: alloc");
            // SAFETY: as above.
            irq_off(|| unsafe { h.free(old) });
            new.as_ptr()
        });
        let shared = irq_off(|| {
            ticks(&mut ring, n, |old| {
                let new = heap.alloc(SIZE).expect("irq cost: alloc");
                // SAFETY: as above.
                unsafe { heap.free(old) };
                new.as_ptr()
            })
        });
        if round > 0 {
            for (s, t) in samples.iter_mut().zip([bare, toggled, shared]) {
                s[round - 1] = t as f64 / n as f64;
            }
        }
    }
    for p in ring {
        // SAFETY: the ring's live blocks, each freed once.
        unsafe { h.free(p) };
    }
    drop(h);
    if let Err(e) = heap.validate() {
        panic!("irq cost: validate: {e}");
    }
    if timer {
        apic::start_timer();
    }
    let [bare, toggled, shared] = samples;
    let paired = core::array::from_fn(|i| toggled[i] - bare[i]);
    IrqCost {
        pairs,
        bare: Way::new(bare),
        toggled: Way::new(toggled),
        shared: Way::new(shared),
        paired: Way::new(paired),
    }
}

/// TSC ticks for `n` pairs over `ring`: pair `i` hands the ring's slot
/// `i % RING` to `pair`, which allocates a replacement, frees the old block
/// and returns the new one. The loop is shared by every way, so the ways
/// differ only in `pair`.
#[inline(always)]
fn ticks(ring: &mut [*mut u8; RING], n: usize, mut pair: impl FnMut(*mut u8) -> *mut u8) -> u64 {
    let t0 = cpu::rdtsc();
    for i in 0..n {
        let slot = &mut ring[i % RING];
        *slot = pair(*slot);
    }
    cpu::rdtsc() - t0
}
