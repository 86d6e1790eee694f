#!/usr/bin/env python3
"""Checks that within each crate no module imports another that imports it back,
directly or through others.

A module's imports are the `crate::…` paths in its file (`use` lines and paths in code,
comments and strings left out), each taken to the deepest module it names. Not counted:
the crate root (`lib.rs`, `main.rs`: its re-exports are the crate's public face), and a
module's own ancestors and descendants (a parent declares its child modules, and a child
may use its parent's items through `super::`). The import graph of every crate must then
have no cycle (Tarjan's strongly connected components; each cycle is printed).

Usage: .ci/module_cycles.py [ROOT]   (ROOT: the repository, default: this script's ..)
       .ci/module_cycles.py --self-test (finds the cycles of a made-up crate, and only them)
Exit status 1 when a crate has a cycle (or the self-test fails).
"""

import re
import sys
from pathlib import Path

PATH = re.compile(r"\bcrate::((?:[A-Za-z_][A-Za-z0-9_]*)(?:::[A-Za-z_][A-Za-z0-9_]*)*)")
GROUP = re.compile(r"\bcrate::((?:[A-Za-z_][A-Za-z0-9_]*::)*)\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}", re.S)


def strip_comments_and_strings(text):
    """The code of a Rust file with comments, string and char literals blanked."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not text[i - 1].isalnum()):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            i = n if end < 0 else end + 1 + len(hashes)
            out.append('""')
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:i + 4]):
            i += len(re.match(r"'(\\.|[^\\'])'", text[i:]).group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def modules_of(src):
    """Module path (tuple) → file, for every .rs file under a crate's src/."""
    mods = {}
    for f in src.rglob("*.rs"):
        rel = f.relative_to(src).with_suffix("")
        parts = list(rel.parts)
        if parts in (["lib"], ["main"]):
            parts = []
        elif parts[-1] == "mod":
            parts = parts[:-1]
        elif len(parts) == 1 and (src / "bin").is_dir() and f.parent.name == "bin":
            continue
        mods[tuple(parts)] = f
    return mods


def imports(code, mods):
    """The modules (tuples) the `crate::` paths in `code` name, each the deepest one."""
    paths = []
    for prefix, body in GROUP.findall(code):
        base = [p for p in prefix.split("::") if p]
        for item in re.split(r",(?![^{]*\})", body):
            item = item.strip()
            if not item:
                continue
            head = re.match(r"[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*", item)
            if head:
                paths.append(base + head.group(0).split("::"))
    for p in PATH.findall(code):
        paths.append(p.split("::"))
    found = set()
    for p in paths:
        best = ()
        for k in range(1, len(p) + 1):
            if tuple(p[:k]) in mods:
                best = tuple(p[:k])
        if best:
            found.add(best)
    return found


def related(a, b):
    return a[: len(b)] == b or b[: len(a)] == a


def cycles(graph):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def self_test():
    """A made-up crate: a ↔ b through `use` and a path in code, c → a only, d's parent
    and child using each other (allowed), a cycle in a comment and a string (ignored)."""
    import tempfile

    files = {
        "lib.rs": "mod a; mod b; mod c; mod d; pub use a::A;",
        "a.rs": "use crate::b::{B, other::X};\npub struct A;",
        "b.rs": "pub struct B;\nfn f() { let _ = crate::a::A; }",
        "c.rs": "use crate::a::A; // crate::c::x\nconst S: &str = \"crate::c\";",
        "d/mod.rs": "mod e; use self::e::E; use crate::d::e::E as F;",
        "d/e.rs": "use crate::d::D; pub struct E; /* crate::c::C */",
    }
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "crates" / "x" / "src"
        for name, text in files.items():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_text(text)
        mods = modules_of(src)
        graph = {}
        for m, f in mods.items():
            if m:
                code = strip_comments_and_strings(f.read_text())
                graph[m] = sorted(t for t in imports(code, mods) if t and t != m and not related(t, m))
        found = cycles(graph)
    want = [[("a",), ("b",)]]
    if found != want:
        print(f"self-test failed: found {found}, want {want}")
        return 1
    print("self-test: the made-up crate's one cycle (a, b) found, nothing else")
    return 0


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent
    bad = 0
    crates = sorted(p for p in (root / "crates").iterdir() if (p / "src").is_dir())
    crates.append(root / "python")
    for crate in crates:
        mods = modules_of(crate / "src")
        graph = {}
        for m, f in mods.items():
            if not m:
                continue
            code = strip_comments_and_strings(f.read_text())
            graph[m] = sorted(
                t for t in imports(code, mods) if t and t != m and not related(t, m)
            )
        for comp in cycles(graph):
            bad += 1
            names = ["::".join(c) for c in comp]
            print(f"{crate.name}: modules import each other: {', '.join(names)}")
            for a in comp:
                for b in graph[a]:
                    if b in comp:
                        print(f"  {'::'.join(a)} ({mods[a].relative_to(root)}) uses {'::'.join(b)}")
    print(f"module cycles: {bad} in {len(crates)} crates")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
