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
  cargo test "${P[@]}" -p magbuddy --features checked,std --lib --test checked --test heap --test bad_input
stage "shuttle suites (cargo test -p verify)" cargo test -p verify "${P[@]}"
# loom gets its own target directory: --cfg loom rebuilds everything.
stage "loom models (preemption bound 2)" env RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 \
  CARGO_TARGET_DIR=target/loom cargo test -p verify "${P[@]}" --test loom_area
stage "kernel-demo on QEMU (SMP 1, 2, 4, 8)" make -C kernel-demo test
echo "all tests passed"
