#!/usr/bin/env python3
"""Per-request profile from two callgrind dumps (bench/callgrind.sh), standard library only.

  cgprofile.py totals DUMP                 prints the dump's total instruction count
  cgprofile.py profile N1 DUMP1 N2 DUMP2 [--floor N1 DUMP1 N2 DUMP2] [--top 20]

`profile` reads both dumps of a target (phase of N1 requests, phase of N2 requests,
same connection, same process) and prints, per function, (cost in DUMP2 - cost in DUMP1) / (N2 - N1):
instructions per request with everything that does not grow with the number of requests (the dump, the
phase's wake-ups) cancelled out. Both self (exclusive) and inclusive costs, the top N of each, and self
cost summed by crate (the first path segment of the demangled name: `pingora_proxy`, `harp`, `tokio`,
`core`, the allocator...). With --floor (the same for the do-nothing Pingora proxy), a column with the
floor's cost and the difference, and a list of what the target spends beyond the floor. Also the top of
harp's own functions by inclusive cost (its Pingora hooks, its accept loop), which have no floor
counterpart.

Function-level comparisons between two binaries are approximate: inlining decides which function an
instruction is charged to. The crate sums are more robust than single rows.
"""

import re
import sys
from collections import defaultdict

def totals(path):
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("totals:") or line.startswith("summary:"):
                return int(line.split()[1])
    raise SystemExit(f"{path}: no totals line")


def parse(path):
    """Self and inclusive instruction counts per function of one callgrind dump.

    Read from the dump itself (callgrind's format: compressed names, `calls=` lines whose next cost line is
    the inclusive cost of those calls) rather than through callgrind_annotate, whose 3.19 version charges
    the calls still in progress at a dump (`calls=0`) to the caller's self cost. Inclusive = self + the
    cost of calls to other functions (recursion through a cycle counts twice, as in callgrind_annotate).
    """
    names = {"fn": {}, "fl": {}, "ob": {}}
    kind_of = {"fn": "fn", "cfn": "fn", "fl": "fl", "fi": "fl", "fe": "fl", "cfi": "fl", "cfl": "fl",
               "ob": "ob", "cob": "ob"}
    self_cost, incl_cost = defaultdict(int), defaultdict(int)
    positions = 1
    fn = cfn = None
    call_pending = False
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                fields = line.split()
                cost = int(fields[positions]) if len(fields) > positions else 0
                if call_pending:
                    if cfn != fn:
                        incl_cost[fn] += cost
                    call_pending = False
                else:
                    self_cost[fn] += cost
                    incl_cost[fn] += cost
                continue
            key, sep, value = line.partition("=")
            if sep and key in kind_of:
                name = value
                m = re.match(r"\((\d+)\)(?: (.*))?$", value)
                if m:
                    table_ = names[kind_of[key]]
                    if m.group(2) is not None:
                        table_[m.group(1)] = m.group(2)
                    name = table_.get(m.group(1), value)
                if key == "fn":
                    fn = name
                elif key == "cfn":
                    cfn = name
            elif key == "calls" and sep:
                call_pending = True
            elif line.startswith("positions:"):
                positions = len(line.split()) - 1
    return self_cost, incl_cost


def annotate(path, inclusive):
    return parse(path)[1 if inclusive else 0]


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
    own = {k: v for k, v in incl_cost.items() if re.search(r"(^|[<&( ])harp::", k)}
    table(f"Top {top} of harp's own functions (and hooks) by inclusive instructions per request",
          sorted(own.items(), key=lambda kv: -kv[1]), total, None, top)
    if floor_self:
        beyond = {k: v - floor_self.get(k, 0) for k, v in self_cost.items()}
        table(f"Top {top} functions by self instructions per request beyond the floor (target - floor)",
              sorted(beyond.items(), key=lambda kv: -kv[1]), total, None, top)


if __name__ == "__main__":
    main()
