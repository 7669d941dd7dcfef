#!/usr/bin/env bash
# Installs what bench/run.sh needs on Debian/Ubuntu: nginx (backend + stub Nextcloud),
# haproxy (the reference proxy), wrk (load generator), plus curl and taskset (util-linux).
# nginx-light is enough: the benchmark only uses `return`, `map` and `location`.
set -euo pipefail

pkgs=(nginx-light haproxy wrk curl util-linux procps)

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
echo "setup done: $(nginx -v 2>&1); $(haproxy -v | head -1); $(wrk -v 2>&1 | head -1)"
