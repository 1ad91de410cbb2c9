//! Whole-heap inspection: [`Heap::stats`] and [`Heap::validate`].

use core::fmt;
use core::mem::size_of;

use crossbeam_utils::CachePadded;

use super::handle::CpuSlot;
use super::Heap;
use crate::buddy::{bits, AreaWord, ChunkWord};
use crate::magazine::Magazine;
use crate::region::{PageDesc, Region};
use crate::slab::{self, SLAB_ORDER};
use crate::{MetadataBytes, Stats, ORDERS, PAGE_SHIFT, PAGE_SIZE};

/// The first inconsistency [`Heap::validate`] found.
///
/// See the example on [`Heap::validate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValidateError {
    /// What is wrong.
    pub what: &'static str,
    /// Address of the page, block or area concerned.
    pub addr: usize,
}

impl fmt::Display for ValidateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "heap inconsistent at {:#x}: {}", self.addr, self.what)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ValidateError {}

fn fail<T>(what: &'static str, addr: usize) -> Result<T, ValidateError> {
    Err(ValidateError { what, addr })
}

impl Heap {
    /// A snapshot of the heap. Exact at a quiet point; while other CPUs work,
    /// each area word and descriptor is read once without stopping them.
    ///
    /// # Example
    ///
    /// ```
    /// # use magbuddy::{Heap, HeapConfig};
    /// # let len = Heap::min_region_len(HeapConfig::new(1));
    /// # let mut ram = vec![0u8; len];
    /// # // SAFETY: `ram` is ours and outlives the heap's use.
    /// # let heap = unsafe { Heap::init(ram.as_mut_ptr(), len, 1) }.unwrap();
    /// let p = heap.alloc(1 << 20).unwrap(); // one 1 MiB block
    /// let s = heap.stats();
    /// assert_eq!(s.live_blocks[8], 1); // order 8: 256 pages
    /// assert!(s.free_bytes <= s.usable_bytes - (1 << 20));
    /// println!("{s}"); // free bytes, metadata by component, blocks by order
    /// # // SAFETY: `p` came from this heap and is not used afterwards.
    /// # unsafe { heap.free(p.as_ptr()) };
    /// ```
    pub fn stats(&self) -> Stats {
        let g = self.g;
        let mut s = Stats::default();
        let mut meta = MetadataBytes::default();
        meta.add("heap header", size_of::<Heap>());
        meta.add("cpu slots", self.cpus * size_of::<CachePadded<CpuSlot>>());
        meta.add("magazines", self.mags.len() * size_of::<Magazine>());
        for reg in self.regions() {
            s.region_bytes += reg.end - reg.start;
            s.usable_bytes += reg.usable_hi - reg.usable_lo;
            for (name, bytes) in reg.metadata(size_of::<slab::SlabDesc>()) {
                meta.add(name, bytes);
            }
            let mut free_run = 0usize; // consecutive wholly free areas
            for a in 0..reg.areas {
                let area = reg.area(a);
                let top = AreaWord(area.load_top());
                s.free_bytes += (top.free_pages(g) as usize) << PAGE_SHIFT;
                if top.0 == 0 {
                    free_run += 1;
                    continue;
                }
                count_area_runs(&mut s, reg, a - free_run, free_run);
                free_run = 0;
                count_partial_area(&mut s, reg, a, top);
            }
            count_area_runs(&mut s, reg, reg.areas - free_run, free_run);
            for p in 0..reg.pages() {
                if let Some(k) = reg.desc_snapshot(p).order() {
                    s.live_blocks[k as usize] += 1;
                }
            }
        }
        let other =
            s.region_bytes - s.usable_bytes - meta.total().min(s.region_bytes - s.usable_bytes);
        meta.add("alignment padding", other);
        s.metadata = meta;
        s
    }

    /// Walks all metadata and reports the first inconsistency. Call it at a
    /// quiet point (no operation in flight): it checks that every word is well
    /// formed, that each reservation count equals the pages allocated in its
    /// chunk (invariant R with nothing in flight), that pages outside the
    /// usable range stay allocated, and that page descriptors and tree blocks
    /// match one to one.
    ///
    /// # Example
    ///
    /// ```
    /// # use magbuddy::{Heap, HeapConfig};
    /// # let len = Heap::min_region_len(HeapConfig::new(1));
    /// # let mut ram = vec![0u8; len];
    /// # // SAFETY: `ram` is ours and outlives the heap's use.
    /// # let heap = unsafe { Heap::init(ram.as_mut_ptr(), len, 1) }.unwrap();
    /// let p = heap.alloc(5000).unwrap();
    /// heap.validate().unwrap(); // at a quiet point: nothing in flight
    /// # // SAFETY: `p` came from this heap and is not used afterwards.
    /// # unsafe { heap.free(p.as_ptr()) };
    /// ```
    pub fn validate(&self) -> Result<(), ValidateError> {
        let g = self.g;
        let h = g.area_order();
        for reg in self.regions() {
            let area_bytes = PAGE_SIZE << h;
            for a in 0..reg.areas {
                let area = reg.area(a);
                let at = reg.base + a * area_bytes;
                let top = AreaWord(area.load_top());
                top.check(g).or_else(|w| fail(w, at))?;
                let covered = top.covered_chunks(g);
                for j in 0..g.chunks_per_area() {
                    let cw = ChunkWord(area.load_chunk(j));
                    let chunk_at = at + ((j as usize) << (g.chunk_order() + PAGE_SHIFT));
                    cw.check(g).or_else(|w| fail(w, chunk_at))?;
                    if covered & (1 << j) != 0 && cw.0 != 0 {
                        fail("chunk holds blocks under an allocated top node", chunk_at)?;
                    }
                    let allocated = g.chunk_pages() - cw.free_pages(g);
                    if top.used(g, j) != allocated {
                        fail(
                            "reservation count differs from the chunk's allocated pages",
                            chunk_at,
                        )?;
                    }
                }
            }
            self.validate_blocks(reg)?;
        }
        self.validate_caches()
    }

    /// Every round in every magazine (CPU caches and depot alike: all are in
    /// the pool) is a free object of a live slab that was carved, carries
    /// its free tag and is not on the slab's lists (its bit clear; in
    /// `checked` builds, where magazine rounds count as free, its bit set),
    /// or the head of a cached block that the tree holds as allocated.
    fn validate_caches(&self) -> Result<(), ValidateError> {
        let depot = self.depot();
        for m in depot.pool {
            let mut bad = None;
            m.for_each_round(|p| {
                if bad.is_none() {
                    bad = self.validate_round(p).err();
                }
            });
            if let Some(e) = bad {
                return Err(e);
            }
        }
        Ok(())
    }

    fn validate_round(&self, p: usize) -> Result<(), ValidateError> {
        let Some(reg) = self
            .region_of(p)
            .filter(|r| p >= r.usable_lo && p < r.usable_hi)
        else {
            return fail("magazine round outside the heap", p);
        };
        let page = reg.page_of(p);
        let desc = reg.desc_snapshot(page);
        if let Some(c) = desc.slab_class() {
            let (s, base) = slab::slab_at(reg, page);
            let i = slab::SlabDesc::index_of(base, c, p);
            if i >= s.progress().carved() {
                fail("magazine round is not a carved object of its slab", p)?;
            }
            // SAFETY: an object of a live slab; quiet point.
            let marked = unsafe { s.is_free(base, c, p) };
            if marked != slab::MARK_AT_USER {
                fail("object in a magazine is also free in its slab", p)?;
            }
            // SAFETY: as above.
            let tag = unsafe { slab::tag_word(p) }.load(crate::sync::Ordering::Relaxed);
            if !slab::MARK_AT_USER && tag != slab::FREE_TAG {
                fail("object in a magazine carries no free tag", p)?;
            }
            return Ok(());
        }
        let h = self.g.area_order();
        match desc.order() {
            Some(k)
                if desc.is_cached()
                    && reg.area(page >> h).block_at((page & ((1 << h) - 1)) as u32)
                        == Some((k, (page & ((1 << h) - 1)) as u32)) =>
            {
                Ok(())
            }
            _ => fail(
                "magazine round is neither a cached object nor a cached block",
                p,
            ),
        }
    }

    /// Every page: usable pages are covered by a block iff a descriptor says
    /// so; unusable ones are always covered.
    fn validate_blocks(&self, reg: &Region) -> Result<(), ValidateError> {
        let h = self.g.area_order();
        let mut p = 0;
        while p < reg.pages() {
            let addr = reg.addr_of(p);
            let desc = reg.desc_snapshot(p);
            let block = reg.area(p >> h).block_at((p & ((1 << h) - 1)) as u32);
            if !reg.usable(p) {
                if block.is_none() {
                    fail("page outside the usable range is not reserved", addr)?;
                }
                if desc != PageDesc::NONE {
                    fail("descriptor set outside the usable range", addr)?;
                }
                p += 1;
                continue;
            }
            if let Some(c) = desc.slab_class() {
                self.validate_slab(reg, p, c)?;
                p += 1 << SLAB_ORDER;
                continue;
            }
            let Some(k) = desc.order() else {
                match block {
                    None => p += 1,
                    Some((k, first)) if k < h => {
                        let start = (p & !((1 << h) - 1)) + first as usize;
                        if start == p || reg.usable(start) {
                            fail("allocated block has no descriptor", reg.addr_of(start))?;
                        }
                        // Reserved block straddling the usable edge.
                        fail("reserved block reaches into the usable range", addr)?;
                    }
                    Some(_) => fail("allocated area has no descriptor", addr)?,
                }
                continue;
            };
            let pages = 1usize << k;
            if addr % (pages << PAGE_SHIFT) != 0 || p + pages > reg.pages() {
                fail("descriptor names a misaligned or oversized block", addr)?;
            }
            if k <= h {
                let off = (p & ((1 << h) - 1)) as u32;
                if block != Some((k, off)) {
                    fail("descriptor and tree disagree about a block", addr)?;
                }
            } else {
                for i in 0..pages >> h {
                    // Exactly the root bit: the area is held as one block.
                    if reg.area((p >> h) + i).load_top() != 1 {
                        fail(
                            "area of a multi-area block is not held whole",
                            reg.addr_of(p + (i << h)),
                        )?;
                    }
                }
            }
            if (p + 1..p + pages).any(|q| reg.desc_snapshot(q) != PageDesc::NONE) {
                fail("descriptor inside a live block", addr)?;
            }
            p += pages;
        }
        Ok(())
    }
}

impl Heap {
    fn validate_slab(&self, reg: &Region, p: usize, c: usize) -> Result<(), ValidateError> {
        let h = self.g.area_order();
        let addr = reg.addr_of(p);
        // SAFETY: validate runs at a quiet point (documented).
        let local = unsafe { slab::desc_at(reg, p).local() };
        // Pages the carving reached are open, the others not yet.
        let open = slab::opened(c as u32, local.bump());
        let page_ok = |k: usize| reg.desc_snapshot(p + k) == PageDesc::slab_page(c, k < open);
        if p % (1 << SLAB_ORDER) != 0 || !(0..1 << SLAB_ORDER).all(page_ok) {
            fail("slab pages disagree", addr)?;
        }
        if reg.area(p >> h).block_at((p & ((1 << h) - 1)) as u32)
            != Some((SLAB_ORDER, (p & ((1 << h) - 1)) as u32))
        {
            fail("slab is not an allocated block of the tree", addr)?;
        }
        // SAFETY: validate runs at a quiet point (documented).
        unsafe { slab::desc_at(reg, p).check(addr, c, self.cpus) }.or_else(|w| fail(w, addr))
    }
}

/// Adds `n` wholly free areas starting at `a` as maximal aligned blocks.
fn count_area_runs(s: &mut Stats, reg: &Region, mut a: usize, n: usize) {
    let h = reg.g.area_order() as usize;
    let end = a + n;
    while a < end {
        let global = reg.first_area + a;
        let mut m = 0;
        while global % (2 << m) == 0 && a + (2 << m) <= end && h + m + 1 < ORDERS {
            m += 1;
        }
        s.free_blocks[h + m] += 1;
        a += 1 << m;
    }
}

/// Adds the maximal free blocks inside a partly used area.
fn count_partial_area(s: &mut Stats, reg: &Region, a: usize, top: AreaWord) {
    let g = reg.g;
    let t = g.top_levels();
    let tree = top.0 & bits::low_mask((1 << t) - 1);
    let busy = top.busy_chunks(g);
    let h = g.area_order() as usize;
    // Top nodes (levels 1..t) that are free while their parent is not.
    let mut parent_free = bits::free_at(tree, t, busy, 0);
    for d in 1..t {
        let free = bits::free_at(tree, t, busy, d);
        s.free_blocks[h - d as usize] += (free & !bits::spread(parent_free)).count_ones() as u64;
        parent_free = free;
    }
    // Chunks: idle and uncovered ones are free whole unless their top leaf is.
    let idle = !busy & !top.covered_chunks(g) & bits::low_mask(g.chunks_per_area());
    let c = g.chunk_order() as usize;
    s.free_blocks[c] += (idle & !bits::spread(parent_free)).count_ones() as u64;
    for j in 0..g.chunks_per_area() {
        if busy & (1 << j) == 0 {
            continue;
        }
        let cw = reg.area(a).load_chunk(j);
        let mut parent_free = 0;
        for d in 1..g.chunk_levels() {
            let free = bits::free_at(cw, g.chunk_levels(), 0, d);
            s.free_blocks[c - d as usize] +=
                (free & !bits::spread(parent_free)).count_ones() as u64;
            parent_free = free;
        }
    }
}
