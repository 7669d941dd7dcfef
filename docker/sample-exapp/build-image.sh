#!/usr/bin/env bash
# Builds harp-sample-exapp:local from Debian's busybox-static (apt-get install busybox-static),
# without pulling anything.
set -euo pipefail
cd "$(dirname "$0")"
tag=${1:-harp-sample-exapp:local}
[ -x /bin/busybox ] || { echo "needs /bin/busybox: apt-get install busybox-static" >&2; exit 1; }
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp Dockerfile "$ctx/"
cp /bin/busybox "$ctx/busybox"
mkdir -p "$ctx/www/public"
echo "Hello from the sample ExApp" >"$ctx/www/public/index.html"
docker build -q -t "$tag" "$ctx" >/dev/null
echo "$tag"
