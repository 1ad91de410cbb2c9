//! ACPI: the MADT's list of local APIC IDs (the real ones, which need not be
//! contiguous, e.g. `-smp 6,sockets=2,cores=3` gives 0,1,2,4,5,6), plus
//! QEMU's fw_cfg CPU count as a cross-check.

use super::port::{inb, outw};

/// Most CPUs the demo starts.
pub const MAX_CPUS: usize = 16;

/// The CPUs listed in the MADT, in table order.
pub struct Cpus {
    /// Local APIC IDs.
    pub apic_ids: [u32; MAX_CPUS],
    /// Entries used.
    pub len: usize,
}

/// Reads a `T` at physical `addr`.
///
/// # Safety
/// `addr` must be identity-mapped readable memory holding a `T`.
unsafe fn rd<T: Copy>(addr: u64) -> T {
    // SAFETY: forwarded to the caller.
    unsafe { (addr as *const T).read_unaligned() }
}

/// True if the `len` bytes at `addr` sum to 0 mod 256 (ACPI checksum).
///
/// # Safety
/// As [`rd`], for `len` bytes.
unsafe fn checksum_ok(addr: u64, len: u32) -> bool {
    // SAFETY: forwarded to the caller.
    (0..len as u64).fold(0u8, |s, i| s.wrapping_add(unsafe { rd::<u8>(addr + i) })) == 0
}

/// Finds the table with `sig` through the RSDT (or XSDT for revision >= 2).
///
/// # Safety
/// `rsdp` must be the physical address of a valid RSDP, identity-mapped.
unsafe fn find_table(rsdp: u64, sig: &[u8; 4]) -> Option<u64> {
    // SAFETY: the caller guarantees the RSDP; the tables it points to are in
    // low RAM, which the boot page tables identity-map.
    unsafe {
        assert!(
            rd::<[u8; 8]>(rsdp) == *b"RSD PTR ",
            "no RSDP signature at {rsdp:#x}"
        );
        let (root, entry_size) = if rd::<u8>(rsdp + 15) >= 2 && rd::<u64>(rsdp + 24) != 0 {
            (rd::<u64>(rsdp + 24), 8)
        } else {
            (rd::<u32>(rsdp + 16) as u64, 4)
        };
        let len = rd::<u32>(root + 4);
        assert!(checksum_ok(root, len), "RSDT/XSDT checksum is wrong");
        let entries = (len as u64 - 36) / entry_size;
        (0..entries)
            .map(|i| match entry_size {
                8 => rd::<u64>(root + 36 + i * 8),
                _ => rd::<u32>(root + 36 + i * 4) as u64,
            })
            .find(|&t| rd::<[u8; 4]>(t) == *sig)
    }
}

/// Lists the usable CPUs of the MADT (flags bit 0 "enabled", or bit 1
/// "online capable").
///
/// # Safety
/// As [`find_table`].
pub unsafe fn madt_cpus(rsdp: u64) -> Cpus {
    // SAFETY: forwarded to the caller.
    let madt = unsafe { find_table(rsdp, b"APIC") }.expect("ACPI has no MADT");
    let mut cpus = Cpus {
        apic_ids: [0; MAX_CPUS],
        len: 0,
    };
    // SAFETY: the MADT is a valid ACPI table found above.
    unsafe {
        let len = rd::<u32>(madt + 4) as u64;
        assert!(checksum_ok(madt, len as u32), "MADT checksum is wrong");
        let mut off = 44; // header (36) + local APIC address (4) + flags (4)
        while off + 2 <= len {
            let (ty, elen) = (rd::<u8>(madt + off), rd::<u8>(madt + off + 1) as u64);
            assert!(elen >= 2, "MADT entry of length {elen} at offset {off}");
            let usable = |flags: u32| flags & 0b11 != 0;
            let id = match ty {
                0 if usable(rd::<u32>(madt + off + 4)) => Some(rd::<u8>(madt + off + 3) as u32),
                9 if usable(rd::<u32>(madt + off + 8)) => Some(rd::<u32>(madt + off + 4)),
                _ => None,
            };
            if let Some(id) = id {
                assert!(
                    id < 255,
                    "APIC ID {id} needs x2APIC, which the demo does not drive"
                );
                assert!(cpus.len < MAX_CPUS, "more than {MAX_CPUS} CPUs in the MADT");
                cpus.apic_ids[cpus.len] = id;
                cpus.len += 1;
            }
            off += elen;
        }
    }
    cpus
}

/// QEMU's fw_cfg `FW_CFG_NB_CPUS` (key 0x05): the CPU count, as a cross-check.
pub fn fw_cfg_cpu_count() -> u16 {
    // SAFETY: 0x510/0x511 are QEMU's fw_cfg selector and data ports; reading
    // a key has no other effect.
    unsafe {
        outw(0x510, 0x05);
        u16::from_le_bytes([inb(0x511), inb(0x511)])
    }
}
