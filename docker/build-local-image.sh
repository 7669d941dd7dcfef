#!/usr/bin/env bash
# Builds the harp-rs image without pulling anything: a FROM-scratch image holding the host-built
# binary, the shared libraries it links (from ldd), the system CA bundle (Nextcloud over HTTPS)
# and an empty /tmp and /certs.
# Usage: docker/build-local-image.sh [TAG] [BINARY]
#   (defaults: harp-rs:local, $CARGO_TARGET_DIR/release/harp, else target/release/harp)
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-harp-rs:local}
bin=${2:-${CARGO_TARGET_DIR:-target}/release/harp}
[ -x "$bin" ] || cargo build --release --bin harp

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
install -D -m 0755 "$bin" "$root/usr/local/bin/harp"
# Every shared object the binary loads, at the same path, plus the dynamic loader.
ldd "$bin" | awk '$3 ~ /^\// {print $3} $1 ~ /^\/.*ld-linux/ {print $1}' | while read -r lib; do
  install -D -m 0755 "$lib" "$root$lib"
done
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
fi
mkdir -p "$root/tmp" "$root/certs"
chmod 1777 "$root/tmp"
printf 'root:x:0:0:root:/:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/:/usr/sbin/nologin\n' >"$root/etc/passwd"
docker build -q -f docker/Dockerfile.local -t "$tag" "$root" >/dev/null
echo "$tag"
