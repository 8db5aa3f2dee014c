#!/usr/bin/python3
"""Checks the layering of src/ and include/: no cycles, every arrow points down.

The graph has one node per unit: x.c and x.h in one folder are one node, a
header without a .c is a node of its own, include/tandem/NAME.h is the node
"tandem/NAME". Edges come from two sources:
  include  every #include "..." that resolves to a file of the tree (the
           compiler's search path: the file's folder, include/, src/LAYER/);
  call     every symbol an object file of $BUILD/obj uses (nm: U) and another
           object of the tree defines (skipped when the objects are absent,
           or with --no-calls).
The layers, bottom up: common < engine < image < service < cli. An edge may
stay in its layer or go down; a cycle between nodes is an error in any layer.
The libraries' own headers (src/engine/*.h, src/image/*.h) are private: the
layers above reach them through include/tandem/ only.
Exit status 1 with a list of the cycles and upward edges, 0 when clean.
--dot prints the graph (Graphviz) instead of checking it; --layers limits
the report to problems that start in the given layers.
"""

import argparse
import os
import re
import subprocess
import sys

LAYERS = ["common", "engine", "image", "service", "cli"]
# Public headers and the layer that owns them.
PUBLIC = {"engine.h": "engine", "image.h": "image", "classifier.h": "image"}
# Layers whose headers under src/ nobody else may include.
PRIVATE = {"engine", "image"}
INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def layer_of(path):
    parts = path.split("/")
    if parts[0] == "src" and len(parts) > 2 and parts[1] in LAYERS:
        return parts[1]
    if parts[0] == "include":
        return PUBLIC.get(parts[-1], "engine")
    return None


def node_of(path):
    parts = path.split("/")
    stem = os.path.splitext(parts[-1])[0]
    if parts[0] == "include":
        return "tandem/" + stem
    return parts[1] + "/" + stem


def source_files(root):
    out = []
    for top in ("src", "include"):
        for d, _, names in os.walk(os.path.join(root, top)):
            for n in sorted(names):
                if n.endswith((".c", ".h")):
                    out.append(os.path.relpath(os.path.join(d, n), root))
    return sorted(out)


def resolve(root, src, name):
    """The tree file that #include "name" in src opens, or None (system or generated)."""
    dirs = [os.path.dirname(src), "include"] + ["src/" + l for l in LAYERS]
    for d in dirs:
        p = os.path.normpath(os.path.join(d, name))
        if os.path.isfile(os.path.join(root, p)):
            return p
    return None


def include_edges(root, files):
    edges = {}
    for f in files:
        with open(os.path.join(root, f), encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        for m in INCLUDE_RE.finditer(text):
            target = resolve(root, f, m.group(1))
            if target is None or target not in files:
                continue
            a, b = node_of(f), node_of(target)
            if a != b:
                edges.setdefault((a, b), []).append("%s includes %s" % (f, m.group(1)))
    return edges


def private_includes(root, files):
    """#include lines that reach into a library layer's private headers from outside it."""
    out = []
    for f in files:
        with open(os.path.join(root, f), encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        for m in INCLUDE_RE.finditer(text):
            target = resolve(root, f, m.group(1))
            if target is None or not target.startswith("src/"):
                continue
            if layer_of(target) in PRIVATE and layer_of(target) != layer_of(f):
                out.append((f, target))
    return out


def nm_symbols(obj):
    res = subprocess.run(["nm", "-P", obj], capture_output=True, text=True, check=True)
    defined, undefined = set(), set()
    for line in res.stdout.splitlines():
        fields = line.split()
        if len(fields) < 2:
            continue
        sym, kind = fields[0], fields[1]
        if kind == "U":
            undefined.add(sym)
        elif kind.isupper() and kind not in "NW":
            defined.add(sym)
    return defined, undefined


def call_edges(root, build, files):
    objs = {}
    for f in files:
        if f.startswith("src/") and f.endswith(".c"):
            o = os.path.join(root, build, "obj", f[len("src/"):-2] + ".o")
            if not os.path.isfile(o):
                return None, o
            objs[f] = o
    owner, uses = {}, {}
    for f, o in objs.items():
        d, u = nm_symbols(o)
        for s in d:
            owner[s] = node_of(f)
        uses[f] = u
    edges = {}
    for f, u in uses.items():
        a = node_of(f)
        for s in sorted(u):
            b = owner.get(s)
            if b is not None and b != a:
                edges.setdefault((a, b), []).append("%s uses %s" % (f, s))
    return edges, None


def sccs(nodes, succ):
    """Tarjan's strongly connected components (iterative)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]
    for start in sorted(nodes):
        if start in index:
            continue
        work = [(start, iter(sorted(succ.get(start, ()))))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(succ.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
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
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    ap.add_argument("--build", default=os.environ.get("BUILD", "build"))
    ap.add_argument("--no-calls", action="store_true", help="include edges only")
    ap.add_argument("--dot", action="store_true", help="print the graph (Graphviz) and exit")
    ap.add_argument("--layers", default=",".join(LAYERS),
                    help="report only problems that start in these layers (comma-separated)")
    args = ap.parse_args()
    root = os.path.abspath(args.root)

    files = source_files(root)
    nodes = {node_of(f): layer_of(f) for f in files}
    edges = {}
    for (a, b), why in include_edges(root, files).items():
        edges.setdefault((a, b), []).extend(why)
    if not args.no_calls:
        calls, missing = call_edges(root, args.build, files)
        if calls is None:
            print("note: %s missing, call edges not checked (build first)" % missing,
                  file=sys.stderr)
        else:
            for (a, b), why in calls.items():
                edges.setdefault((a, b), []).extend(why)

    if args.dot:
        print("digraph layers {\n  rankdir=BT;")
        for l in LAYERS:
            print('  subgraph "cluster_%s" { label="%s";' % (l, l))
            for n in sorted(k for k, v in nodes.items() if v == l):
                print('    "%s";' % n)
            print("  }")
        for (a, b) in sorted(edges):
            print('  "%s" -> "%s";' % (a, b))
        print("}")
        return 0

    succ = {}
    for (a, b) in edges:
        succ.setdefault(a, set()).add(b)
    checked = set(args.layers.split(","))
    unknown = checked - set(LAYERS)
    if unknown:
        ap.error("unknown layer(s): %s" % ", ".join(sorted(unknown)))
    problems = 0
    for comp in sccs(nodes, succ):
        if not any(nodes[n] in checked for n in comp):
            continue
        problems += 1
        print("cycle: %s" % " ".join(comp))
        members = set(comp)
        for (a, b) in sorted(edges):
            if a in members and b in members:
                why = edges[(a, b)]
                more = " (+%d more)" % (len(why) - 1) if len(why) > 1 else ""
                print("  %s -> %s: %s%s" % (a, b, why[0], more))
    rank = {l: i for i, l in enumerate(LAYERS)}
    for (a, b) in sorted(edges):
        if nodes[a] in checked and rank[nodes[b]] > rank[nodes[a]]:
            problems += 1
            print("upward: %s (%s) -> %s (%s): %s" % (a, nodes[a], b, nodes[b], edges[(a, b)][0]))
    for f, target in private_includes(root, files):
        if layer_of(f) in checked:
            problems += 1
            print("private: %s includes %s (use include/tandem/)" % (f, target))
    if problems:
        print("%d layering problem(s) in %d nodes, %d edges" % (problems, len(nodes), len(edges)))
        return 1
    print("layers clean: %d nodes, %d edges, no cycles, every edge points down"
          % (len(nodes), len(edges)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
