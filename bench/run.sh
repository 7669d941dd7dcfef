#!/usr/bin/env bash
# Side-by-side loopback benchmark of harp-rs against a direct backend and HAProxy, all in one run:
#
#  * HTTP requests/s (wrk): a direct nginx backend, HAProxy as a plain proxy, and harp-rs on a PUBLIC route,
#    a PUBLIC route with brute-force protection, a USER route with a session cookie and with Basic auth (both
#    answered from harp's session cache), a Basic-auth USER route with the cache off (one Nextcloud user-info
#    call per request), and a PUBLIC route to an ExApp behind `harp tunnel` (harp's FRP client), reached
#    in-process and through harp's loopback listener.
#  * WebSocket round trips/s (bench/wsbench): an echo server direct, via HAProxy and via harp.
#  * Bulk transfer MB/s (curl): one large file direct, via HAProxy, via harp and via harp's tunnel.
#  * Memory and start-up: harp's idle RSS, RSS per 1,000 idle WebSockets, time from exec to first answer.
#
# Method (docs: bench/README.md, design/pingora-notes.md §e): wrk -t1 -c32 with keep-alive, a 1 s warm-up
# before every measured run, ROUNDS rounds with the targets interleaved inside each round (so slow drift of
# the machine hits every target alike), medians over the rounds. Every ratio is to a baseline of the same run.
#
# Everything listens on 127.0.0.1 only and is stopped on exit. Settings (environment):
#   DURATION=5      seconds per measured run          ROUNDS=3      interleaved rounds
#   WARMUP=1        seconds of warm-up per run        CONNECTIONS=32  wrk connections (one wrk thread)
#   WS_CONNECTIONS=32  concurrent WebSockets of the round-trip rows
#   BULK_MB=256     size of the bulk-transfer file (MiB)
#   IDLE_WS=2000    idle WebSockets opened for the RSS-per-WebSocket row
#   COLD_STARTS=5   measured harp starts for the cold-start row (median)
#   TUNNEL_TLS=1    tunnel with TLS (mutual, harp's generated certificates, as in production); 0 = plain TCP
#   PIN=1           pin servers / load generators to CPUs if possible (0 = never)
#   SERVER_CPU=0 CLIENT_CPU=1   the CPUs used when pinning
#   HARP=1          0 = leave harp-rs out (direct + HAProxy only)
#   HARP_BIN=<repo>/target/release/harp   built with `cargo build --release` when missing
#   KEEP_TMP=0      1 = keep the temp dir (configs, logs, raw wrk output)
#   FLOOR=1         0 = leave out the floor row (bench/floor, a do-nothing Pingora proxy)
#   CALLGRIND=1     0 = leave out bench/callgrind.sh (instructions per request; about 3 minutes)
#   CONNS=1         0 = leave out bench/connections.sh (RSS per idle connection, flood; about 15 s)
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)

DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1}
CONNECTIONS=${CONNECTIONS:-32}
WS_CONNECTIONS=${WS_CONNECTIONS:-32}
BULK_MB=${BULK_MB:-256}
IDLE_WS=${IDLE_WS:-2000}
COLD_STARTS=${COLD_STARTS:-5}
TUNNEL_TLS=${TUNNEL_TLS:-1}
PIN=${PIN:-1}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
HARP=${HARP:-1}
HARP_BIN=${HARP_BIN:-$REPO_DIR/target/release/harp}
KEEP_TMP=${KEEP_TMP:-0}
FLOOR=${FLOOR:-1}
CALLGRIND=${CALLGRIND:-1}
CONNS=${CONNS:-1}
FLOOR_DIR=$BENCH_DIR/floor
FLOOR_BIN=${FLOOR_BIN:-$FLOOR_DIR/target/release/floor}
# Hooks for the scripts that source this one (callgrind.sh runs servers under valgrind, which starts slowly;
# connections.sh holds thousands of connections through HAProxy).
HARP_WRAP=() HAPROXY_WRAP=()
START_TIMEOUT=${START_TIMEOUT:-15}   # seconds a server gets to answer its readiness check
HAPROXY_MAXCONN=${HAPROXY_MAXCONN:-4096}
WSBENCH_DIR=$BENCH_DIR/wsbench
WSBENCH=$WSBENCH_DIR/target/release/wsbench

readonly IP=127.0.0.1                 # the only address anything here binds to or connects to
readonly APP_ID=bench                 # ExApp served by the nginx backend (HTTP rows)
readonly WS_APP_ID=benchws            # ExApp served by the WebSocket echo server
readonly TUN_APP_ID=benchtun          # ExApp behind `harp tunnel`, gateway reaches it in-process
readonly TUNLO_APP_ID=benchtunlo      # ExApp behind `harp tunnel`, gateway goes through 127.0.0.1:<port>
readonly SHARED_KEY=bench-shared-key
readonly SESSION_COOKIE="Cookie: oc_sessionPassphrase=benchsession"
readonly BASIC_AUTH="Authorization: Basic YmVuY2g6YmVuY2g="   # bench:bench
readonly EXPECTED_BODY="hello from backend"

# ---------------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------------

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

# curl that can never leave loopback through an http_proxy variable of the caller.
lcurl() { curl --noproxy '*' --silent --show-error --max-time 5 "$@"; }

# Median of numbers (average of the two middle ones for an even count).
median() {
    printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 }
        END { if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# Float formatting without relying on bash arithmetic (which is integer-only).
fmt() { awk -v f="$1" -v v="$2" 'BEGIN { if (v == "nan" || v == "") print "n/a"; else printf f, v }'; }

# free_port VAR [LOW HIGH]: store an unused loopback TCP port in VAR. By default ports come from below the
# kernel's ephemeral range, so no outgoing connection (wrk's, curl's) can hold the port we are about to bind;
# LOW HIGH choose another range (the tunnel's remote ports must be in 23000-23999). A port counts as free
# when no socket in any state uses it (ss, if present) and nothing accepts a connection on it.
USED_PORTS=" "
free_port() {
    local _fp_port _fp_low _fp_high _fp_in_use=""   # prefixed: printf -v must not hit a local of ours
    if (($# == 3)); then
        _fp_low=$2 _fp_high=$3
    else
        read -r _fp_high _ </proc/sys/net/ipv4/ip_local_port_range
        ((_fp_high > 12000)) || _fp_high=32768
        _fp_low=10000 _fp_high=$((_fp_high - 1))
    fi
    command -v ss >/dev/null && _fp_in_use=" $(ss -Htan | awk '{ sub(/.*:/, "", $4); print $4 }' | sort -u | tr '\n' ' ')"
    for _ in $(seq 200); do
        _fp_port=$((_fp_low + RANDOM % (_fp_high - _fp_low + 1)))
        [[ $USED_PORTS == *" $_fp_port "* || $_fp_in_use == *" $_fp_port "* ]] && continue
        if (exec 3<>"/dev/tcp/$IP/$_fp_port") 2>/dev/null; then continue; fi
        USED_PORTS+="$_fp_port "
        printf -v "$1" '%s' "$_fp_port"
        return 0
    done
    die "no free loopback port found in $_fp_low-$_fp_high"
}

# log_tail FILE: the last lines of a server log, for error messages (the temp dir is removed on exit).
log_tail() { tail -n 5 "$1" 2>/dev/null | sed 's/^/    /'; }

# Process bookkeeping: every process started here is recorded and stopped by cleanup().
STARTED_PIDS=()
cleanup() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED_PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n ${TMP:-} && -d $TMP ]]; then
        if [[ $KEEP_TMP == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM   # turns a signal into a normal exit, so the EXIT trap cleans up

# wait_http URL PID [SECONDS]: wait (max 15 s by default) until URL answers 2xx; fail early if PID has died.
# A deadline, not a number of tries: one try can take up to a second (a proxy retrying a refused upstream).
wait_http() {
    local url=$1 pid=$2 deadline=$((EPOCHSECONDS + ${3:-15}))
    while ((EPOCHSECONDS < deadline)); do
        lcurl --fail --output /dev/null --max-time 1 "$url" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# wait_for_line FILE PATTERN PID SECONDS: wait until a line of FILE matches PATTERN (grep -E); fail when PID
# dies or after SECONDS.
wait_for_line() {
    local file=$1 pattern=$2 pid=$3 tries=$(($4 * 10))
    for _ in $(seq "$tries"); do
        grep -qE "$pattern" "$file" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# stop_now PID: SIGKILL and reap one of our processes (for throw-away instances: harp's SIGTERM drains 5 s).
stop_now() {
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# cpu_ticks PID...: CPU time (utime + stime, in clock ticks) of the processes, all their threads included.
# Several pids: a target whose work is split over processes (harp + its tunnel client) is charged for all.
cpu_ticks() {
    local pid stat fields total=0
    for pid in "$@"; do
        stat=$(<"/proc/$pid/stat")
        stat=${stat##*) }          # drop "pid (comm) " - comm may contain spaces
        read -ra fields <<<"$stat" # fields[0] is field 3 (state): utime (14) is [11], stime (15) is [12]
        total=$((total + fields[11] + fields[12]))
    done
    echo "$total"
}

# rss_kb PID: resident set size (VmRSS) in KiB.
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# ---------------------------------------------------------------------------------------------------------
# Environment checks, CPU pinning
# ---------------------------------------------------------------------------------------------------------

check_requirements() {
    local missing=() tool
    for tool in nginx haproxy wrk curl pgrep timeout mkfifo; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    if ((${#missing[@]})); then
        die "missing: ${missing[*]}. Install with: bench/setup.sh  (or: sudo apt-get install -y nginx-light haproxy wrk curl procps coreutils)"
    fi
    [[ $DURATION =~ ^[0-9]+$ && $DURATION -ge 1 ]] || die "DURATION must be a whole number of seconds >= 1"
    [[ $ROUNDS =~ ^[0-9]+$ && $ROUNDS -ge 1 ]] || die "ROUNDS must be >= 1"
    [[ $WARMUP =~ ^[0-9]+$ ]] || die "WARMUP must be a whole number of seconds"
    local var
    for var in CONNECTIONS WS_CONNECTIONS BULK_MB IDLE_WS COLD_STARTS; do
        [[ ${!var} =~ ^[0-9]+$ && ${!var} -ge 1 ]] || die "$var must be a whole number >= 1"
    done
}

# Idle WebSockets cost file descriptors: harp holds two per WebSocket (client + upstream), the echo server and
# wsbench one each. Raise the soft limit to the hard one (children inherit it); with a low hard limit, open
# fewer WebSockets and say so in the report.
FD_NOTE=""
raise_fd_limit() {
    local hard need=$((2 * IDLE_WS + 1000))
    hard=$(ulimit -Hn)
    if [[ $hard == unlimited ]]; then hard=1048576; fi
    ulimit -n "$hard" 2>/dev/null || true
    if (($(ulimit -n) < need)); then
        local fewer=$((($(ulimit -n) - 1000) / 2))
        ((fewer >= 100)) || fewer=100
        FD_NOTE="ulimit -n is $(ulimit -n) (hard limit $hard), too low for $IDLE_WS idle WebSockets; opened $fewer"
        log "warning: $FD_NOTE"
        IDLE_WS=$fewer
    fi
}

# wrk on one CPU and all servers on another keeps the load generator from stealing the servers' CPU.
# Without taskset or with fewer than two usable CPUs the run is unpinned (and says so).
PIN_SERVER=()
PIN_CLIENT=()
PINNING="unpinned"
setup_pinning() {
    [[ $PIN == 1 ]] || return 0
    command -v taskset >/dev/null || return 0
    (($(nproc) >= 2)) || return 0
    taskset -c "$SERVER_CPU" true 2>/dev/null && taskset -c "$CLIENT_CPU" true 2>/dev/null || return 0
    PIN_SERVER=(taskset -c "$SERVER_CPU")
    PIN_CLIENT=(taskset -c "$CLIENT_CPU")
    PINNING="pinned: wrk, wsbench and curl on CPU $CLIENT_CPU; nginx (backend + stub Nextcloud), HAProxy, the WebSocket echo server, harp-rs and its tunnel clients share CPU $SERVER_CPU"
}

# ---------------------------------------------------------------------------------------------------------
# Servers. Each start_* records the pid whose CPU is measured in SERVER_PID[role], or the reason the role
# is unavailable in SERVER_DOWN[role].
# ---------------------------------------------------------------------------------------------------------

declare -A SERVER_PID=()
declare -A SERVER_DOWN=()

# nginx: the backend ("hello from backend" on every path, one large file for the bulk rows) and the stub
# Nextcloud (the two HaRP callbacks), one worker process, so "direct" is the single-core ceiling the proxies
# are compared to.
start_nginx() {
    local dir=$TMP/nginx temp_paths="" module
    mkdir -p "$dir/temp" "$dir/www/public"
    # Temp paths must point into our dir: the compiled-in /var/lib/nginx may not be writable.
    for module in client_body proxy fastcgi uwsgi scgi; do
        [[ $module != client_body ]] && nginx -V 2>&1 | grep -q -- "--without-http_${module}_module" && continue
        temp_paths+="    ${module}_temp_path $dir/temp/$module;"$'\n'
    done
    # The bulk file: real zero-filled blocks (not a sparse file), served with sendfile like a static asset.
    # nginx's worker may run as another user (nobody when started as root): it must be able to reach the file
    # through the (mktemp 0700) temp dir.
    dd if=/dev/zero of="$dir/www/public/bulk.bin" bs=1M count="$BULK_MB" status=none
    chmod a+x "$TMP" "$dir" "$dir/www" "$dir/www/public"
    chmod a+r "$dir/www/public/bulk.bin"

    cat >"$dir/nginx.conf" <<'EOF'
worker_processes 1;
pid @DIR@/nginx.pid;
error_log @DIR@/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
@TEMP_PATHS@
    # The backend (ExApp stand-in).
    server {
        listen @IP@:@BACKEND_PORT@;
        default_type text/plain;
        location / { return 200 "hello from backend\n"; }
        location = /public/bulk.bin { root @DIR@/www; sendfile on; default_type application/octet-stream; }
    }

    # The stub Nextcloud: answers like AppAPI's harp/exapp-meta and harp/user-info (spec: appapi-contract §9).
    # One ExApp record per app id. bench: the HTTP rows, with a brute-force-protected PUBLIC route ^/bf (its
    # protected status 401 never happens: the check runs, no strike is added). benchtun / benchtunlo: the
    # same backend behind `harp tunnel` on the given tunnel ports (harp grants an ExApp port only to the
    # ExApp recorded with it, so the proxy name is the app id). benchws: the WebSocket echo server.
    map $arg_appId $bench_exapp {
        default "";
        "@APP_ID@" '{"exapp_token":"tok","exapp_version":"1.0.0","host":"@IP@","port":@BACKEND_PORT@,"routes":[{"url":"^/public","access_level":0,"bruteforce_protection":[]},{"url":"^/user","access_level":1,"bruteforce_protection":[]},{"url":"^/bf","access_level":0,"bruteforce_protection":[401]}]}';
        "@TUN_APP_ID@" '{"exapp_token":"tok","exapp_version":"1.0.0","host":"@IP@","port":@TUN_PORT@,"routes":[{"url":"^/public","access_level":0,"bruteforce_protection":[]}]}';
        "@TUNLO_APP_ID@" '{"exapp_token":"tok","exapp_version":"1.0.0","host":"@IP@","port":@TUNLO_PORT@,"routes":[{"url":"^/public","access_level":0,"bruteforce_protection":[]}]}';
        "@WS_APP_ID@" '{"exapp_token":"tok","exapp_version":"1.0.0","host":"@IP@","port":@WS_PORT@,"routes":[{"url":"^/ws","access_level":0,"bruteforce_protection":[]}]}';
    }
    map $http_harp_shared_key $bench_key_ok { "@SHARED_KEY@" 1; default 0; }
    map "$cookie_oc_sessionPassphrase|$http_authorization" $bench_has_credentials { "|" 0; default 1; }
    server {
        listen @IP@:@NC_PORT@;
        default_type application/json;
        location = /index.php/apps/app_api/harp/exapp-meta {
            if ($bench_exapp = "") { return 401 '{"message":"Harp shared key is not valid"}'; }
            if ($bench_key_ok = 0) { return 401 '{"message":"Harp shared key is not valid"}'; }
            return 200 $bench_exapp;
        }
        location = /index.php/apps/app_api/harp/user-info {
            if ($bench_key_ok = 0) { return 401 '{"message":"Harp shared key is not valid"}'; }
            if ($bench_has_credentials = 0) { return 200 '{"user_id":"","access_level":0}'; }
            return 200 '{"user_id":"bench","access_level":1}';
        }
        location / { return 404 '{"message":"not served by the stub Nextcloud"}'; }
    }
}
EOF
    # Fill in the placeholders (the template is quoted so nginx's own $variables stay untouched).
    TEMP_PATHS=$temp_paths awk -v dir="$dir" -v ip="$IP" -v bp="$BACKEND_PORT" -v np="$NC_PORT" \
        -v key="$SHARED_KEY" -v app="$APP_ID" -v tunapp="$TUN_APP_ID" -v tunport="$TUN_PORT" \
        -v tunloapp="$TUNLO_APP_ID" -v tunloport="$TUNLO_PORT" -v wsapp="$WS_APP_ID" -v wsport="$WS_PORT" '
        /^@TEMP_PATHS@$/ { printf "%s", ENVIRON["TEMP_PATHS"]; next }
        { gsub(/@DIR@/, dir); gsub(/@IP@/, ip); gsub(/@BACKEND_PORT@/, bp); gsub(/@NC_PORT@/, np)
          gsub(/@SHARED_KEY@/, key); gsub(/@APP_ID@/, app); gsub(/@TUN_APP_ID@/, tunapp)
          gsub(/@TUN_PORT@/, tunport); gsub(/@TUNLO_APP_ID@/, tunloapp); gsub(/@TUNLO_PORT@/, tunloport)
          gsub(/@WS_APP_ID@/, wsapp); gsub(/@WS_PORT@/, wsport); print }' \
        "$dir/nginx.conf" >"$dir/nginx.conf.new"
    mv "$dir/nginx.conf.new" "$dir/nginx.conf"

    nginx -t -q -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" || die "nginx config test failed ($dir/nginx.conf)"
    "${PIN_SERVER[@]}" nginx -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" -g 'daemon off;' \
        >"$dir/stdout.log" 2>&1 &
    local master=$!
    STARTED_PIDS+=("$master")
    wait_http "http://$IP:$BACKEND_PORT/" "$master" || die "nginx did not start:"$'\n'"$(log_tail "$dir/error.log")"
    # Requests are served by the worker, so its CPU (not the idle master's) is what we measure.
    SERVER_PID[backend]=$(pgrep -P "$master" | head -1)
    [[ -n ${SERVER_PID[backend]} ]] || die "nginx worker process not found"
}

# HAProxy: the reference proxy. Plain forwarding (no auth), same prefix stripping as harp, one thread;
# /exapps/benchws/ goes to the WebSocket echo server (HAProxy passes the upgrade through on its own).
# Returns 1 with the reason in SERVER_DOWN[haproxy] when it does not start.
start_haproxy() {
    local dir=$TMP/haproxy
    mkdir -p "$dir"
    cat >"$dir/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn $HAPROXY_MAXCONN     # well below typical fd limits; wrk opens only $CONNECTIONS connections

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend bench
    bind $IP:$HAPROXY_PORT
    acl is_ws path_beg /exapps/$WS_APP_ID/
    use_backend wsecho if is_ws
    default_backend backend

backend backend
    http-request replace-path ^/exapps/$APP_ID(/.*)\$ \\1
    server nginx $IP:$BACKEND_PORT

backend wsecho
    http-request replace-path ^/exapps/$WS_APP_ID(/.*)\$ \\1
    server echo $IP:$WS_PORT
EOF
    if ! haproxy -c -q -f "$dir/haproxy.cfg"; then
        SERVER_DOWN[haproxy]="haproxy config test failed ($dir/haproxy.cfg)"
        return 1
    fi
    # -db: stay in the foreground as one process, so $! is the process that serves requests.
    "${PIN_SERVER[@]}" "${HAPROXY_WRAP[@]}" haproxy -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 &
    local pid=$!
    STARTED_PIDS+=("$pid")
    if ! wait_http "http://$IP:$HAPROXY_PORT/exapps/$APP_ID/public" "$pid" "$START_TIMEOUT"; then
        SERVER_DOWN[haproxy]="haproxy did not start:"$'\n'"$(log_tail "$dir/haproxy.log")"
        kill -TERM "$pid" 2>/dev/null || true
        return 1
    fi
    SERVER_PID[haproxy]=$pid
}

# wsbench (bench/wsbench, its own Cargo workspace): the WebSocket echo server and load tool, and the 1 ms
# start-up poller. Built when missing; the reason goes to WSBENCH_MISSING on failure.
WSBENCH_MISSING=""
build_wsbench() {
    [[ -x $WSBENCH && $WSBENCH -nt $WSBENCH_DIR/src/main.rs ]] && return 0
    log "building bench/wsbench (cargo build --release), log: $TMP/wsbench-build.log"
    if ! cargo build --release --manifest-path "$WSBENCH_DIR/Cargo.toml" >"$TMP/wsbench-build.log" 2>&1 || [[ ! -x $WSBENCH ]]; then
        WSBENCH_MISSING="bench/wsbench did not build: $(tail -n 3 "$TMP/wsbench-build.log" | tr '\n' ' ')"
        log "warning: $WSBENCH_MISSING"
    fi
}

# The WebSocket backend: wsbench's single-threaded echo server (the WebSocket counterpart of nginx).
start_ws_echo() {
    local dir=$TMP/wsecho
    mkdir -p "$dir"
    if [[ -n $WSBENCH_MISSING ]]; then SERVER_DOWN[wsecho]=$WSBENCH_MISSING; return 0; fi
    "${PIN_SERVER[@]}" "$WSBENCH" echo-server "$IP:$WS_PORT" >"$dir/echo.log" 2>&1 &
    local pid=$!
    STARTED_PIDS+=("$pid")
    if ! wait_for_line "$dir/echo.log" '^listening' "$pid" 10; then
        SERVER_DOWN[wsecho]="wsbench echo-server did not start: $(tail -n 3 "$dir/echo.log" | tr '\n' ' ')"
        return 0
    fi
    SERVER_PID[wsecho]=$pid
}

# The floor (bench/floor, its own Cargo workspace): a Pingora 0.9.1 proxy whose only hook is upstream_peer,
# one worker thread, mimalloc as harp: what Pingora itself costs per request. Built when missing or older
# than its source.
start_floor() {
    local dir=$TMP/floor
    mkdir -p "$dir"
    [[ $FLOOR == 1 ]] || { SERVER_DOWN[floor]="left out (FLOOR=$FLOOR)"; return 0; }
    if [[ ! -x $FLOOR_BIN || $FLOOR_BIN -ot $FLOOR_DIR/src/main.rs ]]; then
        log "building bench/floor (cargo build --release), log: $dir/build.log"
        cargo build --release --manifest-path "$FLOOR_DIR/Cargo.toml" >"$dir/build.log" 2>&1 || true
    fi
    if [[ ! -x $FLOOR_BIN ]]; then
        SERVER_DOWN[floor]="bench/floor did not build: $(tail -n 3 "$dir/build.log" | tr '\n' ' ')"
        return 0
    fi
    free_port FLOOR_PORT
    "${PIN_SERVER[@]}" "$FLOOR_BIN" "$IP:$FLOOR_PORT" "$IP:$BACKEND_PORT" >"$dir/floor.log" 2>&1 &
    local pid=$!
    STARTED_PIDS+=("$pid")
    if ! wait_http "http://$IP:$FLOOR_PORT/public" "$pid"; then
        SERVER_DOWN[floor]="bench/floor did not answer: $(tail -n 2 "$dir/floor.log" | tr '\n' ' ')"
        return 0
    fi
    SERVER_PID[floor]=$pid
}

# harp-rs: the gateway under test. One proxy thread (HP_THREADS=1) to match HAProxy's nbthread 1; every
# listener on its own free loopback port.
# build_harp: build target/release/harp when it is missing; the reason goes to HARP_MISSING on failure.
HARP_MISSING=""
build_harp() {
    [[ $HARP == 1 ]] || { HARP_MISSING="left out (HARP=$HARP)"; return 0; }
    [[ -x $HARP_BIN ]] && return 0
    log "building harp-rs (cargo build --release), log: $TMP/build.log"
    if ! (cd "$REPO_DIR" && cargo build --release) >"$TMP/build.log" 2>&1 || [[ ! -x $HARP_BIN ]]; then
        HARP_MISSING="cargo build --release failed or produced no $HARP_BIN: $(tail -n 3 "$TMP/build.log" | tr '\n' ' ')"
    fi
}

# launch_harp DIR [VAR=VALUE...]: start one harp-rs in the background, every listener on a fresh free port,
# certificates in DIR/certs (generated on the first start in DIR, reused afterwards). Extra settings override
# the defaults. Sets LAUNCHED_PID, LAUNCHED_AT (wall clock just before exec, for the cold-start row) and
# LAUNCHED_GATEWAY / LAUNCHED_OPS / LAUNCHED_FRP (ip:port).
launch_harp() {
    local dir=$1 port https_port frp_port ops_port
    shift
    mkdir -p "$dir/certs"
    free_port port; free_port https_port; free_port frp_port; free_port ops_port
    LAUNCHED_GATEWAY=$IP:$port LAUNCHED_OPS=$IP:$ops_port LAUNCHED_FRP=$IP:$frp_port
    LAUNCHED_AT=$EPOCHREALTIME
    # env -i: no HP_* setting of the caller's shell may change what is measured.
    env -i PATH="$PATH" HOME="${HOME:-/root}" \
        HP_SHARED_KEY="$SHARED_KEY" \
        NC_INSTANCE_URL="http://$IP:$NC_PORT" \
        HP_EXAPPS_ADDRESS="$IP:$port" \
        HP_EXAPPS_HTTPS_ADDRESS="$IP:$https_port" \
        HP_FRP_ADDRESS="$IP:$frp_port" \
        HP_OPS_ADDRESS="$IP:$ops_port" \
        HP_CERTS_DIR="$dir/certs" \
        HP_THREADS=1 \
        HP_LOG_LEVEL=error \
        "$@" \
        "${PIN_SERVER[@]}" "${HARP_WRAP[@]}" "$HARP_BIN" >>"$dir/harp.log" 2>&1 &
    LAUNCHED_PID=$!
    STARTED_PIDS+=("$LAUNCHED_PID")
}

# start_harp ROLE [VAR=VALUE...]: one harp-rs instance for the measured rows; its ExApp listener goes to
# HARP_ADDR[ROLE], its FRP listener to HARP_FRP[ROLE]. Several instances run side by side (they differ only
# in settings); idle ones cost nothing measurable.
declare -A HARP_ADDR=() HARP_FRP=()
start_harp() {
    local role=$1 dir=$TMP/$1
    shift
    if [[ -n $HARP_MISSING ]]; then SERVER_DOWN[$role]=$HARP_MISSING; return 0; fi
    launch_harp "$dir" "$@"
    local pid=$LAUNCHED_PID
    HARP_ADDR[$role]=$LAUNCHED_GATEWAY HARP_FRP[$role]=$LAUNCHED_FRP
    if ! wait_http "http://$LAUNCHED_OPS/heartbeat" "$pid" "$START_TIMEOUT"; then
        if kill -0 "$pid" 2>/dev/null; then
            SERVER_DOWN[$role]="no 2xx from GET /heartbeat on $LAUNCHED_OPS within $START_TIMEOUT s"
            kill -TERM "$pid" 2>/dev/null || true
        else
            SERVER_DOWN[$role]="$HARP_BIN exited before answering GET /heartbeat"
        fi
        SERVER_DOWN[$role]+="; log: $(tail -n 3 "$dir/harp.log" | tr '\n' ' ')"
        return 0
    fi
    SERVER_PID[$role]=$pid
}

# Settings of the harp instances that serve a tunnel: FRP over plain TCP when TUNNEL_TLS=0.
tunnel_harp_settings() {
    if [[ $TUNNEL_TLS == 1 ]]; then echo "HP_FRP_DISABLE_TLS=false"; else echo "HP_FRP_DISABLE_TLS=true"; fi
}

# start_tunnel ROLE APP_ID REMOTE_PORT: `harp tunnel` (harp's frpc-compatible client) exposing the nginx
# backend through the harp instance ROLE as proxy APP_ID on REMOTE_PORT, the way an ExApp's frpc does. The
# client's pid joins SERVER_PID[ROLE], so the target is charged for harp + client. Ready when the gateway
# answers through the tunnel.
start_tunnel() {
    local role=$1 app=$2 remote_port=$3 dir=$TMP/$1
    [[ -n ${SERVER_PID[$role]:-} ]] || return 0     # harp itself is down; SERVER_DOWN says why
    local frp=${HARP_FRP[$role]} certs=$dir/certs/frp tls
    if [[ $TUNNEL_TLS == 1 ]]; then
        # harp generated its FRP certificate set (CA, server, client) in its certs dir on start, as HaRP does;
        # the client presents the client certificate and checks the server against the CA (mutual TLS).
        tls="transport.tls.enable = true
transport.tls.certFile = \"$certs/client.crt\"
transport.tls.keyFile = \"$certs/client.key\"
transport.tls.trustedCaFile = \"$certs/ca.crt\"
transport.tls.serverName = \"harp.nc\""
    else
        tls="transport.tls.enable = false"
    fi
    cat >"$dir/frpc.toml" <<EOF
serverAddr = "${frp%:*}"
serverPort = ${frp##*:}
loginFailExit = false
$tls
metadatas.token = "$SHARED_KEY"
log.level = "warn"       # a refused proxy is logged as a warning; the reason lands in the report

[[proxies]]
name = "$app"
type = "tcp"
localIP = "$IP"
localPort = $BACKEND_PORT
remotePort = $remote_port
EOF
    "${PIN_SERVER[@]}" "$HARP_BIN" tunnel -c "$dir/frpc.toml" >"$dir/tunnel.log" 2>&1 &
    local pid=$!
    STARTED_PIDS+=("$pid")
    if ! wait_http "http://${HARP_ADDR[$role]}/exapps/$app/public" "$pid"; then
        SERVER_DOWN[$role]="no 2xx through the tunnel ($app on port $remote_port) within 15 s; client log: $(tail -n 2 "$dir/tunnel.log" | tr '\n' ' ')"
        unset "SERVER_PID[$role]"
        return 0
    fi
    SERVER_PID[$role]+=" $pid"
}

# ---------------------------------------------------------------------------------------------------------
# Targets. One line per target in define_targets. Targets come in three kinds, each with its own load tool
# and table: http (wrk, requests/s), ws (wsbench rtt, WebSocket round trips/s) and bulk (curl, MB/s). The first
# target of each kind is the baseline for that kind's ratios.
# ---------------------------------------------------------------------------------------------------------

T_NAME=() T_KIND=() T_ROLE=() T_URL=() T_HEADER=() T_SKIP=()

# add_kind_target KIND NAME ROLE URL [HEADER]: ROLE names the server(s) whose CPU is charged (a SERVER_PID
# key; its value may list several pids, e.g. harp and its tunnel client).
add_kind_target() {
    local kind=$1 role=$3 skip=""
    if [[ -z ${SERVER_PID[$role]:-} ]]; then
        skip=${SERVER_DOWN[$role]:-$role not started}
    elif [[ $kind == ws && -n $WSBENCH_MISSING ]]; then
        skip=$WSBENCH_MISSING
    fi
    T_KIND+=("$kind") T_NAME+=("$2") T_ROLE+=("$role") T_URL+=("$4") T_HEADER+=("${5:-}") T_SKIP+=("$skip")
}
add_target() { add_kind_target http "$@"; }      # add_target NAME ROLE URL [HEADER]
add_ws_target() { add_kind_target ws "$@"; }     # add_ws_target NAME ROLE URL
add_bulk_target() { add_kind_target bulk "$@"; } # add_bulk_target NAME ROLE URL

define_targets() {
    local harp="http://${HARP_ADDR[harp]:-}/exapps/$APP_ID" nocache="http://${HARP_ADDR[harp_nocache]:-}/exapps/$APP_ID"
    local tun="http://${HARP_ADDR[harp_tun]:-}/exapps/$TUN_APP_ID" tunlo="http://${HARP_ADDR[harp_tunlo]:-}/exapps/$TUNLO_APP_ID"
    local haproxy="http://$IP:$HAPROXY_PORT/exapps/$APP_ID"
    add_target "direct (nginx)"            backend      "http://$IP:$BACKEND_PORT/public"
    add_target "HAProxy (plain proxy)"     haproxy      "$haproxy/public"
    # The floor: Pingora 0.9 forwarding with nothing of harp's (bench/floor); same path after harp's prefix.
    add_target "floor: do-nothing Pingora" floor        "http://$IP:${FLOOR_PORT:-}/public"
    add_target "harp PUBLIC"               harp         "$harp/public"
    add_target "harp PUBLIC brute-force route" harp     "$harp/bf"
    add_target "harp USER cached cookie"   harp         "$harp/user" "$SESSION_COOKIE"
    add_target "harp USER Basic auth"      harp         "$harp/user" "$BASIC_AUTH"
    add_target "harp USER Basic, no cache" harp_nocache "$nocache/user" "$BASIC_AUTH"
    add_target "harp PUBLIC via tunnel, in-process"        harp_tun   "$tun/public"
    add_target "harp PUBLIC via tunnel, loopback listener" harp_tunlo "$tunlo/public"
    # The tunnel alone (wrk straight to the proxy's loopback listener, no gateway): what HaRP's
    # "frps alone 0.14" measured.
    add_target "tunnel alone (no gateway)"  harp_tunlo   "http://$IP:$TUNLO_PORT/public"

    add_ws_target "direct (echo server)"   wsecho  "ws://$IP:$WS_PORT/ws"
    add_ws_target "HAProxy (plain proxy)"  haproxy "ws://$IP:$HAPROXY_PORT/exapps/$WS_APP_ID/ws"
    add_ws_target "harp PUBLIC"            harp    "ws://${HARP_ADDR[harp]:-}/exapps/$WS_APP_ID/ws"

    add_bulk_target "direct (nginx)"                     backend    "http://$IP:$BACKEND_PORT/public/bulk.bin"
    add_bulk_target "HAProxy (plain proxy)"              haproxy    "$haproxy/public/bulk.bin"
    add_bulk_target "harp PUBLIC"                        harp       "$harp/public/bulk.bin"
    add_bulk_target "harp via tunnel, in-process"        harp_tun   "$tun/public/bulk.bin"
    add_bulk_target "harp via tunnel, loopback listener" harp_tunlo "$tunlo/public/bulk.bin"
}

# One real request (or transfer, or round trip) per target before measuring: wrk counts neither 3xx as errors
# nor looks at bodies, so a target that answers with a redirect or with the wrong content would otherwise be
# "measured".
precheck_targets() {
    local i
    for i in "${!T_NAME[@]}"; do
        [[ -z ${T_SKIP[$i]} ]] || continue
        T_SKIP[$i]=$("precheck_${T_KIND[$i]}" "$i")
    done
}

# precheck_KIND I: prints why target I cannot be measured; nothing when it is fine.
precheck_http() {
    local i=$1 code body args=(--output "$TMP/precheck.body" --write-out '%{http_code}')
    [[ -n ${T_HEADER[$i]} ]] && args+=(--header "${T_HEADER[$i]}")
    code=$(lcurl "${args[@]}" "${T_URL[$i]}" 2>/dev/null) || code="no answer"
    body=$(head -c 200 "$TMP/precheck.body" 2>/dev/null || true)
    if [[ $code != 200 || $body != "$EXPECTED_BODY" ]]; then
        echo "pre-check failed: HTTP $code, body '${body//$'\n'/ }' (expected 200 '$EXPECTED_BODY')"
    fi
}

precheck_ws() {
    local rate count p50 p99 errors
    read -r rate count p50 p99 errors < <(timeout 10 "$WSBENCH" rtt "${T_URL[$1]}" 1 1 2>"$TMP/precheck.err" || true) || true
    if [[ ${errors:-x} != 0 || ${count:-0} == 0 ]]; then
        echo "pre-check failed: no WebSocket echo from ${T_URL[$1]}: $(tail -n 2 "$TMP/precheck.err" | tr '\n' ' ')"
    fi
}

precheck_bulk() {
    local code size
    read -r code size < <(run_curl /dev/null "${T_URL[$1]}" '%{http_code} %{size_download}' || true) || true
    if [[ ${code:-} != 200 || ${size:-} != $((BULK_MB * 1048576)) ]]; then
        echo "pre-check failed: HTTP ${code:-no answer}, ${size:-0} bytes (expected 200, $((BULK_MB * 1048576)) bytes)"
    fi
}

# ---------------------------------------------------------------------------------------------------------
# Measurement. Per kind: run_KIND OUTFILE SECONDS URL HEADER runs the load, parse_KIND OUTFILE prints
# "rate count p50_ms p99_ms [problem...]" (count: what CPU time is divided by; problem: empty when clean).
# ---------------------------------------------------------------------------------------------------------

run_http() {
    local args=(-t1 "-c$CONNECTIONS" "-d${2}s" --latency)
    [[ -n $4 ]] && args+=(-H "$4")
    "${PIN_CLIENT[@]}" wrk "${args[@]}" "$3" >"$1" 2>&1 || true
}

# wrk prints us/ms/s/m units; rate = requests/s, count = requests.
parse_http() {
    awk '
        function ms(v,  n) { n = v + 0
            if (v ~ /us$/) return n / 1000; if (v ~ /ms$/) return n; if (v ~ /s$/) return n * 1000
            if (v ~ /m$/) return n * 60000; if (v ~ /h$/) return n * 3600000; return n }
        /^Requests\/sec:/           { rps = $2 }
        / requests in /             { req = $1 }
        $1 == "50%"                 { p50 = ms($2) }
        $1 == "99%"                 { p99 = ms($2) }
        /Non-2xx or 3xx responses:/ { non2xx = $NF }
        /Socket errors:/            { gsub(",", ""); sock = $4 + $6 + $8 + $10 }
        END { printf "%s %s %s %s", (rps == "" ? "nan" : rps), (req == "" ? 0 : req),
                     (p50 == "" ? "nan" : p50), (p99 == "" ? "nan" : p99)
              if (rps == "") printf " no result from wrk"
              else if (non2xx + sock > 0) printf " %d responses with status >= 400, %d socket errors", non2xx, sock
              print "" }' "$1"
}

# WebSocket round trips: WS_CONNECTIONS connections, each sends a 32-byte message and waits for its echo.
run_ws() {
    "${PIN_CLIENT[@]}" timeout $(($2 + 30)) "$WSBENCH" rtt "$3" "$WS_CONNECTIONS" "$2" >"$1" 2>"$1.err" || true
}

# wsbench prints "rps round_trips p50_ms p99_ms errors"; rate = round trips/s, count = round trips.
parse_ws() {
    awk -v err="$1.err" '
        NF == 5 { rate = $1; n = $2; p50 = $3; p99 = $4; errors = $5 }
        END { if (rate == "") { getline msg < err; print "nan 0 nan nan no result from wsbench: " msg; exit }
              printf "%s %s %s %s", rate, n, p50, p99
              if (errors > 0) printf " %d connections failed", errors
              print "" }' "$1"
}

# run_curl OUTPUT URL FORMAT: one GET, pinned like the other load generators (2 minutes at most).
run_curl() {
    "${PIN_CLIENT[@]}" curl --noproxy '*' --silent --max-time 120 --output "$1" --write-out "$3" "$2"
}

# One transfer of the bulk file (SECONDS is not used: a transfer takes as long as it takes).
run_bulk() {
    run_curl /dev/null "$3" '%{http_code} %{size_download} %{time_total}\n' >"$1" 2>&1 || true
}

# rate = MB/s (10^6 bytes), count = MiB transferred (so the CPU column is µs per MiB).
parse_bulk() {
    awk -v want=$((BULK_MB * 1048576)) '
        NF == 3 { code = $1; size = $2; secs = $3 }
        END { if (code != 200 || size != want || secs <= 0) {
                  printf "nan 0 nan nan transfer failed: HTTP %s, %s of %d bytes\n", code, size, want; exit }
              printf "%s %s nan nan\n", size / secs / 1e6, size / 1048576 }' "$1"
}

# Per-target results, one space-separated value per round.
declare -A R_RATE=() R_P50=() R_P99=() R_CPU=() R_ERRORS=()

measure_target() {
    local i=$1 round=$2 kind=${T_KIND[$i]} out=$TMP/load/$1.$2.txt
    local pids=${SERVER_PID[${T_ROLE[$i]}]}
    # Bulk: no warm-up run (the pre-check transfer already put the file in the page cache).
    if [[ $kind != bulk ]] && ((WARMUP > 0)); then
        "run_$kind" "$TMP/load/$i.$round.warmup.txt" "$WARMUP" "${T_URL[$i]}" "${T_HEADER[$i]}"
    fi
    local before after
    # shellcheck disable=SC2086   # one word per pid
    before=$(cpu_ticks $pids)
    "run_$kind" "$out" "$DURATION" "${T_URL[$i]}" "${T_HEADER[$i]}"
    # shellcheck disable=SC2086
    after=$(cpu_ticks $pids)

    local rate count p50 p99 problem cpu_us
    read -r rate count p50 p99 problem < <("parse_$kind" "$out")
    cpu_us=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$count" 'BEGIN { print (n > 0 ? t * 1e6 / hz / n : "nan") }')
    R_RATE[$i]+="$rate " R_P50[$i]+="$p50 " R_P99[$i]+="$p99 " R_CPU[$i]+="$cpu_us "
    [[ -z $problem ]] || R_ERRORS[$i]+="round $round: $problem (see $out)"$'\n'
    local latency=""
    [[ $kind == bulk ]] || latency="  p50 $(fmt '%.3f' "$p50") ms  p99 $(fmt '%.3f' "$p99") ms"
    log "round $round/$ROUNDS  $(printf '%-4s %-42s' "$kind" "${T_NAME[$i]}") $(fmt '%9.0f' "$rate") $(unit_of "$kind")$latency  cpu $(fmt '%.1f' "$cpu_us") us/$(count_unit_of "$kind")"
}

unit_of() { case $1 in http) echo "rps" ;; ws) echo "round trips/s" ;; bulk) echo "MB/s" ;; esac; }
count_unit_of() { case $1 in http) echo "req" ;; ws) echo "round trip" ;; bulk) echo "MiB" ;; esac; }

measure_all() {
    local round i
    mkdir -p "$TMP/load"
    for ((round = 1; round <= ROUNDS; round++)); do
        for i in "${!T_NAME[@]}"; do
            if [[ -z ${T_SKIP[$i]} ]]; then measure_target "$i" "$round"; fi
        done
    done
}

# ---------------------------------------------------------------------------------------------------------
# Memory and start-up, on fresh harp instances (the measured ones carry the allocations of the load).
# ---------------------------------------------------------------------------------------------------------

COLD_MS=() IDLE_RSS_KB=() COLD_SKIP="" MEM_PID="" MEM_GATEWAY=""

# Cold start: wall clock from just before exec of harp to the first 200 from its gateway for
# GET /exapps/bench/public (polled every 1 ms by wsbench wait-http; includes the one exapp-meta call to the
# stub Nextcloud). Start 0 generates the FRP certificates and is not counted; the others reuse them, as a
# restarted production harp does. After each counted start and its one request: VmRSS = idle RSS. The last
# instance stays up for measure_ws_memory.
measure_cold_starts() {
    local dir=$TMP/harp_cold i ready_ns url
    if [[ -n $HARP_MISSING ]]; then COLD_SKIP=$HARP_MISSING; return 0; fi
    if [[ -n $WSBENCH_MISSING ]]; then COLD_SKIP=$WSBENCH_MISSING; return 0; fi
    for ((i = 0; i <= COLD_STARTS; i++)); do
        launch_harp "$dir" HP_SESSION_LIFETIME=10
        url=http://$LAUNCHED_GATEWAY/exapps/$APP_ID/public
        if ! ready_ns=$("${PIN_CLIENT[@]}" "$WSBENCH" wait-http "$url" 15 2>>"$dir/wait.log"); then
            COLD_SKIP="no 200 from $url within 15 s: $(tail -n 1 "$dir/wait.log"); log: $(tail -n 3 "$dir/harp.log" | tr '\n' ' ')"
            stop_now "$LAUNCHED_PID"
            return 0
        fi
        if ((i > 0)); then
            COLD_MS+=("$(awk -v r="$ready_ns" -v s="$LAUNCHED_AT" 'BEGIN { printf "%.1f", (r / 1e9 - s) * 1000 }')")
            sleep 0.2   # let the answered request finish in harp before reading its memory
            IDLE_RSS_KB+=("$(rss_kb "$LAUNCHED_PID")")
        fi
        ((i == COLD_STARTS)) || stop_now "$LAUNCHED_PID"
    done
    MEM_PID=$LAUNCHED_PID MEM_GATEWAY=$LAUNCHED_GATEWAY
    log "cold start: ${COLD_MS[*]} ms; idle RSS: ${IDLE_RSS_KB[*]} KiB"
}

# RSS per 1,000 idle WebSockets: on the fresh instance, after one WebSocket round trip (the route's first
# use: ExApp metadata, first upstream connection), VmRSS before and after wsbench opens IDLE_WS WebSockets
# through harp to the echo server and holds them idle.
WS_MEM_SKIP="" WS_RSS_BEFORE_KB="" WS_RSS_AFTER_KB="" WS_OPEN=0
measure_ws_memory() {
    local dir=$TMP/harp_cold url failed hold_pid hold_fd
    if [[ -z $MEM_PID ]]; then WS_MEM_SKIP=${COLD_SKIP:-no fresh harp instance}; return 0; fi
    if [[ -z ${SERVER_PID[wsecho]:-} ]]; then WS_MEM_SKIP=${SERVER_DOWN[wsecho]:-no echo server}; return 0; fi
    url=ws://$MEM_GATEWAY/exapps/$WS_APP_ID/ws
    if ! timeout 10 "$WSBENCH" rtt "$url" 1 1 >/dev/null 2>>"$dir/hold.log"; then
        WS_MEM_SKIP="no WebSocket echo through $url: $(tail -n 1 "$dir/hold.log")"
        return 0
    fi
    sleep 0.5
    WS_RSS_BEFORE_KB=$(rss_kb "$MEM_PID")

    # wsbench hold keeps the WebSockets until its stdin closes: a fifo whose write end we hold.
    mkfifo "$dir/hold.in"
    "${PIN_CLIENT[@]}" "$WSBENCH" hold "$url" "$IDLE_WS" <"$dir/hold.in" >"$dir/hold.out" 2>>"$dir/hold.log" &
    hold_pid=$!
    STARTED_PIDS+=("$hold_pid")
    exec {hold_fd}>"$dir/hold.in"
    if wait_for_line "$dir/hold.out" '^ready' "$hold_pid" 120; then
        read -r _ WS_OPEN failed <"$dir/hold.out"
        sleep 1   # connections that just finished their handshake settle
        WS_RSS_AFTER_KB=$(rss_kb "$MEM_PID")
        ((failed == 0)) || WS_MEM_SKIP="$failed of $IDLE_WS WebSockets failed to open: $(tail -n 1 "$dir/hold.log")"
    else
        WS_MEM_SKIP="wsbench hold did not report ready within 120 s: $(tail -n 1 "$dir/hold.log")"
    fi
    exec {hold_fd}>&-
    for _ in $(seq 50); do kill -0 "$hold_pid" 2>/dev/null || break; sleep 0.1; done
    stop_now "$hold_pid"
    stop_now "$MEM_PID"
    log "RSS before / after $WS_OPEN idle WebSockets: $WS_RSS_BEFORE_KB / $WS_RSS_AFTER_KB KiB"
}

# run_part VAR SCRIPT WHAT: runs bench/SCRIPT (unless VAR=0) with this run's harp binary; its Markdown goes
# to $TMP/SCRIPT.md, its progress to stderr, its failure to $TMP/SCRIPT.failed.
run_part() {
    local var=$1 script=$2
    [[ ${!var} == 1 ]] || return 0
    if [[ -n $HARP_MISSING ]]; then echo "$HARP_MISSING" >"$TMP/$script.failed"; return 0; fi
    log "$3: bench/$script"
    if ! HARP_BIN=$HARP_BIN KEEP_TMP=$KEEP_TMP "$BENCH_DIR/$script" >"$TMP/$script.md" 2>"$TMP/$script.err"; then
        tail -n 3 "$TMP/$script.err" | tr '\n' ' ' >"$TMP/$script.failed"
    fi
    cat "$TMP/$script.err" >&2
}

# report_part VAR SCRIPT TITLE: the section of bench/SCRIPT, or why it is missing.
report_part() {
    local var=$1 script=$2
    [[ ${!var} == 1 ]] || return 0
    if [[ -s $TMP/$script.failed ]]; then
        echo "## $3"
        echo
        echo "not measured: bench/$script failed: $(<"$TMP/$script.failed")"
    else
        cat "$TMP/$script.md"
    fi
    echo
}

# ---------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------

report() {
    echo "# harp-rs loopback benchmark"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- machine: $(nproc) CPUs usable ($(grep -c '^processor' /proc/cpuinfo) online), $(cpu_model), kernel $(uname -r);" \
         "load average before / after: $LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg) (the run itself adds about 2)"
    echo "- method: wrk -t1 -c$CONNECTIONS -d${DURATION}s --latency, keep-alive; WebSockets: wsbench rtt with $WS_CONNECTIONS" \
         "connections, ${DURATION} s; bulk: one curl GET of a $BULK_MB MiB file per round; ${WARMUP} s warm-up before each" \
         "wrk/wsbench run, $ROUNDS interleaved rounds, medians over the rounds"
    echo "- CPU: $PINNING"
    echo "- servers: nginx $(nginx -v 2>&1 | sed 's|.*nginx/||') worker_processes 1;" \
         "$(haproxy -v | head -1 | awk '{print "HAProxy " $3}') nbthread 1; wsbench echo-server (one thread);" \
         "floor: bench/floor (Pingora 0.9.1, upstream_peer only, one thread);" \
         "harp-rs HP_THREADS=1, HP_SESSION_LIFETIME=10 (no cache: 0) ($(harp_version))"
    echo "- tunnel: \`harp tunnel\` (same binary) as the ExApp's FRP client, $(tunnel_description); proxy name = ExApp id," \
         "HP_FRP_STRICT_PORTS on (default); in-process: HP_TUNNEL_IN_PROCESS=true, loopback listener:" \
         "HP_TUNNEL_IN_PROCESS=false (default)"
    echo
    echo "## HTTP requests (wrk)"
    echo
    report_table http
    echo
    echo "## WebSocket round trips (wsbench rtt: $WS_CONNECTIONS connections, each sends 32 bytes and waits for the echo)"
    echo
    report_table ws
    echo
    echo "## Bulk transfer (one GET of a $BULK_MB MiB file, curl to /dev/null)"
    echo
    report_table bulk
    echo
    echo "## Memory and start-up (fresh harp instances, HP_THREADS=1)"
    echo
    report_memory
    echo
    report_part CALLGRIND callgrind.sh "Instructions per request (callgrind)"
    report_part CONNS connections.sh "Idle connections and a flood"
    echo
    echo "## Per round"
    echo
    report_rounds
    report_errors
    echo
    echo "Notes: p50/p99 are the load tool's latency percentiles (medians over the rounds). CPU µs per request," \
         "round trip or MiB is the user+system CPU time of the server(s) under test during the measured run divided" \
         "by what the load tool completed: the nginx worker (or the echo server) for direct, otherwise the proxy" \
         "alone; for the tunnel rows harp **plus the \`harp tunnel\` client process** (the backend's and stub" \
         "Nextcloud's CPU are never included). Ratio = median rate / median rate of the first row of the same table."
}

# tunnel_description: how the tunnel clients connect, for the report header.
tunnel_description() {
    if [[ $TUNNEL_TLS == 1 ]]; then
        echo "TLS with harp's generated certificates (mutual TLS, as HaRP's ExApps)"
    else
        echo "plain TCP (HP_FRP_DISABLE_TLS=true, TUNNEL_TLS=0)"
    fi
}

# report_table KIND: the Markdown table of one kind of target; the first target of the kind is the baseline.
report_table() {
    local kind=$1 i base="" base_name="" rate p50 p99 cpu ratio name
    for i in "${!T_NAME[@]}"; do
        [[ ${T_KIND[$i]} == "$kind" ]] || continue
        base_name=${T_NAME[$i]%% (*}
        # word splitting intended: one value per round
        [[ -z ${T_SKIP[$i]} ]] && base=$(median ${R_RATE[$i]})
        break
    done
    if [[ $kind == bulk ]]; then
        echo "| target | MB/s | CPU µs/MiB | ratio to $base_name |"
        echo "|---|---:|---:|---:|"
    else
        echo "| target | $(unit_of "$kind") | p50 | p99 | CPU µs/$(count_unit_of "$kind") | ratio to $base_name |"
        echo "|---|---:|---:|---:|---:|---:|"
    fi
    for i in "${!T_NAME[@]}"; do
        [[ ${T_KIND[$i]} == "$kind" ]] || continue
        name=${T_NAME[$i]}
        if [[ -n ${T_SKIP[$i]} ]]; then
            if [[ $kind == bulk ]]; then echo "| $name | not measured | | |"; else echo "| $name | not measured | | | | |"; fi
            continue
        fi
        [[ -n ${R_ERRORS[$i]:-} ]] && name+=" ⚠ errors"
        rate=$(median ${R_RATE[$i]}) p50=$(median ${R_P50[$i]}) p99=$(median ${R_P99[$i]}) cpu=$(median ${R_CPU[$i]})
        ratio=$(awk -v r="$rate" -v b="$base" 'BEGIN { if (b == "" || b == "nan" || r == "nan" || b == 0) print "nan"; else print r / b }')
        if [[ $kind == bulk ]]; then
            echo "| $name | $(fmt '%.0f' "$rate") | $(fmt '%.0f' "$cpu") | $(fmt '%.3f' "$ratio") |"
        else
            echo "| $name | $(fmt '%.0f' "$rate") | $(fmt '%.3f ms' "$p50") | $(fmt '%.3f ms' "$p99") | $(fmt '%.1f' "$cpu") | $(fmt '%.3f' "$ratio") |"
        fi
    done
}

# report_memory: idle RSS, RSS per 1,000 idle WebSockets, cold start, and the measured instance after the load.
report_memory() {
    local mib='{ printf "%.1f MiB\n", $1 / 1024 }'
    echo "| measurement | value | detail |"
    echo "|---|---:|---|"
    if ((${#IDLE_RSS_KB[@]})); then
        echo "| harp idle RSS (after start + one request) | $(median "${IDLE_RSS_KB[@]}" | awk "$mib") |" \
             "median of ${#IDLE_RSS_KB[@]} starts; each: $(printf '%s\n' "${IDLE_RSS_KB[@]}" | awk "$mib" | paste -sd ',' | sed 's/,/, /g') |"
        echo "| harp cold start (exec to first 200 from the gateway) | $(median "${COLD_MS[@]}") ms |" \
             "median of ${#COLD_MS[@]} starts, polled every 1 ms; each: $(printf '%s ' "${COLD_MS[@]}")ms |"
    else
        echo "| harp idle RSS (after start + one request) | not measured | $COLD_SKIP |"
        echo "| harp cold start (exec to first 200 from the gateway) | not measured | $COLD_SKIP |"
    fi
    if [[ -z $WS_MEM_SKIP && -n $WS_RSS_AFTER_KB ]]; then
        echo "| harp RSS per 1,000 idle WebSockets | $(awk -v a="$WS_RSS_AFTER_KB" -v b="$WS_RSS_BEFORE_KB" -v n="$WS_OPEN" \
            'BEGIN { printf "%.1f MiB", (a - b) * 1000 / n / 1024 }') |" \
             "$WS_OPEN idle WebSockets through harp: RSS $(awk "$mib" <<<"$WS_RSS_BEFORE_KB") before," \
             "$(awk "$mib" <<<"$WS_RSS_AFTER_KB") after${FD_NOTE:+; $FD_NOTE} |"
    else
        echo "| harp RSS per 1,000 idle WebSockets | not measured | ${WS_MEM_SKIP:-$COLD_SKIP}${FD_NOTE:+; $FD_NOTE} |"
    fi
    if [[ -n ${RSS_AFTER_LOAD_KB:-} ]]; then
        echo "| RSS of the measured harp after all rounds | $(awk "$mib" <<<"$RSS_AFTER_LOAD_KB") | for comparison: the instance that served the HTTP, WebSocket and bulk rows |"
    fi
}

report_rounds() {
    local i kind
    for kind in http ws bulk; do
        echo "$(unit_of "$kind") per round:"
        for i in "${!T_NAME[@]}"; do
            [[ ${T_KIND[$i]} == "$kind" ]] || continue
            if [[ -n ${T_SKIP[$i]} ]]; then
                echo "- ${T_NAME[$i]}: not measured: ${T_SKIP[$i]}"
            else
                echo "- ${T_NAME[$i]}: $(for v in ${R_RATE[$i]}; do fmt '%.0f\n' "$v"; done | paste -sd ' ')"
            fi
        done
        echo
    done
}

report_errors() {
    local i header_done=0 line
    for i in "${!T_NAME[@]}"; do
        [[ -n ${R_ERRORS[$i]:-} ]] || continue
        if ((header_done == 0)); then
            echo "Errors (a flagged target's numbers are not comparable):"
            header_done=1
        fi
        while IFS= read -r line; do [[ -n $line ]] && echo "- ${T_KIND[$i]} ${T_NAME[$i]}: $line"; done <<<"${R_ERRORS[$i]}"
    done
    return 0
}

cpu_model() {
    local model
    model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    echo "${model:-unknown CPU model ($(uname -m))}"
}

harp_version() {
    local rev
    if [[ -z ${SERVER_PID[harp]:-}${SERVER_PID[harp_nocache]:-} ]]; then echo "not run"; return; fi
    rev=$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo "no commit")
    git -C "$REPO_DIR" diff --quiet HEAD 2>/dev/null || rev+=", work tree modified"
    echo "$rev; binary built $(date -u -r "$HARP_BIN" '+%Y-%m-%d %H:%M UTC')"
}

# ---------------------------------------------------------------------------------------------------------

main() {
    check_requirements
    raise_fd_limit
    CLK_TCK=$(getconf CLK_TCK)
    LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
    awk -v l="${LOAD_BEFORE%% *}" 'BEGIN { exit !(l > 0.5) }' &&
        log "warning: 1-minute load average is ${LOAD_BEFORE%% *}: something else is running; numbers will be noisy"
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/harp-bench.XXXXXX")
    setup_pinning

    free_port BACKEND_PORT; free_port NC_PORT; free_port HAPROXY_PORT; free_port WS_PORT
    # Tunnel remote ports must be ExApp ports (23000-23999); both tunnel harps also listen on 127.0.0.1:<port>.
    free_port TUN_PORT 23000 23999; free_port TUNLO_PORT 23000 23999

    build_wsbench
    start_nginx
    start_ws_echo
    start_floor
    start_haproxy || die "${SERVER_DOWN[haproxy]}"
    build_harp
    # Session lifetime 10 s (the maximum): cookie and Basic credentials stay cached during a run (harp-rs
    # caches both; HaRP only the cookie). Lifetime 0 turns the cache off: one user-info call per request.
    start_harp harp HP_SESSION_LIFETIME=10
    start_harp harp_nocache HP_SESSION_LIFETIME=0
    # Two more instances for the tunnel rows, each with its own `harp tunnel` client: gateway to tunnel
    # in-process (the default) and through the loopback listener, as HaRP's HAProxy reaches frps.
    start_harp harp_tun HP_SESSION_LIFETIME=10 "$(tunnel_harp_settings)" HP_TUNNEL_IN_PROCESS=true
    start_harp harp_tunlo HP_SESSION_LIFETIME=10 "$(tunnel_harp_settings)" HP_TUNNEL_IN_PROCESS=false
    start_tunnel harp_tun "$TUN_APP_ID" "$TUN_PORT"
    start_tunnel harp_tunlo "$TUNLO_APP_ID" "$TUNLO_PORT"
    define_targets
    precheck_targets
    local i measured=0
    for i in "${!T_NAME[@]}"; do
        if [[ -z ${T_SKIP[$i]} ]]; then ((++measured)); else log "not measuring ${T_KIND[$i]} ${T_NAME[$i]}: ${T_SKIP[$i]}"; fi
    done
    log "$PINNING"
    log "measuring: $ROUNDS rounds x $measured targets x (${WARMUP} s warm-up + ${DURATION} s; bulk: one transfer)"
    measure_all
    [[ -n ${SERVER_PID[harp]:-} ]] && RSS_AFTER_LOAD_KB=$(rss_kb "${SERVER_PID[harp]}")
    log "memory and start-up: $COLD_STARTS cold starts, $IDLE_WS idle WebSockets"
    measure_cold_starts
    measure_ws_memory
    # Instructions per request (valgrind) and idle connections: their own scripts, own servers, own
    # temp dirs; the servers above stay up but idle. Their Markdown sections join the report.
    run_part CALLGRIND callgrind.sh "instructions per request (callgrind)"
    run_part CONNS connections.sh "idle connections and flood"

    report | tee "$BENCH_DIR/last-run.md"
    log "written to $BENCH_DIR/last-run.md"
}

# Sourced (bench/callgrind.sh, bench/connections.sh use the servers and helpers above): define, don't run.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
