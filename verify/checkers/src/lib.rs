//! Allocator checkers (in progress).
#![no_std]
