#!/usr/bin/python3
"""Prints the figures that bench/engine.sh and bench/service.sh collected
(one tab-separated line each: figure, measured, target, met) as one table.

usage: table.py FILE
"""
import sys

rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
rows = [(r + [""] * 4)[:4] for r in rows]
head = ["figure", "measured", "target", "met"]
w = [max(len(r[i]) for r in rows + [head]) for i in range(4)]
print(" | ".join(h.ljust(w[i]) for i, h in enumerate(head)).rstrip())
print("-|-".join("-" * x for x in w))
for r in rows:
    print(" | ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip())
met = sum(r[3] == "yes" for r in rows)
missed = sum(r[3] == "no" for r in rows)
print("\n%d targets met, %d missed (figures from one run on a shared machine: noisy)" % (met, missed))
