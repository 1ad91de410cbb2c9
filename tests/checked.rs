//! The `checked` feature: double frees and freed-object pointers are caught
//! while the block sits in a magazine, not only once it reaches its slab or
//! the buddy tree.
//!
//! Run: `cargo test --features checked --test checked`

mod common;

use common::{Mem, MIB};
use magbuddy::{FreeError, Heap};

#[test]
fn double_free_into_a_magazine_is_refused() {
    let mem = Mem::new(16 * MIB);
    let heap = unsafe { Heap::init(mem.ptr(), mem.len(), 2) }.unwrap();
    let mut h = heap.handle().unwrap();
    for size in [8, 64, 2048, 4096, 16384] {
        let p = h.alloc(size).unwrap().as_ptr();
        let q = h.alloc(size).unwrap().as_ptr();
        unsafe { h.try_free(p) }.unwrap();
        // p is now in this CPU's loaded magazine.
        assert_eq!(
            unsafe { h.try_free(p) },
            Err(FreeError::DoubleFree(p as usize)),
            "{size} B"
        );
        // The shared path sees the mark too.
        assert_eq!(
            unsafe { heap.try_free(p) },
            Err(FreeError::DoubleFree(p as usize)),
            "{size} B"
        );
        // Handing p out again clears the mark: it can be freed once more.
        let again = h.alloc(size).unwrap().as_ptr();
        assert_eq!(again, p, "LIFO magazine");
        unsafe { h.try_free(again) }.unwrap();
        unsafe { h.try_free(q) }.unwrap();
    }
    drop(h);
    assert_eq!(heap.corruptions().0, 0);
    heap.reclaim();
    heap.validate().unwrap();
}
