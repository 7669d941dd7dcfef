#!/bin/sh
# Entrypoint shaped like HaRP's exapps_dev/start.sh (harp-behaviour.md §10.4): with HP_SHARED_KEY
# set (AppAPI's FRP mode), write an frpc config from the environment AppAPI passes at create and
# start the FRP client in the background; TLS with the certificates install_certificates copied
# to /certs/frp when that folder exists. Then run the app.
# Difference from HaRP: busybox httpd cannot listen on /tmp/exapp.sock, so the proxy goes to the
# app's loopback TCP port EXAPP_HTTPD_PORT (an info.xml environment variable of this test app).
set -eu
if [ -n "${HP_SHARED_KEY:-}" ]; then
    if [ -d /certs/frp ]; then
        tls='transport.tls.enable = true
transport.tls.certFile = "/certs/frp/client.crt"
transport.tls.keyFile = "/certs/frp/client.key"
transport.tls.trustedCaFile = "/certs/frp/ca.crt"
transport.tls.serverName = "harp.nc"'
    else
        tls='transport.tls.enable = false'
    fi
    cat >/frpc.toml <<CONFIG
serverAddr = "${HP_FRP_ADDRESS}"
serverPort = ${HP_FRP_PORT}
loginFailExit = false
${tls}
metadatas.token = "${HP_SHARED_KEY}"

[[proxies]]
name = "${APP_ID}"
type = "tcp"
localIP = "127.0.0.1"
localPort = ${EXAPP_HTTPD_PORT}
remotePort = ${APP_PORT}
CONFIG
    harp tunnel -c /frpc.toml &
fi
exec "$@"
