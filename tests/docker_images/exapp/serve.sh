#!/bin/sh
# The "ExApp": busybox httpd on 127.0.0.1:EXAPP_HTTPD_PORT serving AppAPI's /heartbeat and a CGI
# that shows what the gateway forwarded.
set -eu
www=/tmp/www
mkdir -p "$www/cgi-bin"
printf '{"status":"ok","app":"%s","nonce":"%s"}' "$APP_ID" "${EXAPP_NONCE:-}" >"$www/heartbeat"
cp /exapp/whoami "$www/cgi-bin/whoami"
exec httpd -f -p "127.0.0.1:${EXAPP_HTTPD_PORT}" -h "$www"
