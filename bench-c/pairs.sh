#!/usr/bin/env bash
# Instructions per small malloc+free pair (bench-c/pair-loop.c, loop
# included) under glibc and, through LD_PRELOAD, this project's shim and
# whichever of mimalloc, jemalloc and tcmalloc (Debian packages) are
# installed: (Ir(30000 pairs) - Ir(10000 pairs)) / 20000 under callgrind, so
# start-up cancels. Needs valgrind and the release shim
# (cargo build --release -p magbuddy-preload).
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/bench-c/pairs
mkdir -p "$out"
cc -O2 -o "$out/pair-loop" bench-c/pair-loop.c
lib=/usr/lib/x86_64-linux-gnu
count() { # name preload
  local n ir=()
  for n in 10000 30000; do
    valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$out/cg.$1.$n" \
      env ${2:+LD_PRELOAD=$2} "$out/pair-loop" $n >/dev/null 2>&1
    ir+=("$(sed -n 's/^\(summary\|totals\): *\([0-9]*\).*/\2/p' "$out/cg.$1.$n" | head -n 1)")
  done
  printf '%-9s %6.1f\n' "$1" "$(echo "scale=2; (${ir[1]} - ${ir[0]}) / 20000" | bc)"
}
count glibc ""
count magbuddy "$PWD/target/release/libmagbuddy_preload.so"
for a in mimalloc:libmimalloc.so.2 jemalloc:libjemalloc.so.2 tcmalloc:libtcmalloc_minimal.so.4; do
  [ -e "$lib/${a#*:}" ] && count "${a%%:*}" "$lib/${a#*:}"
done
