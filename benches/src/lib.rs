//! Shared benchmark workloads (filled in by the benchmarks issue).
