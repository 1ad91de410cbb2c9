#!/usr/bin/env bash
# Builds the shim and runs its edge-case program and a Python check under
# LD_PRELOAD. Usage: preload/test.sh [cargo profile, default verify]
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${1:-verify}
cargo build -p magbuddy-preload --profile "$PROFILE"
SO=$PWD/target/$PROFILE/libmagbuddy_preload.so
mkdir -p target/preload
# -O0 -fno-builtin: the compiler must not fold the huge-size calls away.
cc -O0 -fno-builtin -g -Wall -Wextra -Wno-use-after-free -Wno-free-nonheap-object \
  -Wno-alloc-size-larger-than -pthread -o target/preload/edge preload/tests/edge.c
LD_PRELOAD=$SO target/preload/edge
# Thread exit must not leak handle slots; many first-time claimers at once
# (preload/tests/thread_exit.c).
cc -O1 -fno-builtin -g -Wall -Wextra -pthread -o target/preload/thread_exit preload/tests/thread_exit.c -ldl
LD_PRELOAD=$SO target/preload/thread_exit
# Again with the shim's key past the first 32 (glibc callocs inside the claim).
THREAD_EXIT_KEYS=1 LD_PRELOAD=$SO target/preload/thread_exit

# Signal handlers that malloc and free while the interrupted call uses the
# thread's handle take the shared path (preload/tests/reentry.c).
cc -O1 -fno-builtin -g -Wall -Wextra -o target/preload/reentry preload/tests/reentry.c -ldl
LD_PRELOAD=$SO target/preload/reentry

# A live block holding the free tag's value is freed while a magazine that
# held it is flushed (preload/tests/tag_race.c).
cc -O1 -fno-builtin -g -Wall -Wextra -pthread -o target/preload/tag_race preload/tests/tag_race.c
LD_PRELOAD=$SO target/preload/tag_race 2

# Memory comes back: malloc_trim returns free areas, calloc of 1 GiB touches
# nothing (RSS asserted, not time).
cc -O1 -fno-builtin -g -Wall -Wextra -pthread -o target/preload/memory_return preload/tests/memory_return.c
LD_PRELOAD=$SO target/preload/memory_return

# A Python workload: same output with and without the shim.
PY=$(command -v python3)
SCRIPT='
import json, hashlib, threading, collections
d = {str(i): [i] * (i % 50) for i in range(100000)}
s = json.dumps(d)
h = hashlib.sha256(s.encode()).hexdigest()
c = collections.Counter(w for w in s.split(",") if w)
out = []
def work(k):
    out.append(sum(len(str(x)) for x in range(k * 20000)))
ts = [threading.Thread(target=work, args=(k,)) for k in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
print(h, len(c), sorted(out))
'
want=$("$PY" -c "$SCRIPT")
got=$(LD_PRELOAD=$SO "$PY" -c "$SCRIPT")
if [ "$want" != "$got" ]; then
  echo "python output differs under the shim:"; echo "  glibc:    $want"; echo "  magbuddy: $got"
  exit 1
fi
echo "python: same output under the shim ($got)"

# A small heap runs out: Python gets a MemoryError and carries on.
got=$(MAGBUDDY_HEAP=64M LD_PRELOAD=$SO "$PY" -c '
try:
    x = bytearray(200 << 20)
except MemoryError:
    print("MemoryError")
print(len([bytes(1000) for _ in range(1000)]))')
if [ "$got" != $'MemoryError\n1000' ]; then
  echo "64 MiB heap: expected a MemoryError then normal work, got: $got"; exit 1
fi
echo "python: MemoryError on a 64 MiB heap, then carries on"
