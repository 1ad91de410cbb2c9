#!/usr/bin/env bash
# Runs every test of the project, stage by stage, printing each stage's time.
# This is the README's test command; .ci/run calls it after installing tools.
set -euo pipefail
cd "$(dirname "$0")/.."

stage() {
  local name=$1; shift
  local t0=$SECONDS
  echo "=== $name"
  "$@"
  echo "=== $name: ok in $((SECONDS - t0)) s"
}

# Release code with debug assertions and overflow checks (profile `verify`).
P=(--profile verify)

stage "format" cargo fmt --all -- --check
stage "clippy" cargo clippy --workspace --all-targets "${P[@]}" -- -D warnings
stage "no_std build (x86_64-unknown-none)" \
  cargo build -p magbuddy -p magbuddy-checkers --target x86_64-unknown-none "${P[@]}"
stage "unit, integration and stress tests" cargo test "${P[@]}" --features std
stage "checked build (double frees caught inside magazines)" \
  cargo test "${P[@]}" -p magbuddy --features checked,std --lib --test checked --test heap --test bad_input \
  --test model_fuzz --test race_matrix --test race_matrix_checked
# --show-output: each suite prints its schedule and event counts, the mutant
# tests which tool caught what after how many schedules.
stage "shuttle suites and mutants (cargo test -p verify)" cargo test -p verify "${P[@]}" \
  -- --show-output
# loom gets its own target directory: --cfg loom rebuilds everything.
stage "loom models and mutants (preemption bound 2)" env RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 \
  CARGO_TARGET_DIR=target/loom cargo test -p verify "${P[@]}" \
  --test loom_area --test loom_buddy --test loom_fastpath --test loom_mutants -- --show-output

# verify/threads is a workspace of its own (magbuddy with core atomics, real
# threads, the trace replay checker), small enough for miri.
THREADS=(--manifest-path verify/threads/Cargo.toml)
threads() {
  cargo fmt "${THREADS[@]}" -- --check
  CARGO_TARGET_DIR=target/threads cargo clippy "${THREADS[@]}" --all-targets "${P[@]}" -- -D warnings
  CARGO_TARGET_DIR=target/threads cargo test "${THREADS[@]}" "${P[@]}"
}
stage "real threads with trace replay (verify/threads)" threads

# miri: the root crate's unit tests that fit (the 64 MiB, exhaustive-model
# and stack-stress tests take many minutes under miri), then the real-thread
# trace test over 8 seeds (thread schedules and weak-memory outcomes).
# Installs a nightly toolchain with miri when the machine has none.
miri() {
  if ! cargo +nightly miri --version >/dev/null 2>&1; then
    if rustup toolchain list | grep -q '^nightly'; then
      rustup component add --toolchain nightly miri rust-src
    else
      rustup toolchain install nightly --profile minimal --component miri --component rust-src
    fi
  fi
  cargo +nightly miri setup
  CARGO_TARGET_DIR=target/miri cargo +nightly miri test -p magbuddy --lib -- \
    --skip 64mib --skip exhaust_free_all --skip oversubscribed --skip model_random_sequences \
    --skip tests_init --skip baseline::tests:: --skip stack::tests::threads
  CARGO_TARGET_DIR=target/miri MIRIFLAGS="-Zmiri-many-seeds=0..8" \
    cargo +nightly miri test "${THREADS[@]}"
}
stage "miri (unit tests; real threads, 8 seeds)" miri
# The C-ABI malloc shim: its edge-case program and a Python workload run
# under LD_PRELOAD (preload/test.sh).
stage "malloc shim under LD_PRELOAD (preload)" preload/test.sh verify
stage "kernel-demo on QEMU (SMP 1, 2, 4, 8; SMP 4 with 6 GiB)" make -C kernel-demo test
echo "all tests passed"
