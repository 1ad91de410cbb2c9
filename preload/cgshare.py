"""Instructions of a program and of its allocator, from callgrind files.

Usage: python3 preload/cgshare.py CALLGRIND_FILE... -> "total allocator"

The program's instructions are the files' `summary:` lines summed (one file
per process with --trace-children=yes). The allocator's are the costs of
every call edge from a function outside the allocator into one inside it
(malloc, free, calloc, realloc and the other entry points, with the
functions they call): inclusive costs at the boundary, so an entry point
that calls another (realloc calling malloc) is not counted twice.
"""
import re
import sys

ENTRIES = {
    "malloc", "free", "calloc", "realloc", "reallocarray", "posix_memalign",
    "aligned_alloc", "memalign", "valloc", "pvalloc", "malloc_usable_size",
    "cfree", "__libc_malloc", "__libc_free", "__libc_calloc",
    "__libc_realloc", "__libc_memalign",
}
# glibc's internals, mimalloc's functions and the shim's Rust code.
INSIDE = ("mi_", "_mi_", "_int_", "tcache", "malloc_consolidate", "sysmalloc", "magbuddy")


def inside(name):
    return name in ENTRIES or name.startswith(INSIDE)


def count(path):
    names, total, alloc = {}, 0, 0
    caller = callee = None
    after_calls = False
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("summary:"):
                total = int(line.split()[1])
            elif line.startswith(("fn=", "cfn=")):
                m = re.match(r"c?fn=\((\d+)\)(?: (.*))?", line.rstrip("\n"))
                if m.group(2) is not None:
                    names[m.group(1)] = m.group(2)
                name = names[m.group(1)]
                if line.startswith("fn="):
                    caller = name
                else:
                    callee = name
            elif line.startswith("calls="):
                after_calls = True
            elif after_calls:
                # The line after `calls=` holds the call's inclusive cost.
                after_calls = False
                if inside(callee) and not inside(caller):
                    alloc += int(line.split()[1])
    return total, alloc


totals = [count(p) for p in sys.argv[1:]]
print(sum(t for t, _ in totals), sum(a for _, a in totals))
