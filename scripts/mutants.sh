#!/usr/bin/env bash
# Seeded soundness bugs (src/mutant.rs, one per bug class of the soundness
# issue), each run against the tests that must catch it, in a build with
# `--cfg magbuddy_mutants` (the allocator's own atomics; the mutant is chosen
# at run time by MAGBUDDY_MUTANT). Prints which test caught which mutant and
# fails if one survives. The shuttle-level mutants are in
# verify/tests/mutants.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg magbuddy_mutants" CARGO_TARGET_DIR=target/mutants
P=(--profile verify --features std)

# mutant | test binary | test name filter
CASES=(
  "FreeBitTwoStep|soundness|bug2_racing_shared_double_frees"
  "CachedAsLive|soundness|bug4_handle_double_free_of_a_cached_page"
  "CachedAsLive|bad_input|every_bad_free_on_every_path_and_kind"
  "RefillSkipsMark|soundness|bug4_shared_free_of_a_page_in_a_handle_magazine"
  "RetrySkipsAbandoned|soundness|bug6_shared_alloc_after_a_handle_release"
  "GeometryUnchecked|soundness|bug8_every_accepted_geometry"
  "SlabIdsWrap|soundness|bug5_top_slab_of_a_region_just_under_4_tib"
)

cargo test "${P[@]}" --test soundness --test bad_input --no-run 2>&1 | tail -1
# The build with the mutant sites compiled in, no mutant selected, passes.
cargo test "${P[@]}" --test soundness --test bad_input -q >/dev/null
echo "mutant | test | verdict"
survivors=0
for c in "${CASES[@]}"; do
  IFS='|' read -r mutant bin filter <<<"$c"
  out=$(MAGBUDDY_MUTANT=$mutant cargo test "${P[@]}" --test "$bin" "$filter" 2>&1) && rc=0 || rc=$?
  if [ "$rc" -ne 0 ]; then
    why=$(grep -m1 -E "panicked at|assertion|Err\(" <<<"$out" | cut -c1-110 || true)
    echo "$mutant | $bin::$filter | caught: $why"
  else
    echo "$mutant | $bin::$filter | NOT caught"
    survivors=$((survivors + 1))
  fi
done
if [ "$survivors" -ne 0 ]; then
  echo "$survivors mutant/test pairs survived"
  exit 1
fi
