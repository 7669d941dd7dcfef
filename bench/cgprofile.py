#!/usr/bin/env python3
"""Per-request profile from two callgrind dumps (bench/callgrind.sh), standard library only.

  cgprofile.py totals DUMP                 prints the dump's total instruction count
  cgprofile.py profile N1 DUMP1 N2 DUMP2 [--floor N1 DUMP1 N2 DUMP2] [--top 20]

`profile` runs callgrind_annotate on both dumps of a target (phase of N1 requests, phase of N2 requests,
same connection, same process) and prints, per function, (cost in DUMP2 - cost in DUMP1) / (N2 - N1):
instructions per request with everything that does not grow with the number of requests (the dump, the
phase's wake-ups) cancelled out. Both self (exclusive) and inclusive costs, the top N of each, and self
cost summed by crate (the first path segment of the demangled name: `pingora_proxy`, `harp`, `tokio`,
`core`, the allocator...). With --floor (the same for the do-nothing Pingora proxy), a column with the
floor's cost and the difference, and a list of what the target spends beyond the floor.

Function-level comparisons between two binaries are approximate: inlining decides which function an
instruction is charged to. The crate sums are more robust than single rows.
"""

import re
import subprocess
import sys
from collections import defaultdict

LINE = re.compile(r"^\s*([0-9][0-9,]*)\s+(?:\([^)]*\)\s+)?(.*\S)\s*$")


def totals(path):
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("totals:") or line.startswith("summary:"):
                return int(line.split()[1])
    raise SystemExit(f"{path}: no totals line")


def annotate(path, inclusive):
    out = subprocess.run(
        ["callgrind_annotate", "--threshold=100", f"--inclusive={'yes' if inclusive else 'no'}", path],
        check=True, capture_output=True, text=True, errors="replace").stdout
    costs = defaultdict(int)
    started = False
    for line in out.splitlines():
        if not started:
            # The function list starts after the header line "Ir  file:function".
            started = line.strip().endswith("file:function")
            continue
        m = LINE.match(line)
        if m:
            costs[clean(m.group(2))] += int(m.group(1).replace(",", ""))
    return costs


def clean(name):
    # "???:foo [/path/to/bin]" or "src/x.rs:foo [/path]": keep the function, drop the object and file.
    name = re.sub(r"\s+\[[^\]]*\]$", "", name)
    if ":" in name and not name.startswith("<"):
        head, sep, tail = name.partition(":")
        if "/" in head or head == "???" or head.endswith((".rs", ".c", ".h", ".S")):
            name = tail
    return name


def crate_of(name):
    n = name.lstrip("<&* ")
    if n.startswith("_mi_") or n.startswith("mi_"):
        return "mimalloc"
    m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)::", n)
    if m:
        return m.group(1)
    return "(C / libc / other)"


def per_request(n1, d1, n2, d2, inclusive):
    c1, c2 = annotate(d1, inclusive), annotate(d2, inclusive)
    return {k: (c2.get(k, 0) - c1.get(k, 0)) / (n2 - n1) for k in set(c1) | set(c2)}


def fmt(v):
    return f"{v:,.0f}"


def table(title, rows, total, floor=None, top=20):
    print(f"## {title}\n")
    if floor is None:
        print(f"{'instr/req':>12} {'share':>6}  function")
        for name, v in rows[:top]:
            print(f"{fmt(v):>12} {v / total * 100:5.1f}%  {name}")
    else:
        print(f"{'instr/req':>12} {'floor':>10} {'beyond':>10}  function")
        for name, v in rows[:top]:
            f = floor.get(name, 0)
            print(f"{fmt(v):>12} {fmt(f):>10} {fmt(v - f):>10}  {name}")
    print()


def main():
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "totals":
        print(totals(args[1]))
        return
    if len(args) < 5 or args[0] != "profile":
        raise SystemExit(__doc__)
    top = 20
    if "--top" in args:
        i = args.index("--top")
        top = int(args[i + 1])
        del args[i:i + 2]
    n1, d1, n2, d2 = int(args[1]), args[2], int(args[3]), args[4]
    floor_args = None
    if len(args) > 5:
        if args[5] != "--floor" or len(args) != 10:
            raise SystemExit(__doc__)
        floor_args = (int(args[6]), args[7], int(args[8]), args[9])

    total = (totals(d2) - totals(d1)) / (n2 - n1)
    self_cost = per_request(n1, d1, n2, d2, False)
    incl_cost = per_request(n1, d1, n2, d2, True)
    floor_self = floor_incl = None
    floor_total = None
    if floor_args:
        fn1, fd1, fn2, fd2 = floor_args
        floor_total = (totals(fd2) - totals(fd1)) / (fn2 - fn1)
        floor_self = per_request(fn1, fd1, fn2, fd2, False)
        floor_incl = per_request(fn1, fd1, fn2, fd2, True)

    print(f"instructions per request: {fmt(total)}"
          + (f" (floor {fmt(floor_total)}, beyond the floor {fmt(total - floor_total)})" if floor_total else ""))
    print(f"(from callgrind dumps of {n1} and {n2} requests on one kept-alive connection: "
          f"(dump2 - dump1) / {n2 - n1}; per function the same difference)\n")

    crates = defaultdict(float)
    for k, v in self_cost.items():
        crates[crate_of(k)] += v
    floor_crates = defaultdict(float)
    if floor_self:
        for k, v in floor_self.items():
            floor_crates[crate_of(k)] += v
    print("## Self instructions per request, by crate\n")
    if floor_self:
        print(f"{'instr/req':>12} {'floor':>10} {'beyond':>10}  crate")
        for name in sorted(set(crates) | set(floor_crates), key=lambda c: -crates.get(c, 0)):
            v, f = crates.get(name, 0), floor_crates.get(name, 0)
            if abs(v) < 1 and abs(f) < 1:
                continue
            print(f"{fmt(v):>12} {fmt(f):>10} {fmt(v - f):>10}  {name}")
    else:
        print(f"{'instr/req':>12} {'share':>6}  crate")
        for name, v in sorted(crates.items(), key=lambda kv: -kv[1]):
            if abs(v) >= 1:
                print(f"{fmt(v):>12} {v / total * 100:5.1f}%  {name}")
    print()

    table(f"Top {top} functions by self instructions per request", sorted(self_cost.items(), key=lambda kv: -kv[1]),
          total, floor_self, top)
    table(f"Top {top} functions by inclusive instructions per request",
          sorted(incl_cost.items(), key=lambda kv: -kv[1]), total, floor_incl, top)
    if floor_self:
        beyond = {k: v - floor_self.get(k, 0) for k, v in self_cost.items()}
        table(f"Top {top} functions by self instructions per request beyond the floor (target - floor)",
              sorted(beyond.items(), key=lambda kv: -kv[1]), total, None, top)


if __name__ == "__main__":
    main()
