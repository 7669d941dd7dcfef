#!/usr/bin/env bash
# Installs what bench/run.sh needs on Debian/Ubuntu: nginx (backend + stub Nextcloud),
# haproxy (the reference proxy), wrk (load generator), plus curl (bulk transfers, pre-checks),
# taskset (util-linux), pgrep (procps), ss (iproute2, free-port checks), valgrind (callgrind.sh's
# instruction counts) and python3 (the connection-holding client of connections.sh), then builds
# bench/wsbench (WebSocket echo server and load tool) and bench/floor (a do-nothing Pingora proxy);
# both need the Rust toolchain harp-rs needs.
# nginx-light is enough: the benchmark only uses `return`, `map`, `location` and static files.
set -euo pipefail

pkgs=(nginx-light haproxy wrk curl util-linux procps iproute2 valgrind python3)

if [[ $(id -u) -eq 0 ]]; then
    sudo=()
else
    sudo=(sudo)
fi

"${sudo[@]}" apt-get update
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}"

# The Debian package starts a system-wide nginx (and haproxy) on port 80 (and their default
# config). The benchmark starts its own instances on free loopback ports and does not need them;
# they are left alone here on purpose. To stop them:  systemctl disable --now nginx haproxy

# wsbench and floor (the do-nothing Pingora proxy of bench/callgrind.sh) have their own Cargo workspaces
# and target dirs (bench/wsbench/target, bench/floor/target); run.sh and callgrind.sh would build them too.
bench_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if command -v cargo >/dev/null; then
    cargo build --release --manifest-path "$bench_dir/wsbench/Cargo.toml"
    cargo build --release --manifest-path "$bench_dir/floor/Cargo.toml"
else
    echo "cargo not found: install Rust (rustup) to build bench/wsbench and bench/floor; the WebSocket and floor rows need them" >&2
fi

echo "setup done: $(nginx -v 2>&1); $(haproxy -v | head -1); $(wrk -v 2>&1 | head -1)"
