#!/usr/bin/env bash
# The layers of src/ import only downwards (src/baseline, the separate
# spinlock heap, is not part of them):
#
#   heap/ -> magazine/ -> slab/ -> region/ -> buddy/ -> shared bottom
#
# The shared bottom (sync, cas, cpu, stack, mutant, probe, error, limits,
# stats) imports no layer; testing.rs, global_heap.rs and global.rs sit on top
# and may import anything. A layer names another through `crate::<folder>` or
# a root re-export of it (e.g. `crate::Heap`); comments (doc links included)
# are not imports. Also fails on two files of one folder importing each other
# (`use super::x` both ways).
set -euo pipefail
cd "$(dirname "$0")/.."

LAYERS=(buddy region slab magazine heap)
# Root re-exports (lib.rs) that belong to a layer.
declare -A REEXPORT=(
  [buddy]='Geometry'
  [slab]='MAX_SMALL|SMALL_CLASSES'
  [magazine]='MAG_ROUNDS'
  [heap]='Heap|Handle|HeapConfig|CpuStats|ValidateError|Overflow'
)
BOTTOM=(sync cas cpu stack mutant probe error limits stats)

# Code lines of the given files (comments and doc comments removed).
code() {
  for f in "$@"; do
    sed -e 's#//.*$##' "$f" | grep -n . | sed "s#^#$f:#" || true
  done
}

# Lines of the files that name one of the folders (or their re-exports).
uses_of() {
  local files=("${@:2}") pat="crate::(testing|global|global_heap|GlobalHeap|MagbuddyAlloc)\\b|super::super\\b" l
  for l in $1; do
    pat+="|crate::$l\\b"
    if [ -n "${REEXPORT[$l]:-}" ]; then
      pat+="|crate::(${REEXPORT[$l]})\\b"
    fi
  done
  code "${files[@]}" | grep -E "$pat" || true
}

bad=0
for i in "${!LAYERS[@]}"; do
  layer=${LAYERS[$i]}
  above="${LAYERS[*]:$((i + 1))}"
  mapfile -t files < <(find "src/$layer" -name '*.rs' | sort)
  hits=$(uses_of "$above" "${files[@]}")
  if [ -n "$hits" ]; then
    echo "upward import from $layer/ (may use only what is below it):"
    echo "$hits"
    bad=1
  fi
done
mapfile -t files < <(for m in "${BOTTOM[@]}"; do echo "src/$m.rs"; done)
hits=$(uses_of "${LAYERS[*]}" "${files[@]}")
if [ -n "$hits" ]; then
  echo "upward import from the shared bottom:"
  echo "$hits"
  bad=1
fi

# Sibling files of one folder that import each other.
for dir in $(find src -mindepth 1 -type d ! -path 'src/baseline*'); do
  for f in "$dir"/*.rs; do
    a=$(basename "$f" .rs)
    [ "$a" = mod ] && continue
    for b in $(code "$f" | grep -oE 'super::[a-z_]+' | sed 's/super:://' | sort -u); do
      [ "$b" = "$a" ] || [ ! -f "$dir/$b.rs" ] && continue
      if code "$dir/$b.rs" | grep -qE "super::$a\\b"; then
        echo "cycle: $dir/$a.rs <-> $dir/$b.rs"
        bad=1
      fi
    done
  done
done

if [ "$bad" -ne 0 ]; then
  exit 1
fi
echo "layers: ok (${LAYERS[*]}; no upward import, no sibling cycle)"
