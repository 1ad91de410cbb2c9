//! Identity map above 4 GiB. boot.s maps 0..4 GiB with 2 MiB pages; this adds
//! page directories (again 2 MiB pages: the default `qemu64` CPU has no 1 GiB
//! pages) for RAM beyond 4 GiB, up to [`MAX_GIB`]. The BSP does this before
//! starting the APs, which share the same CR3.

use core::cell::UnsafeCell;

/// Highest physical address mapped, in GiB.
pub const MAX_GIB: usize = 64;
const BOOT_GIB: usize = 4;
/// PRESENT | WRITE | HUGE (2 MiB) for a PD entry; PRESENT | WRITE for a PDPT entry.
const PD_FLAGS: u64 = 0x83;
const PDPT_FLAGS: u64 = 0x3;

#[repr(C, align(4096))]
struct Directories(UnsafeCell<[[u64; 512]; MAX_GIB - BOOT_GIB]>);

// SAFETY: written only by the BSP in `map_identity` before the APs start.
unsafe impl Sync for Directories {}

static HIGH_PDS: Directories = Directories(UnsafeCell::new([[0; 512]; MAX_GIB - BOOT_GIB]));

extern "C" {
    /// The level-3 table built in boot.s; entries 0..4 are already in use.
    static mut boot_pdpt: [u64; 512];
}

/// Identity-maps `[0, end)` with 2 MiB pages. Returns the bytes mapped.
///
/// # Safety
/// BSP only, before any AP starts, with no reference into the new range held.
pub unsafe fn map_identity(end: u64) -> u64 {
    let gib = end.div_ceil(1 << 30) as usize;
    assert!(
        gib <= MAX_GIB,
        "RAM ends at {end:#x}, above the {MAX_GIB} GiB the demo maps"
    );
    // SAFETY: single-threaded boot (see `Directories`); the tables are static
    // and page-aligned, and their physical address equals their virtual one.
    unsafe {
        let pds = &mut *HIGH_PDS.0.get();
        let pdpt = &mut *core::ptr::addr_of_mut!(boot_pdpt);
        for g in BOOT_GIB..gib {
            let pd = &mut pds[g - BOOT_GIB];
            for (i, e) in pd.iter_mut().enumerate() {
                *e = ((g as u64) << 30 | (i as u64) << 21) | PD_FLAGS;
            }
            pdpt[g] = pd.as_ptr() as u64 | PDPT_FLAGS;
        }
        // Entries went from not-present to present: x86 caches no
        // not-present translations, so no TLB flush is needed.
    }
    (gib.max(BOOT_GIB) as u64) << 30
}
