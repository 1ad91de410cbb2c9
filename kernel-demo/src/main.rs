//! kernel-demo: boots on QEMU x86_64 (PVH), starts every CPU in the ACPI
//! MADT, hands the RAM above the kernel to the allocators under test (less
//! the demo's own `#[global_allocator]`, see `global.rs`) and runs the seed's
//! workloads on every CPU at once, then an `alloc` phase. See README.md.
#![no_std]
#![no_main]
#![allow(bad_asm_style)] // boot.s switches to AT&T for far jumps (see the notes)
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
// Errors carry a fixed-size message (the allocators under test must not
// serve the demo itself, and only the `alloc` phase uses the global heap);
// they are cold.
#![allow(clippy::result_large_err)]

extern crate alloc;

mod adapters;
mod arch;
#[cfg(feature = "bringup")]
mod bringup;
mod check;
mod demo;
mod early;
mod global;
mod irqcost;
mod kalloc;
mod report;
mod sync;
mod ticker;
mod workload;

use arch::boot::{BootInfo, Range};
use arch::{acpi, apic, cpu, exit, idt, paging, percpu, smp, tsc};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use demo::Config;

/// Timer interrupts per second on each CPU.
const TIMER_HZ: u32 = 250;

/// Published by the BSP before it lets the APs run the demo.
static CONFIG: AtomicPtr<Config> = AtomicPtr::new(core::ptr::null_mut());
static GO: AtomicBool = AtomicBool::new(false);
static FINISHED: AtomicUsize = AtomicUsize::new(0);

/// The BSP's Rust entry (from boot.s) with the PVH start_info address.
#[no_mangle]
extern "C" fn kmain(start_info: u32) -> ! {
    percpu::install(0, apic::id());
    // SAFETY: boot.s passes EBX from QEMU's PVH entry; nothing wrote low
    // memory yet.
    let info = unsafe { BootInfo::read(start_info as usize) };
    println!(
        "kernel-demo: booted via PVH, cmdline \"{}\"",
        info.cmdline()
    );
    let source = tsc::calibrate();
    println!("TSC: {} MHz ({:?})", tsc::hz() / 1_000_000, source);
    idt::init();
    idt::load();
    apic::disable_pic();
    apic::enable();
    apic::calibrate_timer(TIMER_HZ);

    let ram_end = info.ram().iter().map(|r| r.end).max().unwrap_or(0);
    // SAFETY: BSP only, before the APs start.
    let mapped = unsafe { paging::map_identity(ram_end) };
    for r in info.ram() {
        println!(
            "RAM {:#012x}..{:#012x} ({} MiB)",
            r.start,
            r.end,
            r.len() >> 20
        );
    }
    println!("identity map: 0..{} GiB with 2 MiB pages", mapped >> 30);

    // SAFETY: the RSDP comes from QEMU's start_info; ACPI tables are in
    // identity-mapped low RAM.
    let cpus = unsafe { acpi::madt_cpus(info.rsdp) };
    println!(
        "ACPI MADT: {} CPUs, APIC IDs {:?} (fw_cfg says {}); BSP APIC ID {}",
        cpus.len,
        &cpus.apic_ids[..cpus.len],
        acpi::fw_cfg_cpu_count(),
        apic::id()
    );

    let config = setup(&info, cpus.len);
    let (n, ticks) = smp::start_aps(&cpus);
    assert_eq!(n, cpus.len, "not every MADT CPU came up");
    println!(
        "SMP: {n} CPUs online in {} us",
        tsc::ticks_to_ns(ticks) / 1000
    );
    config.n = n;
    CONFIG.store(config, Ordering::Release);
    // Release: the APs' Acquire load of GO sees the config.
    GO.store(true, Ordering::Release);
    let mode = info.arg("tcg").unwrap_or("mode not given (pass tcg=...)");
    run_all(0, mode);
    sync::wait_until("APs to finish", 60_000, || {
        FINISHED.load(Ordering::Acquire) == n - 1
    });
    println!("PASS");
    exit::exit_qemu(exit::SUCCESS)
}

/// Carves the demo's own memory, then computes the heap ranges.
fn setup(info: &BootInfo, ncpus: usize) -> &'static mut Config {
    let image = arch::boot::kernel_image();
    let home = *info
        .ram()
        .iter()
        .find(|r| r.start <= image.end && image.end < r.end)
        .expect("kernel not in RAM");
    early::init(image.end, home);
    // Heap candidates: RAM ranges (or parts) above the kernel image. The
    // shadow covers all of them, so it is sized before early memory closes.
    let mut cand = [Range::default(); 16];
    let mut nc = 0;
    for r in info.ram().iter().filter(|r| r.end > image.end) {
        cand[nc] = Range {
            start: r.start.max(image.end),
            end: r.end,
        };
        nc += 1;
    }
    let shadow = early::leak(check::Shadow::new(&cand[..nc]));
    let config = early::leak(Config {
        n: ncpus,
        ranges: [Range::default(); 16],
        nranges: 0,
        shadow,
        slots: [const { AtomicPtr::new(core::ptr::null_mut()) }; acpi::MAX_CPUS],
        scale: info.arg("scale").and_then(|s| s.parse().ok()).unwrap_or(1),
        timer: info.arg("timer") != Some("off"),
        inject: info
            .arg("inject")
            .map_or(demo::Inject::None, demo::Inject::parse),
        reps: info
            .arg("reps")
            .and_then(|s| s.parse().ok())
            .unwrap_or(3)
            .max(1),
    });
    for slot in &config.slots[..ncpus] {
        // SAFETY: an all-zero Slot is an empty slot.
        let s = unsafe { early::zeroed_slice::<workload::Slot>(workload::LIVE_MAX) };
        slot.store(s.as_mut_ptr(), Ordering::Relaxed);
    }
    let heap_start = early::close();
    for c in &cand[..nc] {
        let r = Range {
            start: c.start.max(heap_start),
            end: c.end & !4095,
        };
        if r.end > r.start + (1 << 20) {
            config.ranges[config.nranges] = r;
            config.nranges += 1;
        }
    }
    // The demo's own #[global_allocator] takes its RAM first.
    let g = global::init(&mut config.ranges[..config.nranges], ncpus);
    println!(
        "global heap (#[global_allocator]) {:#012x}..{:#012x} ({} MiB), {ncpus} CPU slots",
        g.start,
        g.end,
        g.len() >> 20
    );
    println!(
        "early memory (shadow bitmaps, work arrays) {:#x}..{heap_start:#x}; scale {}, timed reps {} (best reported)",
        image.end, config.scale, config.reps
    );
    let t0 = cpu::rdtsc();
    for r in config.ranges() {
        println!(
            "heap range {:#012x}..{:#012x} ({} MiB)",
            r.start,
            r.end,
            r.len() >> 20
        );
        // Touch every page once, so the host backs all guest RAM before any
        // timing (QEMU allocates host pages on first write): the allocator
        // measured second must not get pre-faulted memory the first lacked.
        for page in (r.start..r.end).step_by(4096) {
            // SAFETY: heap RAM, identity-mapped, not yet handed to anyone.
            unsafe { (page as *mut u8).write_volatile(0) };
        }
    }
    println!(
        "heap RAM pre-touched in {} ms",
        tsc::ticks_to_ns(cpu::rdtsc() - t0) / 1_000_000
    );
    config
}

/// An AP's Rust entry (from boot.s) with its dense index.
#[no_mangle]
extern "C" fn ap_main(index: usize) -> ! {
    percpu::install(index, apic::id());
    idt::load();
    apic::enable();
    smp::report_online();
    sync::wait_until("the BSP's go", 60_000, || GO.load(Ordering::Acquire));
    run_all(index, "");
    // Release: pairs with the BSP's Acquire wait; our output is done.
    FINISHED.fetch_add(1, Ordering::Release);
    apic::stop_timer();
    cpu::halt_forever()
}

/// The demo proper, on every CPU.
fn run_all(c: usize, mode: &str) {
    // SAFETY: published (Release) before GO; never changed afterwards.
    let cfg: &Config = unsafe { &*CONFIG.load(Ordering::Acquire) };
    if cfg.timer {
        apic::start_timer();
    }
    // SAFETY: the IDT is loaded on this CPU and the timer has a handler.
    unsafe { cpu::irq_enable() };
    if c == cfg.n - 1 {
        cfg.inject.fire(c);
    }
    let mag = demo::run::<adapters::Mag>(cfg, c, 0x5eed_0001);
    let irq_cost = irqcost::run(cfg, c);
    let spin = demo::run::<adapters::Spin>(cfg, c, 0x5eed_0002);
    #[cfg(feature = "bringup")]
    let bringup = demo::run::<bringup::Bringup>(cfg, c, 0x5eed_0003);
    let global = global::run(cfg, c);
    let _ = cpu::irq_save();
    apic::stop_timer();
    if let (Some(mag), Some(spin)) = (mag, spin) {
        mag.print(mode);
        spin.print(mode);
        #[cfg(feature = "bringup")]
        if let Some(b) = bringup {
            b.print(mode);
        }
        report::print_ratio(&mag, &spin);
        if let Some(i) = irq_cost {
            i.print(mode);
        }
        let (ticks, allocs, fails, skips) = demo::timer_summary(cfg.n);
        println!();
        println!("timer interrupts (all phases): {ticks} ticks, {allocs} shared-path alloc/free pairs, {fails} failed (heap full), {skips} skipped (CPU-time budget)");
        if let Some(g) = global {
            g.print();
        }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let _ = cpu::irq_save();
    arch::serial::print_panic(format_args!(
        "\nPANIC on CPU {}: {}\n",
        percpu::index(),
        info
    ));
    exit::exit_qemu(exit::FAILURE)
}
