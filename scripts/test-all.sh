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

# The model checkers are cfgs, not features: the whole workspace builds and
# tests with the allocator's normal atomics, whatever is selected.
SHUTTLE=(env RUSTFLAGS="--cfg shuttle" CARGO_TARGET_DIR=target/shuttle)
LOOM=(env RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom)
# The facade that counts atomic accesses per thread (report --atomics).
COUNT=(env RUSTFLAGS="--cfg magbuddy_count_atomics" CARGO_TARGET_DIR=target/count-atomics)

stage "format" cargo fmt --all -- --check
# The layers of src/ import only downwards (buddy <- region <- slab <-
# magazine <- heap); a second.
stage "layers (scripts/layers.sh)" scripts/layers.sh
clippy() {
  cargo clippy --workspace --all-targets "${P[@]}" -- -D warnings
  # The shim alone: without `std` (no other package enables `magbuddy/std`).
  cargo clippy -p magbuddy-preload "${P[@]}" -- -D warnings
  cargo clippy -p magbuddy --all-targets --features checked,std,allocator-api2 "${P[@]}" -- -D warnings
  "${SHUTTLE[@]}" cargo clippy -p verify --all-targets "${P[@]}" -- -D warnings
  "${LOOM[@]}" cargo clippy -p verify --all-targets "${P[@]}" -- -D warnings
  "${COUNT[@]}" cargo clippy -p magbuddy --all-targets --features std "${P[@]}" -- -D warnings
}
stage "clippy (workspace; checked; --cfg shuttle; --cfg loom; --cfg magbuddy_count_atomics)" clippy
stage "no_std build (x86_64-unknown-none)" \
  cargo build -p magbuddy -p magbuddy-checkers --target x86_64-unknown-none "${P[@]}"
# What a user types first must leave a normal shim: build the workspace in
# release and run a program under the shim from that build.
workspace_release() {
  cargo build --release --workspace
  out=$(LD_PRELOAD="$PWD/target/release/libmagbuddy_preload.so" python3 -c 'print(1)')
  test "$out" = 1
}
stage "cargo build --release --workspace, then the shim from it" workspace_release
# The two published packages as a user gets them: `cargo publish --dry-run`
# packages and builds both (magbuddy's dev-dependency on the checkers
# resolves to the packaged copy); then magbuddy's packaged tests are built
# outside the workspace against the packaged checkers and its unit tests run
# (the integration tests run in debug would take minutes), and the packaged
# checkers' tests are built; the docs build without a warning, with every
# feature, on stable and as docs.rs builds them.
package() {
  local root=$PWD dir version cversion patch
  # --allow-dirty: the working tree is what is tested.
  cargo publish --dry-run --allow-dirty -p magbuddy -p magbuddy-checkers
  cargo package --no-verify --allow-dirty -p magbuddy -p magbuddy-checkers
  version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
  cversion=$(sed -n 's/^version = "\(.*\)"$/\1/p' verify/checkers/Cargo.toml | head -n 1)
  dir=$(mktemp -d)
  # -m: the files get the time of extraction. A package keeps fixed mtimes,
  # so with them the reused target directory would count its last build of
  # an older package as fresh and link the tests against it.
  tar xzmf "target/package/magbuddy-$version.crate" -C "$dir"
  tar xzmf "target/package/magbuddy-checkers-$cversion.crate" -C "$dir"
  patch="patch.crates-io.magbuddy-checkers.path=\"$dir/magbuddy-checkers-$cversion\""
  (
    cd "$dir/magbuddy-$version"
    export CARGO_TARGET_DIR="$root/target/package-test"
    cargo test --config "$patch" --no-run
    cargo test --config "$patch" --lib
    cd "$dir/magbuddy-checkers-$cversion"
    cargo test --all-features --no-run
  )
  rm -rf "$dir"
  # Every stable feature (`nightly` needs a nightly compiler: the build below).
  RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p magbuddy -p magbuddy-checkers \
    --features magbuddy/std,magbuddy/allocator-api2,magbuddy/checked,magbuddy-checkers/alloc
  # docs.rs's build: nightly, `--cfg docsrs` (the feature badges).
  if cargo +nightly --version >/dev/null 2>&1; then
    RUSTDOCFLAGS="--cfg docsrs -D warnings" CARGO_TARGET_DIR=target/docsrs \
      cargo +nightly doc --no-deps --all-features -p magbuddy -p magbuddy-checkers
  else
    echo "no nightly toolchain: the docs.rs build (--cfg docsrs) is not checked"
  fi
}
stage "package: cargo publish --dry-run for magbuddy and magbuddy-checkers, packaged tests build; cargo doc" \
  package
# Unit, integration and stress tests of every package, real threads with the
# trace replay checker (verify-threads) included.
stage "unit, integration and stress tests (cargo test --workspace)" \
  cargo test --workspace "${P[@]}" --features magbuddy/std,magbuddy/allocator-api2
# The counting facade counts what the code says (each wrapper one access of
# its kind, per thread; no RMW on a handle's magazine hit; SpinHeap's lock
# once per call). Debug profile: about 25 s from cold.
stage "atomic counts (--cfg magbuddy_count_atomics)" \
  "${COUNT[@]}" cargo test -p magbuddy --features std --test atomic_counts
# `core::alloc::Allocator` (feature `nightly`) needs a nightly compiler; a
# stable build never selects it. Skipped, with a note, without one.
nightly() {
  if rustup toolchain list | grep -q '^nightly'; then
    CARGO_TARGET_DIR=target/nightly cargo +nightly test -p magbuddy --features nightly \
      --test nightly_allocator
  else
    echo "no nightly toolchain (rustup toolchain install nightly): skipped"
  fi
}
stage "core::alloc::Allocator (feature nightly, cargo +nightly)" nightly
stage "checked build (racing frees of an object: exactly one wins on every path)" \
  cargo test "${P[@]}" -p magbuddy --features checked,std --lib --test checked --test heap \
  --test bad_input --test soundness --test soundness_checked --test race_matrix_checked \
  --test model_fuzz
# --show-output: each suite prints its schedule and event counts, the mutant
# tests which tool caught what after how many schedules.
stage "shuttle suites and mutants (--cfg shuttle, cargo test -p verify)" \
  "${SHUTTLE[@]}" cargo test -p verify "${P[@]}" -- --show-output
# The linearizability suites again in the `checked` build, whose handles also
# race double frees of objects (exactly-one on every path pair there).
stage "linearizability suites in the checked build (--cfg shuttle)" \
  "${SHUTTLE[@]}" cargo test -p verify "${P[@]}" --features checked --test shuttle_lin -- --show-output
# Seeded soundness bugs against the tests that must catch them (real threads,
# regression and bad-input tests) in a --cfg magbuddy_mutants build.
stage "seeded soundness bugs (scripts/mutants.sh)" scripts/mutants.sh
stage "loom models and mutants (--cfg loom, preemption bound 2)" \
  "${LOOM[@]}" cargo test -p verify "${P[@]}" \
  --test loom_area --test loom_buddy --test loom_fastpath --test loom_mutants -- --show-output

# miri: the root crate's unit tests that fit (the 64 MiB, exhaustive-model
# and stack-stress tests take many minutes under miri; the size classes'
# exhaustive table checks are arithmetic only, nothing for miri to see),
# then the real-thread
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
    --skip tests_init --skip baseline::tests:: --skip stack::tests::threads \
    --skip slab::tests::index_is_exact --skip slab::tests::fit_picks_the_smallest_aligned_class \
    --skip magazine::tests::fit_cached_is_fit_big_then_the_block_class
  CARGO_TARGET_DIR=target/miri MIRIFLAGS="-Zmiri-many-seeds=0..8" \
    cargo +nightly miri test -p verify-threads
}
stage "miri (unit tests; real threads, 8 seeds)" miri
# The C-ABI malloc shim: its edge-case program and a Python workload run
# under LD_PRELOAD (preload/test.sh).
stage "malloc shim under LD_PRELOAD (preload)" preload/test.sh verify
stage "kernel-demo on QEMU (SMP 1, 2, 4, 8; SMP 4 with 6 GiB)" make -C kernel-demo test
echo "all tests passed"
