//! PVH boot: the entry assembly (boot.s) and the `hvm_start_info` that QEMU's
//! PVH option ROM hands us in EBX: the RAM map, the ACPI RSDP and the command
//! line (`-append`).

use core::arch::global_asm;

global_asm!(include_str!("boot.s"));

/// `hvm_start_info.magic`.
const START_INFO_MAGIC: u32 = 0x336e_c578;
/// `hvm_memmap_table_entry.type` for ordinary RAM.
const MEMMAP_RAM: u32 = 1;
/// Most RAM ranges we keep.
pub const MAX_RANGES: usize = 16;

/// A physical address range `[start, end)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Range {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

impl Range {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }
}

/// What the kernel keeps from `hvm_start_info` (copied: the original lives in
/// low memory that the AP trampoline's scratch stack may reuse).
pub struct BootInfo {
    /// RAM ranges of type 1, in map order.
    pub ram: [Range; MAX_RANGES],
    /// Entries used in `ram`.
    pub ram_len: usize,
    /// Physical address of the ACPI RSDP (0 if QEMU gave none).
    pub rsdp: u64,
    /// The command line, up to 127 bytes.
    pub cmdline: [u8; 128],
    /// Bytes used in `cmdline`.
    pub cmdline_len: usize,
}

impl BootInfo {
    /// Reads `hvm_start_info` at physical `addr` (identity-mapped).
    ///
    /// # Safety
    /// `addr` must be the start_info pointer QEMU passed in EBX, and low
    /// memory must not have been overwritten since.
    pub unsafe fn read(addr: usize) -> BootInfo {
        // SAFETY: the caller guarantees `addr` is QEMU's start_info; its
        // layout is fixed by the Xen PVH ABI (offsets below).
        let rd32 = |off: usize| unsafe { ((addr + off) as *const u32).read_unaligned() };
        // SAFETY: as above.
        let rd64 = |off: usize| unsafe { ((addr + off) as *const u64).read_unaligned() };
        assert_eq!(rd32(0), START_INFO_MAGIC, "PVH start_info has a bad magic");
        let version = rd32(4);
        let mut info = BootInfo {
            ram: [Range::default(); MAX_RANGES],
            ram_len: 0,
            rsdp: if version >= 1 { rd64(32) } else { 0 },
            cmdline: [0; 128],
            cmdline_len: 0,
        };
        let cmdline = rd64(24) as usize;
        while cmdline != 0 && info.cmdline_len < info.cmdline.len() - 1 {
            // SAFETY: cmdline_paddr points to a NUL-terminated string.
            let b = unsafe { *((cmdline + info.cmdline_len) as *const u8) };
            if b == 0 {
                break;
            }
            info.cmdline[info.cmdline_len] = b;
            info.cmdline_len += 1;
        }
        let (map, entries) = (rd64(40) as usize, if version >= 1 { rd32(48) } else { 0 });
        assert!(
            entries > 0,
            "PVH start_info has no memory map (version {version})"
        );
        for i in 0..entries as usize {
            let e = map + i * 24; // {addr: u64, size: u64, type: u32, reserved: u32}
                                  // SAFETY: entry `i < memmap_entries` of the table QEMU built.
            let (start, len, ty) = unsafe {
                (
                    (e as *const u64).read_unaligned(),
                    ((e + 8) as *const u64).read_unaligned(),
                    ((e + 16) as *const u32).read_unaligned(),
                )
            };
            if ty == MEMMAP_RAM && len > 0 {
                assert!(
                    info.ram_len < MAX_RANGES,
                    "more than {MAX_RANGES} RAM ranges"
                );
                info.ram[info.ram_len] = Range {
                    start,
                    end: start + len,
                };
                info.ram_len += 1;
            }
        }
        info
    }

    /// The RAM ranges.
    pub fn ram(&self) -> &[Range] {
        &self.ram[..self.ram_len]
    }

    /// The command line as text.
    pub fn cmdline(&self) -> &str {
        core::str::from_utf8(&self.cmdline[..self.cmdline_len]).unwrap_or("")
    }

    /// The value of `key=value` on the command line, if present.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.cmdline()
            .split(' ')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }
}

extern "C" {
    static __kernel_start: u8;
    static __kernel_end: u8;
}

/// Physical `[start, end)` of the loaded kernel image (text, data, bss).
pub fn kernel_image() -> Range {
    // SAFETY: linker-script symbols; only their addresses are taken.
    let (s, e) = unsafe { (&__kernel_start as *const u8, &__kernel_end as *const u8) };
    Range {
        start: s as u64,
        end: e as u64,
    }
}
