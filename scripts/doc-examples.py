#!/usr/bin/env python3
"""Counts magbuddy's public items that carry a doc example, or link to one.

rustdoc's `--show-coverage` counts examples only for items defined in public
modules (for magbuddy: `baseline` and `buddy`), not for items re-exported
from private ones (`Heap`, `Handle`, `GlobalHeap`, ...) nor their methods.
This walks rustdoc's JSON output from the crate root instead: every public
item a user can name (re-exports followed), with the inherent methods and
trait methods of its types. Left out, as `--show-coverage` leaves them out of
its example count: struct fields, enum variants, constants, statics, type
aliases, modules and trait impls.

An item *has an example* when its docs hold a code block other than
```text; it *links to one* when its docs contain "example" and an intra-doc
link. Run (nightly rustdoc):

    cargo +nightly rustdoc -p magbuddy --all-features -- -Z unstable-options --output-format json
    scripts/doc-examples.py target/doc/magbuddy.json [--list]
"""

import json
import re
import sys

FENCE = re.compile(r"^\s*```(\w*)", re.M)


def has_example(docs):
    langs = FENCE.findall(docs or "")
    # Opening fences are the even-numbered ones.
    return any(lang not in ("text",) for lang in langs[0::2])


def links_example(docs):
    docs = docs or ""
    return "example" in docs.lower() and "[`" in docs


def main():
    path = sys.argv[1]
    show = "--list" in sys.argv
    d = json.load(open(path))
    index = d["index"]
    seen, rows = set(), []

    def item(i):
        return index.get(str(i)) or index.get(i)

    def visit(i, path):
        it = item(i)
        if it is None or it["id"] in seen:
            return
        seen.add(it["id"])
        kind, inner = next(iter(it["inner"].items()))
        name = it["name"]
        if kind == "use":
            target = inner.get("id")
            if target is not None:
                visit(target, path)
            return
        if kind == "module":
            for c in inner["items"]:
                visit(c, path + [name] if name != d_root_name else path)
            return
        full = "::".join(path + [name])
        if kind in ("struct_field", "variant", "impl", "constant", "static", "type_alias"):
            return
        rows.append((full, kind, has_example(it["docs"]), links_example(it["docs"])))
        if kind in ("struct", "enum", "union"):
            for impl_id in inner.get("impls", []):
                impl = item(impl_id)
                if impl is None:
                    continue
                imp = impl["inner"]["impl"]
                if imp.get("trait") is not None or imp.get("is_synthetic") or imp.get("blanket_impl"):
                    continue
                for m in imp["items"]:
                    mi = item(m)
                    if mi is None or mi["visibility"] != "public":
                        continue
                    mk = next(iter(mi["inner"]))
                    if mk != "function":
                        continue
                    rows.append(
                        (full + "::" + mi["name"], mk, has_example(mi["docs"]), links_example(mi["docs"]))
                    )
        if kind == "trait":
            for m in inner["items"]:
                mi = item(m)
                if mi is not None:
                    mk = next(iter(mi["inner"]))
                    rows.append(
                        (full + "::" + mi["name"], mk, has_example(mi["docs"]), links_example(mi["docs"]))
                    )

    root = item(d["root"])
    d_root_name = root["name"]
    visit(d["root"], [])
    ex = sum(1 for r in rows if r[2])
    link = sum(1 for r in rows if not r[2] and r[3])
    if show:
        for full, kind, e, l in sorted(rows):
            mark = "example" if e else ("link" if l else "-")
            print(f"{mark:8} {kind:10} {full}")
    n = len(rows)
    print(
        f"{n} public items: {ex} with an example ({100 * ex / n:.1f} %), "
        f"{link} more linking to one; {ex + link} of {n} ({100 * (ex + link) / n:.1f} %)"
    )


if __name__ == "__main__":
    main()
