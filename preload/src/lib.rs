//! `malloc` and friends over magbuddy, for `LD_PRELOAD` (see papers/preload.md).
//!
//! * First use reserves one region with `mmap(MAP_NORESERVE)`: a header page
//!   and the heap itself (`MAGBUDDY_HEAP` bytes, suffixes K/M/G, default
//!   4 GiB). Racing first calls each map and build one; one wins a CAS, the
//!   others unmap theirs.
//! * Sizes come from the heap's page descriptors (`Heap::usable_size`); the
//!   core refuses a double free at the second `free` even while the block
//!   sits in a magazine (every build), and the shim aborts.
//! * Each thread claims a magbuddy `Handle` on first use, kept in a static
//!   array indexed by CPU slot and found through one word of initial-exec
//!   TLS, the thread's state (module `tls`: fresh, claiming, no slot,
//!   exited, busy, or its slot). `malloc` and `free` read it once: a slot's
//!   address means "has a handle that no call of this thread is using";
//!   they store busy over it while they use the handle and put it back
//!   after, with no call in between on their fast paths. A pthread key
//!   whose value is set at the claim only makes glibc call `thread_exit`,
//!   which releases the handle and marks the thread exited. Threads beyond the pool, calls re-entered
//!   during a claim (`pthread_setspecific`'s `calloc`, a signal handler) or
//!   while the handle is in use, and exited threads use the heap's shared
//!   path. So the frees glibc makes after the key destructors
//!   (`__libc_thread_freeres`: `strsignal`, `strerror_l`, `dlerror` and
//!   resolver buffers) cannot claim a slot that would never be released.
//!   What can still leak a slot: a thread whose first call into the shim
//!   comes from another library's key destructor in glibc's last round (or
//!   whose only earlier calls came before the key existed, at start-up):
//!   freeres frees only what the thread allocated, so it has claimed
//!   before; and the slots of threads that vanish in a `fork()` child. A
//!   thread that found the pool full stays on the shared path even after
//!   slots come free.
//! * Nothing here allocates through another allocator, and nothing takes a
//!   lock, so `fork()` cannot deadlock; the child leaks what other threads
//!   held in their handles. The forking thread keeps its state (TLS is the
//!   thread's), and no table of claimers needs resetting.
//! * Memory goes back to the OS without `malloc_trim`: freed blocks of at
//!   least `MAGBUDDY_MADVISE_MIN` at once, and every wholly free area each
//!   time `MAGBUDDY_TRIM_EVERY` bytes (default 64 MiB) have left the caches
//!   since the last trim (`Heap::set_auto_trim`, run inside the free that
//!   passes the mark; a free that a magazine takes pays nothing for it).
//! * Introspection for tests: the exported C function
//!   `void magbuddy_preload_stats(struct magbuddy_preload_stats *out)` fills
//!   `{ size_t slots_claimed, slots_total, thread; }`: handle slots held by
//!   threads now, the pool's size, and the calling thread's state (0 no
//!   handle yet, 1 has a handle, 2 shared path: the pool was full, 3 shared
//!   path: exited, 4 inside its own claim, 5 inside a call that uses its
//!   handle: seen only from a signal handler). It neither allocates nor claims
//!   a handle. Programs find it with
//!   `dlsym(RTLD_DEFAULT, "magbuddy_preload_stats")`.

#![allow(clippy::missing_safety_doc)]
// Built to abort on panic (the release and verify profiles), the shim needs
// nothing of `std` on x86_64: without it the library links neither `std`'s
// runtime nor `libgcc_s` (its unwinder), so a small program under the shim
// maps 2,068 KiB instead of 2,268–2,424 (`sleep`: the shim's resident text
// 232 → 108 KiB, and `libgcc_s`'s 76 KiB gone; `papers/preload.md`).
// Debug builds keep `std`, whose unwinding panics need it, and so does a
// build where another package enabled `magbuddy/std` (`magbuddy_std`, see
// `build.rs`): the workspace's.
#![cfg_attr(
    all(panic = "abort", target_arch = "x86_64", not(magbuddy_std)),
    no_std
)]

use core::cell::UnsafeCell;
use core::ffi::{c_int, c_void};
use core::fmt::Write as _;
use core::ptr::{self, null_mut};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use magbuddy::{FreeError, Handle, Heap, HeapConfig, Overflow, MAX_CACHED, MAX_CPUS};

const DEFAULT_HEAP: usize = 4 << 30;
/// Smallest block handed out: malloc must return 16-byte aligned memory.
const MIN_BLOCK: usize = 16;
/// What every block malloc returns is aligned to (`alignof(max_align_t)`):
/// the fitted classes give just that, not alignment to the size.
const MALLOC_ALIGN: usize = 16;
const PAGE: usize = 4096;
/// Alignment of the heap region inside the mapping (an area).
const REGION_ALIGN: usize = 1 << 20;
/// Blocks of at least this size are returned to the OS (`MADV_DONTNEED`)
/// when freed, unless `MAGBUDDY_MADVISE_MIN` says otherwise (0 = never;
/// rounded up to a power of two, so only pointers aligned to it qualify;
/// at least 32 KiB, since blocks up to 16 KiB stay in the magazines).
const MADVISE_MIN: usize = 1 << 20;

/// The heap trims by itself (`Heap::set_auto_trim`) once this many freed
/// bytes have come home since its last trim, unless `MAGBUDDY_TRIM_EVERY`
/// says otherwise (0 = never): a program that frees a large working set
/// gives it back without calling `malloc_trim`. Large enough that a steady
/// workload trims rarely (each trim visits every area of the heap).
const TRIM_EVERY: usize = 64 << 20;

/// `calloc` of at least this many bytes discards the block's pages instead
/// of writing zeros (see `calloc`).
const CALLOC_DISCARD: usize = 256 << 10;

/// Everything the shim needs, written into the first page of the mapping.
struct Globals {
    heap: &'static Heap,
    /// Heap bytes: no request above this can succeed.
    len: usize,
    /// Smallest block given back to the OS when freed, a power of two
    /// (`usize::MAX`: never).
    madvise_min: usize,
}

/// Address of the published `Globals` (0 before).
static GLOBALS: AtomicUsize = AtomicUsize::new(0);
/// The pthread key of the per-thread slot, `NO_KEY` until created.
static KEY: AtomicU32 = AtomicU32::new(NO_KEY);
const NO_KEY: u32 = u32::MAX;
static KEY_CLAIMED: AtomicBool = AtomicBool::new(false);
/// Handle slots held by threads now (for `magbuddy_preload_stats`).
static CLAIMED: AtomicUsize = AtomicUsize::new(0);

// The thread's state word (zero in every new thread): one of the sentinels
// below, `BUSY`, or the address of the thread's `Slot`. Slot addresses are
// positive as `isize` (`claim` checks), the sentinels are 0..=3 and `BUSY`
// is negative, so one signed compare (`is_slot`) tells "has a handle that no
// call of this thread is using" from everything else.
/// Never claimed: the next call claims.
const FRESH: usize = 0;
/// Inside its own claim: re-entrant calls take the shared path.
const CLAIMING: usize = 1;
/// The pool was full (or the key could not hold a value): shared path for
/// the rest of the thread.
const NO_SLOT: usize = 2;
/// The key destructor ran: shared path until the thread is gone (glibc's
/// `__libc_thread_freeres` frees after the key table is cleared).
const EXITED: usize = 3;
/// A call of this thread is using its handle (stored over the slot's
/// address, which the call keeps in a register and puts back when done): a
/// re-entrant call, e.g. from a signal handler, takes the shared path. `-1`,
/// so that `tls::set_busy` stores an immediate.
const BUSY: usize = usize::MAX;

/// Whether state `s` is a slot's address (ready and not in use).
#[inline(always)]
fn is_slot(s: usize) -> bool {
    s as isize > EXITED as isize
}

/// One word of initial-exec TLS: the thread's state.
///
/// Not `thread_local!`: in a shared object that compiles to the
/// general-dynamic model, a call to `__tls_get_addr` on every access (200
/// instead of 168 instructions per malloc+free pair under callgrind, before
/// the fast paths were shortened to 112.2), and
/// `__tls_get_addr` may itself call `malloc` while it updates the DTV after
/// a `dlopen` (glibc 2.41 added a guard for interposed mallocs that use
/// dynamic TLS; not reproduced here on 2.36 with 40 `dlopen`ed TLS
/// libraries). Initial-exec is the model glibc recommends for an interposed
/// malloc: a fixed offset from the thread pointer, in the static TLS block
/// glibc sets up at start-up for `LD_PRELOAD` libraries (and zeroes for
/// every new thread, cached stacks included; the `.so` is marked
/// `STATIC_TLS`). A single `mov` reads or writes it, so a signal handler on
/// the same thread sees either the old or the new value.
#[cfg(target_arch = "x86_64")]
mod tls {
    core::arch::global_asm!(
        ".pushsection .tbss.magbuddy_preload_state,\"awT\",@nobits",
        ".p2align 3",
        ".globl magbuddy_preload_state",
        ".hidden magbuddy_preload_state",
        ".type magbuddy_preload_state,@object",
        ".size magbuddy_preload_state,8",
        "magbuddy_preload_state:",
        ".zero 8",
        ".popsection",
    );

    /// The word's offset from the thread pointer (its GOT entry, filled in
    /// once by the dynamic linker): `pure`, so the fast paths load it once
    /// for the `get` and both `set`s of a call.
    #[inline(always)]
    fn offset() -> usize {
        let t: usize;
        // SAFETY: reads the GOT entry of our own TLS symbol, which the
        // dynamic linker wrote before any code of ours ran and nothing
        // writes since (so `pure, nomem`: no memory the program changes).
        unsafe {
            core::arch::asm!(
                "mov {t}, qword ptr [rip + magbuddy_preload_state@GOTTPOFF]",
                t = out(reg) t,
                options(pure, nomem, nostack, preserves_flags),
            )
        };
        t
    }

    #[inline(always)]
    pub(crate) fn get() -> usize {
        let v: usize;
        // SAFETY: reads this thread's 8-byte TLS word at its initial-exec
        // offset.
        unsafe {
            core::arch::asm!(
                "mov {v}, qword ptr fs:[{t}]",
                t = in(reg) offset(),
                v = lateout(reg) v,
                options(nostack, preserves_flags, readonly),
            )
        };
        v
    }

    /// Also a compiler barrier (the asm may write memory), so the store is
    /// not moved across the accesses around it.
    #[inline(always)]
    pub(crate) fn set(v: usize) {
        // SAFETY: writes this thread's 8-byte TLS word, as in `get`.
        unsafe {
            core::arch::asm!(
                "mov qword ptr fs:[{t}], {v}",
                t = in(reg) offset(),
                v = in(reg) v,
                options(nostack, preserves_flags),
            )
        };
    }

    /// `set(BUSY)` with an immediate operand (one instruction).
    #[inline(always)]
    pub(crate) fn set_busy() {
        const _: () = assert!(super::BUSY as isize == -1);
        // SAFETY: writes this thread's 8-byte TLS word, as in `set`.
        unsafe {
            core::arch::asm!(
                "mov qword ptr fs:[{t}], -1",
                t = in(reg) offset(),
                options(nostack, preserves_flags),
            )
        };
    }
}

/// Elsewhere: `thread_local!` (const, no destructor), i.e. general-dynamic
/// TLS, with the `__tls_get_addr` caveat above.
#[cfg(not(target_arch = "x86_64"))]
mod tls {
    use core::cell::Cell;
    use core::sync::atomic::{compiler_fence, Ordering};

    std::thread_local! {
        static STATE: Cell<usize> = const { Cell::new(super::FRESH) };
    }

    #[inline(always)]
    pub(crate) fn get() -> usize {
        STATE.with(Cell::get)
    }

    #[inline(always)]
    pub(crate) fn set(v: usize) {
        // SeqCst fences: a signal handler on this thread sees the store in
        // program order with the accesses around it.
        compiler_fence(Ordering::SeqCst);
        STATE.with(|s| s.set(v));
        compiler_fence(Ordering::SeqCst);
    }

    #[inline(always)]
    pub(crate) fn set_busy() {
        set(super::BUSY);
    }
}

/// A thread's handle, owned by the thread whose state word points here.
struct Slot {
    handle: UnsafeCell<Option<Handle<'static>>>,
}

// SAFETY: a slot is used only by the thread that claimed its handle.
unsafe impl Sync for Slot {}

/// A call's use of its thread's handle: made by [`enter`], which stored
/// `BUSY` in the state word, and ended by [`Entered::leave`], which puts
/// the slot's address back (so a re-entrant call, from a signal handler
/// for instance, never uses the handle meanwhile).
struct Entered(&'static Slot);

impl Entered {
    /// The handle, for this call alone.
    #[inline(always)]
    fn handle(&mut self) -> &mut Handle<'static> {
        // SAFETY: the state word pointed at this slot, so it holds the
        // thread's handle (`claim` stores the handle before the address,
        // `thread_exit` changes the state before taking it), and it is BUSY
        // until `leave`, so no other call of this thread uses the handle.
        unsafe { (*self.0.handle.get()).as_mut().unwrap_unchecked() }
    }

    /// Ends the use: the state word is the slot's address again. Consumes
    /// `self`, so the handle borrowed from it is no longer in use.
    #[inline(always)]
    fn leave(self) {
        tls::set(self.0 as *const Slot as usize);
    }
}

/// Marks this thread's handle in use and returns it, if the thread has one
/// that no call of it is using (claims none). A signal handler that runs
/// between the load and the store finds the slot too, but has put its
/// address back by the time it returns.
#[inline(always)]
fn enter() -> Option<Entered> {
    let s = tls::get();
    if !is_slot(s) {
        return None;
    }
    tls::set_busy();
    // SAFETY: a slot's address (`is_slot`), static, so it lives forever.
    Some(Entered(unsafe { &*(s as *const Slot) }))
}

static SLOTS: [Slot; MAX_CPUS] = [const {
    Slot {
        handle: UnsafeCell::new(None),
    }
}; MAX_CPUS];

#[inline]
fn set_errno(e: c_int) {
    // SAFETY: errno is this thread's.
    unsafe { *libc::__errno_location() = e };
}

/// A failed allocation: errno = ENOMEM, null.
#[cold]
fn enomem() -> *mut c_void {
    set_errno(libc::ENOMEM);
    null_mut()
}

// ---------------------------------------------------------------------------
// Messages without allocation.

struct Buf {
    b: [u8; 256],
    n: usize,
}

impl core::fmt::Write for Buf {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let k = s.len().min(self.b.len() - self.n);
        self.b[self.n..self.n + k].copy_from_slice(&s.as_bytes()[..k]);
        self.n += k;
        Ok(())
    }
}

#[cold]
#[inline(never)]
fn die(args: core::fmt::Arguments<'_>) -> ! {
    let mut b = Buf { b: [0; 256], n: 0 };
    let _ = b.write_str("magbuddy: ");
    let _ = b.write_fmt(args);
    let _ = b.write_str("\n");
    // SAFETY: writes our own buffer to stderr, then aborts.
    unsafe {
        libc::write(2, b.b.as_ptr().cast(), b.n);
        libc::abort()
    }
}

/// A panic (a bug) without `std`: its message on stderr, then abort, as
/// `std` would do for a panic that reaches an `extern "C"` function.
#[cfg(all(panic = "abort", target_arch = "x86_64", not(magbuddy_std)))]
#[panic_handler]
fn on_panic(info: &core::panic::PanicInfo<'_>) -> ! {
    die(format_args!("panic: {info}"))
}

/// The precompiled `core` was built to unwind and names this symbol; with
/// `panic = "abort"` nothing unwinds, so it is never called.
#[cfg(all(panic = "abort", target_arch = "x86_64", not(magbuddy_std)))]
#[no_mangle]
extern "C" fn rust_eh_personality() {}

#[cold]
#[inline(never)]
fn bad_pointer(what: &str, p: *mut c_void) -> ! {
    die(format_args!(
        "{what}({p:p}): invalid pointer or double free (no live block starts here)"
    ))
}

#[cold]
#[inline(never)]
fn refused(what: &str, e: FreeError) -> ! {
    // The error's own message starts with "free(ptr)".
    match what {
        "free" => die(format_args!("{e}")),
        _ => die(format_args!("{what}: {e}")),
    }
}

// ---------------------------------------------------------------------------
// Set-up.

/// Parses a size from the environment (decimal, optional K/M/G suffix);
/// `default` if unset; anything else stops the process with a message.
fn env_bytes(name: &core::ffi::CStr, default: usize) -> usize {
    // SAFETY: a NUL-terminated name; getenv does not allocate.
    let v = unsafe { libc::getenv(name.as_ptr()) };
    if v.is_null() {
        return default;
    }
    let mut n: usize = 0;
    let mut i = 0;
    loop {
        // SAFETY: within the NUL-terminated string.
        let c = unsafe { *v.add(i) } as u8;
        match c {
            b'0'..=b'9' => n = n.saturating_mul(10).saturating_add((c - b'0') as usize),
            b'k' | b'K' => return n.saturating_mul(1 << 10),
            b'm' | b'M' => return n.saturating_mul(1 << 20),
            b'g' | b'G' => return n.saturating_mul(1 << 30),
            0 if i > 0 => return n,
            _ => not_a_size(name),
        }
        i += 1;
    }
}

/// An environment variable that should hold a size does not: say so and
/// stop (before anything was allocated, so nothing is lost), rather than
/// run with a size the user did not ask for.
#[cold]
fn not_a_size(name: &core::ffi::CStr) -> ! {
    let parts: [&[u8]; 3] = [
        b"magbuddy: ",
        name.to_bytes(),
        b" is not a size (digits, optionally followed by K, M or G)\n",
    ];
    for part in parts {
        // SAFETY: writes a valid buffer to stderr; no allocation.
        unsafe { libc::write(2, part.as_ptr().cast(), part.len()) };
    }
    // SAFETY: ends the process; nothing needs to run first.
    unsafe { libc::abort() }
}

#[inline]
fn globals() -> Option<&'static Globals> {
    // Acquire: pairs with the AcqRel CAS that published them.
    let g = GLOBALS.load(Ordering::Acquire);
    if g != 0 {
        // SAFETY: published globals live for the rest of the process.
        return Some(unsafe { &*(g as *const Globals) });
    }
    init()
}

#[cold]
#[inline(never)]
fn init() -> Option<&'static Globals> {
    let len = env_bytes(c"MAGBUDDY_HEAP", DEFAULT_HEAP).next_multiple_of(PAGE);
    // Never below twice the largest cached block: `free`'s fast path
    // frees blocks up to that size without asking.
    let madvise_min = match env_bytes(c"MAGBUDDY_MADVISE_MIN", MADVISE_MIN) {
        0 => usize::MAX,
        n => n.checked_next_power_of_two().unwrap_or(usize::MAX),
    }
    .max(2 * MAX_CACHED);
    let trim_every = env_bytes(c"MAGBUDDY_TRIM_EVERY", TRIM_EVERY);
    let total = PAGE + REGION_ALIGN + len;
    // SAFETY: a fresh anonymous mapping; nobody else knows it.
    let m = unsafe {
        libc::mmap(
            null_mut(),
            total,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if m == libc::MAP_FAILED {
        return None;
    }
    let m = m as usize;
    let base = (m + PAGE).next_multiple_of(REGION_ALIGN);
    // A fresh anonymous mapping reads as zeros: init skips the zero metadata,
    // so its pages are only faulted in when used.
    let config = HeapConfig {
        zeroed: true,
        ..HeapConfig::new(MAX_CPUS)
    };
    // SAFETY: [base, base + len) lies in our fresh mapping, used by nobody else,
    // and reads as zeros.
    let heap = match unsafe { Heap::init_with(base as *mut u8, len, config) } {
        Ok(h) => h,
        Err(e) => {
            // SAFETY: our mapping, never published.
            unsafe { libc::munmap(m as *mut c_void, total) };
            die(format_args!(
                "cannot build the heap (MAGBUDDY_HEAP={len}): {e}"
            ));
        }
    };
    heap.set_auto_trim(trim_every, discard);
    let g = m as *mut Globals;
    // SAFETY: the header page is ours and page aligned.
    unsafe {
        ptr::write(
            g,
            Globals {
                heap,
                len,
                madvise_min,
            },
        )
    };
    // AcqRel: Release publishes the heap and header; Acquire on failure reads
    // the winner's.
    match GLOBALS.compare_exchange(0, m, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            finish_init();
            // SAFETY: just published, lives forever.
            Some(unsafe { &*g })
        }
        Err(w) => {
            // SAFETY: ours, never published.
            unsafe { libc::munmap(m as *mut c_void, total) };
            // SAFETY: as in `globals`.
            Some(unsafe { &*(w as *const Globals) })
        }
    }
}

/// After the heap is published (so re-entrant mallocs find it): the pthread
/// key.
fn finish_init() {
    if KEY_CLAIMED.swap(true, Ordering::AcqRel) {
        return;
    }
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: plain libc calls with valid arguments.
    unsafe {
        if libc::pthread_key_create(&mut key, Some(thread_exit)) == 0 {
            // Release: pairs with the Acquire in `claim`.
            KEY.store(key, Ordering::Release);
        }
    }
}

/// pthread key destructor, called by glibc when the key's value is non-null,
/// i.e. for threads that claimed a slot: marks the thread exited, then
/// releases its handle (flushing its caches). From here on the thread's
/// mallocs and frees (later destructors, `__libc_thread_freeres`) take the
/// shared path and cannot claim a slot no destructor would release. The
/// value is not trusted (the state word says which slot is ours) and not
/// set again, so glibc runs no further round for us.
unsafe extern "C" fn thread_exit(_v: *mut c_void) {
    let s = tls::get();
    // First: a signal handler that runs from here on takes the shared path
    // instead of using the handle we are dropping.
    tls::set(EXITED);
    // `BUSY` only if the thread left a call without finishing (a signal
    // handler that called pthread_exit): the handle may be mid-update, so
    // leak the slot rather than drop it.
    if !is_slot(s) {
        return;
    }
    // SAFETY: a slot's address (`is_slot`): the slot this thread claimed.
    let slot = unsafe { &*(s as *const Slot) };
    // SAFETY: only this thread uses the slot, and nothing uses it now.
    let h = unsafe { (*slot.handle.get()).take() };
    if h.is_some() {
        drop(h);
        // Relaxed: a statistic.
        CLAIMED.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Claims a handle for this thread; the state word says how it went (the
/// slot's address, `NO_SLOT`, or still `FRESH` before the key exists).
/// Needs no table of claimers: the thread's own state says it is claiming,
/// so a re-entrant call (the `calloc` inside `pthread_setspecific` for keys
/// past the first 32, a signal handler) takes the shared path, however many
/// threads claim.
#[cold]
#[inline(never)]
fn claim(g: &'static Globals) {
    // Acquire: pairs with the Release in `finish_init`.
    let key = KEY.load(Ordering::Acquire);
    if key == NO_KEY {
        // Before the key exists (or if it could not be created) no
        // destructor could release a slot: shared path, state still fresh.
        return;
    }
    tls::set(CLAIMING);
    let mut state = NO_SLOT;
    if let Some(h) = g.heap.handle() {
        let slot = &SLOTS[h.cpu()];
        let addr = slot as *const Slot as usize;
        // SAFETY: the heap gave us this CPU slot exclusively; its previous
        // owner dropped its handle (taking it out) before releasing the
        // slot.
        unsafe { *slot.handle.get() = Some(h) };
        // A non-null value makes glibc call `thread_exit` at exit. A slot
        // whose address the state word cannot tell from `BUSY` (never on
        // x86_64 Linux, where user addresses are below 2^47) is not used.
        // SAFETY: valid key; may allocate (re-entering as CLAIMING).
        if is_slot(addr) && unsafe { libc::pthread_setspecific(key, slot as *const Slot as _) } == 0
        {
            // Relaxed: a statistic.
            CLAIMED.fetch_add(1, Ordering::Relaxed);
            state = addr;
        } else {
            // No destructor would release it: give it back now.
            // SAFETY: ours, and nobody else's yet.
            drop(unsafe { (*slot.handle.get()).take() });
        }
    }
    tls::set(state);
}

/// Runs `f` with this thread's handle (claiming one on first use), or
/// `shared` on the shared path.
#[inline]
fn with_handle<R>(
    g: &'static Globals,
    f: impl FnOnce(&mut Handle<'static>) -> R,
    shared: impl FnOnce(&'static Heap) -> R,
) -> R {
    if tls::get() == FRESH {
        claim(g);
    }
    if let Some(mut e) = enter() {
        let r = f(e.handle());
        e.leave();
        return r;
    }
    shared(g.heap)
}

// ---------------------------------------------------------------------------
// Core operations.

/// A block of at least `size` bytes aligned to `align` (at least 16, what
/// malloc promises), in the smallest fitted class (`Handle::alloc_fit`), or
/// null with errno = ENOMEM. `extern "C"` so that `malloc` can jump to it
/// (see `malloc_rest`).
#[inline(never)]
extern "C" fn alloc_block(size: usize, align: usize) -> *mut c_void {
    let Some(g) = globals() else {
        return enomem();
    };
    let (req, align) = (size.max(MIN_BLOCK), align.max(MALLOC_ALIGN));
    if req > g.len {
        return enomem();
    }
    let p = with_handle(
        g,
        |h| h.alloc_fit(req, align),
        |heap| heap.alloc_fit(req, align),
    );
    p.map_or_else(enomem, |p| p.as_ptr().cast())
}

#[inline]
fn free_block(what: &str, p: *mut c_void) {
    if p.is_null() {
        return;
    }
    let Some(g) = globals() else {
        bad_pointer(what, p)
    };
    let p = p.cast::<u8>();
    // Page blocks are aligned to their size, so only a pointer aligned to
    // `madvise_min` can start a block that large: one size lookup per slab
    // (the first object of every second or so slab), none for most frees.
    if p as usize & (g.madvise_min - 1) == 0 {
        let bs = g.heap.usable_size(p).unwrap_or_else(|e| refused(what, e));
        if bs >= g.madvise_min {
            // The block is still ours: give its pages back before freeing it.
            // SAFETY: a live block of ours, page aligned.
            unsafe { libc::madvise(p.cast(), bs, libc::MADV_DONTNEED) };
        }
    }
    // SAFETY: the caller gives up `p`; the heap refuses (and changes
    // nothing for) anything that is not a live block of it, including a
    // second free of a block still in a magazine.
    let r = with_handle(
        g,
        |h| unsafe { h.try_free(p) },
        |heap| unsafe { heap.try_free(p) },
    );
    if let Err(e) = r {
        refused(what, e);
    }
}

fn aligned(align: usize, size: usize) -> *mut c_void {
    alloc_block(size.max(1), align)
}

// ---------------------------------------------------------------------------
// The C ABI.

#[no_mangle]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    // The fast path: a thread with a handle allocates through it, with
    // nothing else in between and no call (so no stack frame); the rest of
    // the call (`malloc_rest`, `alloc_block`) is a tail call.
    if let Some(mut e) = enter() {
        // `alloc_fit*` serve sizes 0..16 from the 16-byte class.
        if let Some(p) = e.handle().alloc_fit_cached(size, MALLOC_ALIGN) {
            e.leave();
            return p.as_ptr().cast();
        }
        return malloc_rest(size, e);
    }
    alloc_block(size.max(1), MALLOC_ALIGN)
}

/// `malloc` when the loaded magazine has nothing for `size`, with the
/// handle still entered. `size` comes first, where `malloc` has it, so the
/// jump needs no register move (likewise `free_overflow`'s order and
/// `Overflow`'s fields: the pointer stays in the first register).
///
/// `extern "C"` here and below: it cannot unwind (a panic aborts), so its
/// caller needs no landing pad and can jump to it (a tail call). Only
/// called from Rust.
#[cold]
#[inline(never)]
#[allow(improper_ctypes_definitions)]
extern "C" fn malloc_rest(size: usize, mut e: Entered) -> *mut c_void {
    let p = e.handle().alloc_fit(size, MALLOC_ALIGN);
    e.leave();
    p.map_or_else(enomem, |p| p.as_ptr().cast())
}

#[no_mangle]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // The fast path: an object or a block of up to 16 KiB freed through the
    // thread's handle (never one the OS gets back, see `init`), with no
    // call, as `malloc`'s; a full magazine (`free_overflow`) and everything
    // else, bad pointers included (`free_rest`, `free_block`), are tail
    // calls.
    if let Some(mut e) = enter() {
        // SAFETY: the caller gives up `p`, and the handle changes nothing
        // unless `p` is a live block it takes back.
        match unsafe { e.handle().free_cached(p.cast()) } {
            Ok(true) => return e.leave(),
            Ok(false) => e.leave(),
            Err(full) => return free_overflow(full, e),
        }
    }
    free_rest(p)
}

/// `free` of everything its fast path declines (see `malloc_rest` for the
/// `extern "C"`).
#[cold]
#[inline(never)]
extern "C" fn free_rest(p: *mut c_void) {
    free_block("free", p)
}

/// `free` of a block the handle took back while its loaded magazine is
/// full, with the handle still entered.
#[cold]
#[inline(never)]
#[allow(improper_ctypes_definitions)]
extern "C" fn free_overflow(full: Overflow, mut e: Entered) {
    // SAFETY: `free` got `full` from this handle's `free_cached`.
    unsafe { e.handle().free_overflow(full) };
    e.leave();
}

/// Same as `free` (old SunOS name, still exported by glibc).
#[no_mangle]
pub unsafe extern "C" fn cfree(p: *mut c_void) {
    // SAFETY: forwarded.
    unsafe { free(p) }
}

#[no_mangle]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        set_errno(libc::ENOMEM);
        return null_mut();
    };
    let p = alloc_block(total.max(1), MALLOC_ALIGN);
    if p.is_null() {
        return p;
    }
    // Reused blocks hold old data. Large ones (whole pages, aligned to
    // their size) are cleared by discarding their pages: our private
    // anonymous mapping reads as zero again, faulted in on first touch, so
    // `calloc(1, 1 GiB)` costs neither time nor memory until used.
    // SAFETY: a fresh block of at least `total` bytes, ours alone.
    unsafe {
        if total < CALLOC_DISCARD
            || libc::madvise(p, total.next_multiple_of(PAGE), libc::MADV_DONTNEED) != 0
        {
            ptr::write_bytes(p.cast::<u8>(), 0, total);
        }
    }
    p
}

/// `realloc(NULL, n)` is `malloc(n)`; `realloc(p, 0)` frees `p` and returns
/// NULL (as glibc does); in place when the heap can resize the block where
/// it is (`Heap::resize_in_place`: the same object class, or a page block
/// grown into free buddies or shrunk); on failure returns NULL with ENOMEM
/// and leaves `p` alone.
#[no_mangle]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    if p.is_null() {
        return alloc_block(size.max(1), MALLOC_ALIGN);
    }
    if size == 0 {
        free_block("realloc", p);
        return null_mut();
    }
    let Some(g) = globals() else {
        bad_pointer("realloc", p)
    };
    let old = g
        .heap
        .usable_size(p.cast())
        .unwrap_or_else(|e| refused("realloc", e));
    if size > g.len {
        set_errno(libc::ENOMEM);
        return null_mut();
    }
    // SAFETY: `p` is a live block of the caller's (realloc's contract), not
    // freed meanwhile; a bad pointer was refused above.
    match unsafe {
        g.heap.resize_in_place(
            core::ptr::NonNull::new_unchecked(p.cast()),
            size.max(MIN_BLOCK),
            MALLOC_ALIGN,
        )
    } {
        Ok(Some(_)) => return p,
        Ok(None) => {}
        Err(e) => refused("realloc", e),
    }
    // A large block that grows moves to where it has room to grow again.
    let q = (size > old)
        .then(|| g.heap.alloc_to_grow(size))
        .flatten()
        .map_or_else(|| alloc_block(size, MALLOC_ALIGN), |q| q.as_ptr().cast());
    if !q.is_null() {
        // SAFETY: distinct live blocks, both valid for the smaller size.
        unsafe { ptr::copy_nonoverlapping(p.cast::<u8>(), q.cast::<u8>(), old.min(size)) };
        free_block("realloc", p);
    }
    q
}

#[no_mangle]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: forwarded.
        Some(t) => unsafe { realloc(p, t) },
        None => {
            set_errno(libc::ENOMEM);
            null_mut()
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || align % size_of::<*mut c_void>() != 0 {
        return libc::EINVAL;
    }
    // SAFETY: errno is ours; posix_memalign reports through its result.
    let saved = unsafe { *libc::__errno_location() };
    let p = aligned(align, size);
    set_errno(saved);
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller passes a valid out pointer.
    unsafe { *out = p };
    0
}

#[no_mangle]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return null_mut();
    }
    aligned(align, size)
}

#[no_mangle]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return null_mut();
    }
    aligned(align, size)
}

#[no_mangle]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    aligned(PAGE, size)
}

#[no_mangle]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let Some(s) = size.max(1).checked_next_multiple_of(PAGE) else {
        set_errno(libc::ENOMEM);
        return null_mut();
    };
    aligned(PAGE, s)
}

#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    if p.is_null() {
        return 0;
    }
    let Some(g) = globals() else {
        bad_pointer("malloc_usable_size", p)
    };
    g.heap
        .usable_size(p.cast())
        .unwrap_or_else(|e| refused("malloc_usable_size", e))
}

/// Returns cached memory to the heap (`Heap::reclaim`), then the pages of
/// every wholly free area to the OS (`Heap::trim` with `MADV_DONTNEED`);
/// 1 if any memory went back, else 0, as glibc.
#[no_mangle]
pub unsafe extern "C" fn malloc_trim(_pad: usize) -> c_int {
    let Some(g) = globals() else { return 0 };
    g.heap.reclaim();
    c_int::from(g.heap.trim(discard) > 0)
}

/// Gives the pages of an area that `Heap::trim` holds back to the OS.
fn discard(p: *mut u8, len: usize) {
    // SAFETY: the heap holds the area while we discard it; our private
    // anonymous mapping reads as zero afterwards.
    unsafe { libc::madvise(p.cast(), len, libc::MADV_DONTNEED) };
}

/// What `magbuddy_preload_stats` reports (see the module doc).
#[repr(C)]
pub struct MagbuddyPreloadStats {
    /// Handle slots held by threads now.
    pub slots_claimed: usize,
    /// Handle slots in the pool.
    pub slots_total: usize,
    /// The calling thread: 0 no handle yet, 1 has a handle, 2 shared path
    /// (the pool was full), 3 shared path (exited), 4 inside its own claim,
    /// 5 inside a call that uses its handle (from a signal handler).
    pub thread: usize,
}

/// Fills `*out` (see the module doc); allocates nothing, claims nothing
/// (it maps the heap if nothing did yet).
#[no_mangle]
pub unsafe extern "C" fn magbuddy_preload_stats(out: *mut MagbuddyPreloadStats) {
    if out.is_null() {
        return;
    }
    let total = globals().map_or(0, |g| g.heap.cpus());
    let thread = match tls::get() {
        FRESH => 0,
        NO_SLOT => 2,
        EXITED => 3,
        CLAIMING => 4,
        BUSY => 5,
        _ => 1,
    };
    // SAFETY: the caller passes a valid, writable struct.
    unsafe {
        out.write(MagbuddyPreloadStats {
            // Relaxed: a statistic.
            slots_claimed: CLAIMED.load(Ordering::Relaxed),
            slots_total: total,
            thread,
        })
    };
}
