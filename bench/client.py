#!/usr/bin/env python3
"""Load helpers of bench/callgrind.sh and bench/connections.sh (standard library only, loopback only).

  client.py phases URL PID OUTDIR N...
      One keep-alive HTTP/1.1 connection to URL. For each N: send N sequential GET requests (each answer
      must be 200 with the backend's body), wait a moment, then have callgrind dump its counts
      (`callgrind_control --dump=phase-K PID`; the dump resets them), so dump K holds exactly phase K.
      N = 0 is an idle phase (sleeps IDLE_SECONDS instead): it measures what the process does on its own.
      Prints one line per phase: "phase K N SECONDS". Fails when an answer is wrong or the connection
      had to be reopened (a new connection would add an accept to a phase).

  client.py hold HOST:PORT N
      Opens N TCP connections that never send anything, prints "ready OPENED FAILED", and keeps them
      until stdin closes; then prints "alive ALIVE CLOSED", where CLOSED are connections the server
      closed (or reset) meanwhile, and exits (closing the rest).
"""

import http.client
import os
import select
import socket
import subprocess
import sys
import time

EXPECTED_BODY = b"hello from backend\n"
SETTLE_SECONDS = 0.5   # after a phase's last answer, before the dump: the server finishes its bookkeeping
IDLE_SECONDS = float(os.environ.get("IDLE_SECONDS", "3"))


def phases(url, pid, outdir, counts):
    if not url.startswith("http://"):
        sys.exit("phases: URL must be http://HOST:PORT/PATH")
    hostport, _, path = url[len("http://"):].partition("/")
    host, _, port = hostport.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.connect()
    sock = conn.sock
    for k, n in enumerate(counts, start=1):
        start = time.monotonic()
        if n == 0:
            time.sleep(IDLE_SECONDS)
        for i in range(n):
            conn.request("GET", "/" + path)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200 or body != EXPECTED_BODY:
                sys.exit(f"phase {k}, request {i + 1}: HTTP {resp.status}, body {body[:80]!r}")
            if conn.sock is not sock:
                sys.exit(f"phase {k}, request {i + 1}: the connection was reopened")
        elapsed = time.monotonic() - start
        time.sleep(SETTLE_SECONDS)
        subprocess.run(["callgrind_control", f"--dump=phase-{k}", str(pid)], check=True,
                       stdout=subprocess.DEVNULL, cwd=outdir)
        print(f"phase {k} {n} {elapsed:.2f}", flush=True)
    conn.close()


def hold(hostport, n):
    host, _, port = hostport.rpartition(":")
    socks, failed = [], 0
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(10)
        try:
            s.connect((host, int(port)))
            s.setblocking(False)
            socks.append(s)
        except OSError:
            s.close()
            failed += 1
    print(f"ready {len(socks)} {failed}", flush=True)
    # Wait for stdin to close (the caller keeps the write end of a fifo while it measures).
    while True:
        r, _, _ = select.select([sys.stdin], [], [])
        if r and not sys.stdin.buffer.read1(4096):
            break
    alive = closed = 0
    for s in socks:
        try:
            data = s.recv(1, socket.MSG_PEEK)
            if data:
                alive += 1      # the server sent something (it never should); still open
            else:
                closed += 1     # orderly close by the server
        except BlockingIOError:
            alive += 1          # nothing to read: still open
        except OSError:
            closed += 1         # reset by the server
        s.close()
    print(f"alive {alive} {closed}", flush=True)


def main():
    args = sys.argv[1:]
    if len(args) >= 4 and args[0] == "phases":
        phases(args[1], int(args[2]), args[3], [int(n) for n in args[4:]])
    elif len(args) == 3 and args[0] == "hold":
        hold(args[1], int(args[2]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
