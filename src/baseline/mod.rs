//! Spinlock baseline (in progress).
