//! Statistics and the full consistency walk of the baseline (both under the
//! lock; the walk is O(pages) and meant for quiet points).

use super::buddy::{Kind, NIL};
use super::slab::{GEOMETRY, NCLASSES};
use super::State;
use crate::{MetadataBytes, Stats, ORDERS, PAGE_SIZE};

/// What the descriptor walk counted, to compare with lists and counters.
#[derive(Default)]
struct Census {
    free: [u64; ORDERS],
    live: [u64; ORDERS],
    /// Slabs per class with `0 < inuse < objects`.
    partial: [u64; NCLASSES],
    /// Empty slabs per class.
    empty: [u64; NCLASSES],
    bitmap_bytes: usize,
}

impl State {
    /// Counters as [`Stats`].
    pub(super) fn stats(&self) -> Stats {
        let usable: usize = self
            .pages
            .regions()
            .iter()
            .map(|r| r.npages as usize * PAGE_SIZE)
            .sum();
        let mut metadata = MetadataBytes::default();
        metadata.add("heap header", self.header_bytes);
        metadata.add("page descriptors", self.desc_bytes);
        metadata.add(
            "alignment gaps",
            self.region_bytes - usable - self.header_bytes - self.desc_bytes,
        );
        metadata.add("slab bitmaps", self.slabs.bitmap_bytes);
        Stats {
            region_bytes: self.region_bytes,
            usable_bytes: usable,
            free_bytes: self.pages.free_pages * PAGE_SIZE,
            metadata,
            free_blocks: self.pages.free_count,
            live_blocks: self.pages.live_count,
        }
    }

    /// See `SpinHeap::validate`.
    pub(super) fn validate(&mut self) -> Result<(), &'static str> {
        let census = self.walk_descriptors()?;
        self.check_free_lists(&census)?;
        self.check_slab_lists(&census)?;
        if census.live != self.pages.live_count {
            return Err("live block counts differ from the descriptors");
        }
        if census.bitmap_bytes != self.slabs.bitmap_bytes {
            return Err("slab bitmap byte count differs from the live slabs");
        }
        Ok(())
    }

    /// Checks that each region's descriptors tile it with aligned, coalesced
    /// blocks and that every slab's bitmap matches its count.
    fn walk_descriptors(&mut self) -> Result<Census, &'static str> {
        let mut census = Census::default();
        for ri in 0..self.pages.regions().len() {
            let r = self.pages.regions()[ri];
            let mut i = 0u32;
            while i < r.npages {
                let idx = r.first + i;
                let d = self.pages.desc(idx);
                let (kind, order) = (d.kind, d.order as usize);
                if kind == Kind::Tail {
                    return Err("a page outside every block (tail without head)");
                }
                let addr = r.base + ((i as usize) * PAGE_SIZE);
                if order >= ORDERS || addr % (PAGE_SIZE << order) != 0 {
                    return Err("block misaligned for its order");
                }
                if i as usize + (1 << order) > r.npages as usize {
                    return Err("block runs past the end of its region");
                }
                for j in 1..1u32 << order {
                    if self.pages.desc(idx + j).kind != Kind::Tail {
                        return Err("block overlaps another block's head");
                    }
                }
                match kind {
                    Kind::Free => {
                        census.free[order] += 1;
                        self.check_coalesced(ri, addr, order)?;
                    }
                    Kind::Alloc => census.live[order] += 1,
                    Kind::Slab => {
                        census.live[order] += 1;
                        self.check_slab(idx, order, &mut census)?;
                    }
                    Kind::Tail => unreachable!(),
                }
                i += 1 << order;
            }
        }
        Ok(census)
    }

    /// A free block's buddy must not be a free block of the same order.
    fn check_coalesced(
        &mut self,
        ri: usize,
        addr: usize,
        order: usize,
    ) -> Result<(), &'static str> {
        if order + 1 >= ORDERS {
            return Ok(());
        }
        let r = self.pages.regions()[ri];
        let buddy = addr ^ (PAGE_SIZE << order);
        if buddy < r.base || buddy >= r.end() {
            return Ok(());
        }
        let b = self
            .pages
            .desc(r.first + ((buddy - r.base) / PAGE_SIZE) as u32);
        if b.kind == Kind::Free && b.order as usize == order {
            return Err("two free buddies were not merged");
        }
        Ok(())
    }

    fn check_slab(
        &mut self,
        idx: u32,
        order: usize,
        census: &mut Census,
    ) -> Result<(), &'static str> {
        let base = self.pages.ptr_of(idx);
        let d = self.pages.desc(idx);
        let c = d.class as usize;
        if c >= NCLASSES {
            return Err("slab with an unknown class");
        }
        let g = GEOMETRY[c];
        if g.order != order {
            return Err("slab of the wrong order for its class");
        }
        let ones = if g.words == 0 {
            let high = if g.cap < 64 { !0u64 << g.cap } else { 0 };
            if d.bits & high != high {
                return Err("slab bitmap lost its bits above the capacity");
            }
            (d.bits.count_ones() - high.count_ones()) as usize
        } else {
            let mut ones = 0;
            for w in 0..g.words {
                // SAFETY: `idx` heads a slab of class `c` with an in-page
                // bitmap of `g.words` words at its (page-aligned) start,
                // owned by the heap; we hold the lock (`&mut self`).
                let word = unsafe { base.cast::<u64>().add(w).read() };
                ones += word.count_ones() as usize;
                for r in (w * 64..(w + 1) * 64).filter(|&r| r < g.reserved) {
                    if word >> (r % 64) & 1 == 0 {
                        return Err("slab bitmap lost a reserved object's bit");
                    }
                }
            }
            census.bitmap_bytes += g.reserved * g.size;
            ones - g.reserved
        };
        let objects = g.cap - g.reserved;
        let inuse = d.inuse as usize;
        if ones != inuse || inuse > objects {
            return Err("slab in-use count differs from its bitmap");
        }
        if inuse == 0 {
            census.empty[c] += 1;
        } else if inuse < objects {
            census.partial[c] += 1;
        }
        Ok(())
    }

    fn check_free_lists(&mut self, census: &Census) -> Result<(), &'static str> {
        let mut pages = 0usize;
        for k in 0..ORDERS {
            let mut prev = NIL;
            let mut idx = self.pages.list_head(k);
            let mut n = 0u64;
            while idx != NIL {
                if idx >= self.pages.total_pages || n > self.pages.total_pages as u64 {
                    return Err("free list leaves the heap or cycles");
                }
                let d = self.pages.desc(idx);
                if d.kind != Kind::Free || d.order as usize != k {
                    return Err("free list holds a block that is not free of its order");
                }
                if d.prev != prev {
                    return Err("free list back link is wrong");
                }
                prev = idx;
                idx = d.next;
                n += 1;
            }
            if n != self.pages.free_count[k] || n != census.free[k] {
                return Err("free list length differs from counters or descriptors");
            }
            if (self.pages.nonempty() >> k & 1 == 1) != (n > 0) {
                return Err("non-empty order mask is stale");
            }
            pages += (n as usize) << k;
        }
        if pages != self.pages.free_pages {
            return Err("free page counter differs from the free lists");
        }
        Ok(())
    }

    fn check_slab_lists(&mut self, census: &Census) -> Result<(), &'static str> {
        for (c, g) in GEOMETRY.iter().enumerate() {
            let objects = (g.cap - g.reserved) as u16;
            let mut prev = NIL;
            let mut idx = self.slabs.partial(c);
            let mut n = 0u64;
            while idx != NIL {
                if idx >= self.pages.total_pages || n > self.pages.total_pages as u64 {
                    return Err("partial slab list leaves the heap or cycles");
                }
                let d = self.pages.desc(idx);
                if d.kind != Kind::Slab || d.class as usize != c {
                    return Err("partial slab list holds a block that is not a slab of its class");
                }
                if d.inuse == 0 || d.inuse >= objects {
                    return Err("partial slab list holds an empty or full slab");
                }
                if d.prev != prev {
                    return Err("partial slab list back link is wrong");
                }
                prev = idx;
                idx = d.next;
                n += 1;
            }
            if n != census.partial[c] {
                return Err("a partially used slab is missing from its list");
            }
            let spare = self.slabs.spare(c);
            let spares = u64::from(spare != NIL);
            if census.empty[c] != spares {
                return Err("an empty slab is neither the spare nor given back");
            }
            if spare != NIL {
                let d = self.pages.desc(spare);
                if d.kind != Kind::Slab || d.class as usize != c || d.inuse != 0 {
                    return Err("spare slab is not an empty slab of its class");
                }
            }
        }
        Ok(())
    }
}
