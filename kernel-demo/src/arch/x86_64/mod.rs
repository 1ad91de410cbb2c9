//! x86_64 support for the demo, one concern per file.

pub mod acpi;
pub mod apic;
pub mod boot;
pub mod cpu;
pub mod exit;
pub mod idt;
pub mod paging;
pub mod percpu;
pub mod port;
pub mod serial;
pub mod smp;
pub mod tsc;
