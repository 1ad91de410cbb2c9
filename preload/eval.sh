#!/usr/bin/env bash
# Runs real programs under glibc malloc, magbuddy (this shim) and mimalloc
# (Debian's libmimalloc2.0), checks each program's output is identical under
# all three (magbuddy twice: the default 4 GiB heap and MAGBUDDY_HEAP=1G),
# and prints a markdown table of median wall time and peak RSS
# (/usr/bin/time) as ratios to glibc.
#
# Usage: preload/eval.sh [runs, default 3]   (writes target/preload/eval.md)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
cargo build -q -p magbuddy-preload --release
MB=$PWD/target/release/libmagbuddy_preload.so
MI=/usr/lib/x86_64-linux-gnu/libmimalloc.so.2
[ -e "$MI" ] || { echo "no $MI: apt-get install -y libmimalloc2.0" >&2; exit 1; }
W=$PWD/target/preload/eval
mkdir -p "$W"
PY=/usr/bin/python3

# Inputs, made once and deterministically.
if [ ! -e "$W/data.txt" ]; then
  "$PY" - "$W/data.txt" <<'EOF'
import random, sys
r = random.Random(7)
words = ["".join(r.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(r.randint(2, 9))) for _ in range(5000)]
with open(sys.argv[1], "w") as f:
    for i in range(400000):
        f.write(" ".join(r.choice(words) for _ in range(12)) + f" {i}\n")
EOF
fi
cat > "$W/py.py" <<'EOF'
import json, collections, re
text = open(__import__("sys").argv[1]).read()
words = re.findall(r"[a-z]+", text)
c = collections.Counter(words)
d = {w: [n, w.upper(), list(range(n % 7))] for w, n in c.items()}
s = json.dumps(d, sort_keys=True)
back = json.loads(s)
trees = [{"k": i, "v": str(i) * (i % 13), "c": [j for j in range(i % 11)]} for i in range(300000)]
print(len(words), len(c), len(s), len(back), sum(len(t["v"]) for t in trees), c.most_common(3))
EOF
cat > "$W/pythreads.py" <<'EOF'
import threading, hashlib
out = [None] * 4
def work(k):
    acc = {}
    for i in range(150000):
        acc[(k, i)] = hashlib.md5(str(i * k).encode()).hexdigest()[: (i % 17) + 1]
        if i % 3 == 0:
            del acc[(k, i)]
    out[k] = sum(len(v) for v in acc.values())
ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
print(out)
EOF
cat > "$W/sql.sql" <<'EOF'
CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b INTEGER);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200000)
INSERT INTO t SELECT x, printf('%08d-%s', (x * 7919) % 300007, substr('abcdefghijklmnop', 1 + x % 16)), x % 1000 FROM c;
CREATE INDEX ta ON t(a);
CREATE INDEX tb ON t(b, a);
SELECT count(*), sum(length(a)), max(a) FROM t;
SELECT b, count(*), min(a) FROM t GROUP BY b ORDER BY 2 DESC, 1 LIMIT 5;
SELECT count(*) FROM t x JOIN t y ON x.b = y.b AND x.id < y.id AND y.id - x.id < 500;
EOF
GIT_DIR_ARG=$PWD
GIT_REV=$(git rev-list --max-parents=0 HEAD | tail -1)..25b3306

# name | kind | command (run by sh -c; stdout is compared)
PROGRAMS=(
  "python3 (json, dicts)|1 thread|$PY $W/py.py $W/data.txt"
  "sqlite3 (insert, index, join)|1 thread|sqlite3 :memory: < $W/sql.sql"
  "gzip -6 / gunzip|1 thread|gzip -6 -c $W/data.txt | gunzip -c | sha256sum"
  "gcc -O2 -c (edge.c)|1 thread|gcc -O2 -c -o /dev/stdout preload/tests/edge.c 2>/dev/null | sha256sum"
  "git log --stat|1 thread|git -C $GIT_DIR_ARG log --stat $GIT_REV | sha256sum"
  "xz -T2 -6|2 threads|xz -T2 -6 -c $W/data.txt | sha256sum"
  "zstd -T2 -15|2 threads|zstd -q -T2 -15 -c $W/data.txt | sha256sum"
  "python3 (4 threads, dicts)|4 threads|$PY $W/pythreads.py"
)

# run <preload or empty> <heap size> <command>: prints "seconds maxrss_kb",
# stdout to $W/out
run() {
  local pre=$1 heap=$2 cmd=$3
  if [ -n "$pre" ]; then
    /usr/bin/time -f "%e %M" -o "$W/time" env LD_PRELOAD="$pre" MAGBUDDY_HEAP="$heap" \
      sh -c "$cmd" >"$W/out"
  else
    /usr/bin/time -f "%e %M" -o "$W/time" sh -c "$cmd" >"$W/out"
  fi
  tail -1 "$W/time"
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

MD=$W/../eval.md
{
  echo "| program | threads | glibc time (s) | glibc RSS (MiB) | magbuddy time | magbuddy RSS | magbuddy 1 GiB heap: time | RSS | mimalloc time | mimalloc RSS |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
} >"$MD"
for p in "${PROGRAMS[@]}"; do
  IFS='|' read -r name kind cmd <<<"$p"
  declare -A T R
  ref=""
  for alloc in glibc magbuddy mb1g mimalloc; do
    heap=4G
    case $alloc in glibc) pre="" ;; magbuddy) pre=$MB ;; mb1g) pre=$MB heap=1G ;; mimalloc) pre=$MI ;; esac
    ts=() rs=()
    for _ in $(seq "$RUNS"); do
      read -r t r < <(run "$pre" "$heap" "$cmd")
      ts+=("$t") rs+=("$r")
      sum=$(sha256sum <"$W/out" | cut -c1-16)
      if [ -z "$ref" ]; then ref=$sum; elif [ "$sum" != "$ref" ]; then
        echo "OUTPUT DIFFERS: $name under $alloc" >&2; exit 1
      fi
    done
    T[$alloc]=$(printf '%s\n' "${ts[@]}" | median)
    R[$alloc]=$(printf '%s\n' "${rs[@]}" | median)
  done
  ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
  printf '| %s | %s | %s | %.1f | %s | %s | %s | %s | %s | %s |\n' "$name" "$kind" "${T[glibc]}" \
    "$(awk -v r="${R[glibc]}" 'BEGIN { print r / 1024 }')" \
    "$(ratio "${T[magbuddy]}" "${T[glibc]}")" "$(ratio "${R[magbuddy]}" "${R[glibc]}")" \
    "$(ratio "${T[mb1g]}" "${T[glibc]}")" "$(ratio "${R[mb1g]}" "${R[glibc]}")" \
    "$(ratio "${T[mimalloc]}" "${T[glibc]}")" "$(ratio "${R[mimalloc]}" "${R[glibc]}")" >>"$MD"
  echo "done: $name (output identical, $RUNS runs each)" >&2
done
echo
echo "Median of $RUNS runs; magbuddy and mimalloc columns are ratios to glibc (lower is better)."
echo "$(date -u +%F), $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), $(uname -r), glibc $(ldd --version | head -1 | awk '{print $NF}'), mimalloc $(dpkg-query -W -f '${Version}' libmimalloc2.0)"
echo
cat "$MD"
