//! Point-in-time statistics shared by [`crate::Heap`] and
//! [`crate::baseline::SpinHeap`], so reports can print either.

use core::fmt;

/// Number of block orders tracked: order `k` is `PAGE_SIZE << k` bytes.
pub const ORDERS: usize = 32;

/// Metadata bytes broken down by component (names are static strings).
///
/// # Example
///
/// ```
/// use magbuddy::MetadataBytes;
///
/// let mut m = MetadataBytes::default();
/// m.add("page descriptors", 4096);
/// m.add("area words", 64);
/// m.add("page descriptors", 4096); // merged
/// assert_eq!(m.iter().collect::<Vec<_>>(), [("page descriptors", 8192), ("area words", 64)]);
/// assert_eq!(m.total(), 8256);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetadataBytes {
    entries: [(&'static str, usize); 12],
    len: usize,
}

impl MetadataBytes {
    /// Adds `bytes` to component `name` (merging with an existing entry).
    ///
    /// See the example on [`MetadataBytes`].
    pub fn add(&mut self, name: &'static str, bytes: usize) {
        if let Some(e) = self.entries[..self.len].iter_mut().find(|e| e.0 == name) {
            e.1 += bytes;
            return;
        }
        assert!(
            self.len < self.entries.len(),
            "too many metadata components"
        );
        self.entries[self.len] = (name, bytes);
        self.len += 1;
    }

    /// The components in insertion order.
    ///
    /// See the example on [`MetadataBytes`].
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, usize)> + '_ {
        self.entries[..self.len].iter().copied()
    }

    /// Sum over all components.
    ///
    /// See the example on [`MetadataBytes`].
    pub fn total(&self) -> usize {
        self.iter().map(|e| e.1).sum()
    }
}

/// A snapshot of an allocator's state. Exact at a quiet point; under concurrent
/// use each field is read without stopping other CPUs, so fields may disagree.
///
/// # Example
///
/// ```
/// # use magbuddy::{Heap, HeapConfig};
/// # let len = Heap::min_region_len(HeapConfig::new(1));
/// # let mut ram = vec![0u8; len];
/// # // SAFETY: `ram` is ours and outlives the heap's use.
/// # let heap = unsafe { Heap::init(ram.as_mut_ptr(), len, 1) }.unwrap();
/// let s = heap.stats();
/// assert_eq!(s.free_bytes, s.usable_bytes); // nothing allocated
/// assert!(s.metadata_percent() > 0.0); // about 0.4 % of large heaps, more of small ones
/// for (component, bytes) in s.metadata.iter() {
///     println!("{component}: {bytes} B");
/// }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// Bytes of all regions handed to the heap, metadata included.
    pub region_bytes: usize,
    /// Bytes that blocks can be carved from (region minus metadata and gaps).
    pub usable_bytes: usize,
    /// Bytes currently free in the page-level allocator.
    pub free_bytes: usize,
    /// Metadata bytes by component.
    pub metadata: MetadataBytes,
    /// `free_blocks[k]`: maximal free blocks of order `k`.
    pub free_blocks: [u64; ORDERS],
    /// `live_blocks[k]`: allocated blocks of order `k`.
    pub live_blocks: [u64; ORDERS],
}

impl Stats {
    /// Metadata as a fraction of the region, in percent.
    ///
    /// See the example on [`Stats`].
    pub fn metadata_percent(&self) -> f64 {
        if self.region_bytes == 0 {
            return 0.0;
        }
        self.metadata.total() as f64 * 100.0 / self.region_bytes as f64
    }

    /// Largest order with a free block, if any.
    ///
    /// # Example
    ///
    /// ```
    /// # use magbuddy::{Heap, HeapConfig};
    /// # let len = Heap::min_region_len(HeapConfig::new(1));
    /// # let mut ram = vec![0u8; len];
    /// # // SAFETY: `ram` is ours and outlives the heap's use.
    /// # let heap = unsafe { Heap::init(ram.as_mut_ptr(), len, 1) }.unwrap();
    /// // The largest free block is at least one 1 MiB area: order 8 (256 pages).
    /// assert!(heap.stats().largest_free_order().unwrap() >= 8);
    /// ```
    pub fn largest_free_order(&self) -> Option<usize> {
        (0..ORDERS).rev().find(|&k| self.free_blocks[k] > 0)
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "region {} B, usable {} B, free {} B",
            self.region_bytes, self.usable_bytes, self.free_bytes
        )?;
        write!(
            f,
            "metadata {} B ({:.3} %):",
            self.metadata.total(),
            self.metadata_percent()
        )?;
        for (name, bytes) in self.metadata.iter() {
            write!(f, " {name} {bytes} B;")?;
        }
        writeln!(f)?;
        write!(f, "free blocks by order:")?;
        for (k, n) in self.free_blocks.iter().enumerate().filter(|e| *e.1 > 0) {
            write!(f, " {k}:{n}")?;
        }
        writeln!(f)?;
        write!(f, "live blocks by order:")?;
        for (k, n) in self.live_blocks.iter().enumerate().filter(|e| *e.1 > 0) {
            write!(f, " {k}:{n}")?;
        }
        Ok(())
    }
}
