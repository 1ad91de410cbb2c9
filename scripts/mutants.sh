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

# mutant | test binary | test name filter. First the methods that look for
# races and bad input nobody wrote a test for (model-based fuzzing, the
# real-thread race matrix, the extremes), then the regression test of each
# reported bug. NoneIgnoresFrees is in verify/tests/mutants.rs (no method
# here can see a false `None`: it needs a concurrent pass); GrowIgnoresBuddy
# is there too (a grow racing the buddy's allocation and free), and here
# against the sequential refusal test.
CASES=(
  "FreeBitTwoStep|race_matrix|objects_shared_shared"
  "CachedAsLive|model_fuzz|model_default_geometry"
  "CachedAsLive|race_matrix|page_magazine_blocks_every_pair"
  "RefillSkipsMark|model_fuzz|model_default_geometry"
  "RefillSkipsMark|race_matrix|page_magazine_blocks_every_pair"
  "RetrySkipsAbandoned|model_fuzz|model_default_geometry"
  "GeometryUnchecked|extremes|every_accepted_geometry"
  "SlabIdsWrap|extremes|regions_from_the_minimum_to_the_largest"
  "FreeBitTwoStep|soundness|bug2_racing_shared_double_frees"
  "CachedAsLive|soundness|bug4_handle_double_free_of_a_cached_page"
  "CachedAsLive|bad_input|every_bad_free_on_every_path_and_kind"
  "RefillSkipsMark|soundness|bug4_shared_free_of_a_page_in_a_handle_magazine"
  "RetrySkipsAbandoned|soundness|bug6_shared_alloc_after_a_handle_release"
  "GeometryUnchecked|soundness|bug8_every_accepted_geometry"
  "SlabIdsWrap|soundness|bug5_top_slab_of_a_region_just_under_4_tib"
  "GrowIgnoresBuddy|resize|grows_into_a_free_buddy_and_refuses_a_taken_one"
  "DrainReleasesListed|soundness|extra_b_a_live_object_holding_the_tag"
)
BINS=(--test soundness --test bad_input --test model_fuzz --test race_matrix --test extremes
  --test resize)

cargo test "${P[@]}" "${BINS[@]}" --no-run 2>&1 | tail -1
# The build with the mutant sites compiled in, no mutant selected, passes.
cargo test "${P[@]}" "${BINS[@]}" -q >/dev/null
echo "mutant | test | verdict"
survivors=0
for c in "${CASES[@]}"; do
  IFS='|' read -r mutant bin filter <<<"$c"
  out=$(MAGBUDDY_MUTANT=$mutant cargo test "${P[@]}" --test "$bin" "$filter" 2>&1) && rc=0 || rc=$?
  if [ "$rc" -ne 0 ]; then
    # The panic's message: the fuzzer's names the failing case of how
    # many, the race matrix's the round.
    why=$(grep -m1 -A1 "panicked at" <<<"$out" | tail -1 | cut -c1-150 || true)
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
