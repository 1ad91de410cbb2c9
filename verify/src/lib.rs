//! Verification suites live in `tests/`.
