#!/usr/bin/env bash
# The soak: every method that looks for races nobody wrote a test for, for
# about MINUTES minutes (default 10), with a new seed, then what it covered.
#   - shuttle (60 % of the time): linearizability histories, racing frees on
#     every path pair and size class, the reclaim race (verify/tests/soak.rs);
#   - real threads: recorded histories checked for linearizability
#     (verify-threads), racing frees (tests/race_matrix.rs);
#   - the model-based bad-input fuzzer (tests/model_fuzz.rs).
# The real-thread and property parts run at MAGBUDDY_VERIFY_SCALE = MINUTES/5
# (at least 1). Usage: scripts/soak.sh [MINUTES]; set MAGBUDDY_VERIFY_SEED to
# repeat a soak. Not part of scripts/test-all.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-10}
export MAGBUDDY_VERIFY_SEED=${MAGBUDDY_VERIFY_SEED:-$(date +%s)}
export MAGBUDDY_VERIFY_SCALE=$(( MINUTES / 5 > 1 ? MINUTES / 5 : 1 ))
P=(--profile verify)
echo "soak: $MINUTES min, seed $MAGBUDDY_VERIFY_SEED, scale $MAGBUDDY_VERIFY_SCALE"

part() {
  local name=$1 pattern=$2; shift 2
  local t0=$SECONDS out
  out=$("$@" 2>&1) || { echo "$out" | tail -40; echo "soak: $name FAILED"; exit 1; }
  grep -E "$pattern" <<<"$out" || true
  echo "--- $name: ok in $((SECONDS - t0)) s"
}

part "shuttle" "^soak coverage" \
  env RUSTFLAGS="--cfg shuttle" CARGO_TARGET_DIR=target/shuttle \
  MAGBUDDY_SOAK_SECS=$(( MINUTES * 36 )) \
  cargo test -p verify "${P[@]}" --test soak -- --ignored --nocapture
part "real threads, linearizability" "^lin over real threads" \
  cargo test -p verify-threads "${P[@]}" -- --nocapture
part "real threads, racing frees" "^test result" \
  env MAGBUDDY_RACE_MS=$(( 500 * MAGBUDDY_VERIFY_SCALE )) \
  cargo test "${P[@]}" --features std --test race_matrix
part "model-based bad-input fuzzing" "cases \(seed" \
  cargo test "${P[@]}" --features std --test model_fuzz -- --nocapture
