//! The interrupt descriptor table: every CPU exception panics with its name,
//! error code and RIP; the APIC timer calls `crate::ticker::on_tick`; spurious
//! interrupts return at once. No TSS is needed: everything runs at ring 0 on
//! the interrupted stack.

use super::{apic, percpu};
use core::arch::{asm, global_asm};
use core::cell::UnsafeCell;

// Stubs. Exceptions push a dummy error code where the CPU pushes none, then
// their vector, and jump to the common path, which passes the frame pointer to
// `exception_entry` (Rust) with a 16-byte aligned stack; it never returns.
// The timer stub saves the caller-saved registers (the target has no SSE
// state), calls `timer_entry`, restores them and returns with iretq.
global_asm!(
    r#"
.macro exc_noerr n
exc_stub_\n:
    push 0
    push \n
    jmp exc_common
.endm
.macro exc_err n
exc_stub_\n:
    push \n
    jmp exc_common
.endm
.irp n, 0,1,2,3,4,5,6,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31
    exc_noerr \n
.endr
.irp n, 8,10,11,12,13,14,17,21,29,30
    exc_err \n
.endr
exc_common:
    mov rdi, rsp
    and rsp, -16
    call exception_entry
    ud2

.global timer_stub
timer_stub:
    push rax
    push rcx
    push rdx
    push rsi
    push rdi
    push r8
    push r9
    push r10
    push r11
    cld
    call timer_entry
    pop r11
    pop r10
    pop r9
    pop r8
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rax
    iretq

.global spurious_stub
spurious_stub:
    iretq

.section .rodata
.balign 8
.global exc_stub_table
exc_stub_table:
.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad exc_stub_\n
.endr
.text
"#
);

extern "C" {
    static exc_stub_table: [u64; 32];
    fn timer_stub();
    fn spurious_stub();
}

/// What an exception stub leaves on the stack.
#[repr(C)]
struct ExceptionFrame {
    vector: u64,
    error: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
}

const NAMES: [&str; 21] = [
    "divide error",
    "debug",
    "NMI",
    "breakpoint",
    "overflow",
    "bound range",
    "invalid opcode",
    "device not available",
    "double fault",
    "coprocessor overrun",
    "invalid TSS",
    "segment not present",
    "stack fault",
    "general protection",
    "page fault",
    "reserved",
    "x87 FP",
    "alignment check",
    "machine check",
    "SIMD FP",
    "virtualization",
];

#[no_mangle]
extern "C" fn exception_entry(frame: &ExceptionFrame) -> ! {
    let name = NAMES
        .get(frame.vector as usize)
        .copied()
        .unwrap_or("reserved");
    let cr2: u64;
    // mov cr2, ..  ==  cr2 = the faulting address of the last page fault
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack, preserves_flags)) }
    panic!(
        "CPU exception {} ({name}), error {:#x}, RIP {:#x}, RFLAGS {:#x}, CR2 {cr2:#x}",
        frame.vector, frame.error, frame.rip, frame.rflags
    );
}

#[no_mangle]
extern "C" fn timer_entry() {
    percpu::get()
        .ticks
        .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    crate::ticker::on_tick();
    apic::eoi();
}

/// One 16-byte gate descriptor.
#[derive(Clone, Copy)]
#[repr(C)]
struct Gate([u64; 2]);

impl Gate {
    /// A ring-0 interrupt gate (IF cleared on entry) to `handler` in CS 0x08.
    fn new(handler: u64) -> Gate {
        let low = (handler & 0xffff) | 0x08 << 16 | 0x8e << 40 | ((handler >> 16) & 0xffff) << 48;
        Gate([low, handler >> 32])
    }
}

#[repr(C, align(16))]
struct Idt(UnsafeCell<[Gate; 256]>);

// SAFETY: written only by the BSP in `init`, before any other CPU starts or
// any CPU loads it; read-only afterwards.
unsafe impl Sync for Idt {}

static IDT: Idt = Idt(UnsafeCell::new([Gate([0, 0]); 256]));

/// Fills the IDT. BSP only, before [`load`] on any CPU.
pub fn init() {
    // SAFETY: single-threaded boot (see `Idt`'s Sync impl); the stub table is
    // a linker-resolved array of 32 addresses.
    unsafe {
        let idt = &mut *IDT.0.get();
        for (v, &stub) in exc_stub_table.iter().enumerate() {
            idt[v] = Gate::new(stub);
        }
        idt[apic::TIMER_VECTOR as usize] = Gate::new(timer_stub as *const () as u64);
        idt[apic::SPURIOUS_VECTOR as usize] = Gate::new(spurious_stub as *const () as u64);
    }
}

/// Loads the IDT on this CPU.
pub fn load() {
    #[repr(C, packed)]
    struct Pointer {
        limit: u16,
        base: u64,
    }
    let ptr = Pointer {
        limit: (256 * 16 - 1) as u16,
        base: IDT.0.get() as u64,
    };
    // lidt [ptr]  ==  IDTR = { limit, base }
    // SAFETY: IDT is static, filled by `init`, and lives forever.
    unsafe { asm!("lidt [{}]", in(reg) &ptr, options(readonly, nostack, preserves_flags)) }
}
