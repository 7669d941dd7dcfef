#!/usr/bin/env bash
# What idle connections cost, and what a flood of them gets, for harp-rs next to HAProxy:
#
#  * RSS per idle connection: a fresh server answers one request (its route's first use), VmRSS is read,
#    bench/client.py opens IDLE_CONNS TCP connections to its HTTP listener that never send anything,
#    1 s later VmRSS is read again: (after - before) / IDLE_CONNS, in bytes. For harp-rs (HP_THREADS=1,
#    settings as bench/run.sh's) and HAProxy (run.sh's configuration, one process, nbthread 1,
#    maxconn above IDLE_CONNS). harp's own count of open connections (harp_connections_open on its ops
#    listener's /metrics) confirms it holds them all.
#  * harp's RSS after the connections close (2 s later): what it gives back.
#  * Flood: a fresh harp-rs with HP_MAX_CONNECTIONS=FLOOD_MAX gets FLOOD_CONNS idle connections; its
#    /metrics tell how many it holds (harp_connections_open) and refused (harp_connections_refused_total),
#    and the client how many stayed open; RSS during the flood and after it.
#
# Settings (environment): IDLE_CONNS=2000 FLOOD_MAX=1000 FLOOD_CONNS=1500 HARP_BIN KEEP_TMP=0.
# Needs about 2 x IDLE_CONNS + 1000 file descriptors (raised to the hard limit). About 30 s.
# Prints a Markdown section on stdout (bench/run.sh includes it in its report); progress on stderr.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/run.sh
source "$BENCH_DIR/run.sh"   # servers (start_nginx, launch_harp, start_haproxy) and helpers; exit trap

IDLE_CONNS=${IDLE_CONNS:-2000}
FLOOD_MAX=${FLOOD_MAX:-1000}
FLOOD_CONNS=${FLOOD_CONNS:-1500}
HAPROXY_MAXCONN=$((IDLE_CONNS + 1000 > 4096 ? IDLE_CONNS + 1000 : 4096))
BULK_MB=1   # start_nginx's bulk file: not used here

log() { printf '[connections] %s\n' "$*" >&2; }

# metric OPS_ADDR NAME: the value of one metric on harp's ops listener.
metric() {
    lcurl "http://$1/metrics" | awk -v n="$2" '$1 == n { print $2 }'
}

# hold_start ADDR N DIR: bench/client.py holds N idle connections to ADDR (until hold_stop); waits until
# they are open. Sets HOLD_PID, HOLD_FD, HOLD_OPEN, HOLD_FAILED.
hold_start() {
    local addr=$1 n=$2 dir=$3
    rm -f "$dir/hold.in" "$dir/hold.out"
    mkfifo "$dir/hold.in"
    python3 "$BENCH_DIR/client.py" hold "$addr" "$n" <"$dir/hold.in" >"$dir/hold.out" 2>>"$dir/hold.err" &
    HOLD_PID=$!
    STARTED_PIDS+=("$HOLD_PID")
    exec {HOLD_FD}>"$dir/hold.in"
    wait_for_line "$dir/hold.out" '^ready' "$HOLD_PID" 60 || die "client.py hold did not get ready: $(tail -n 2 "$dir/hold.err")"
    read -r _ HOLD_OPEN HOLD_FAILED < <(grep '^ready' "$dir/hold.out")
}

# hold_stop DIR: the client checks which connections the server closed meanwhile, then closes the rest.
# Sets HOLD_ALIVE, HOLD_CLOSED.
hold_stop() {
    local dir=$1
    exec {HOLD_FD}>&-
    wait_for_line "$dir/hold.out" '^alive' "$HOLD_PID" 30 || die "client.py hold did not finish: $(tail -n 2 "$dir/hold.err")"
    read -r _ HOLD_ALIVE HOLD_CLOSED < <(grep '^alive' "$dir/hold.out")
    wait "$HOLD_PID" 2>/dev/null || true
}

# per_conn BEFORE_KB AFTER_KB N: bytes per connection.
per_conn() { awk -v b="$1" -v a="$2" -v n="$3" 'BEGIN { printf "%.0f", (a - b) * 1024 / n }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }

ROWS=()

measure_harp_idle() {
    local dir=$TMP/harp_idle pid ops before during after open
    mkdir -p "$dir"
    launch_harp "$dir" HP_SESSION_LIFETIME=10
    pid=$LAUNCHED_PID ops=$LAUNCHED_OPS
    wait_http "http://$LAUNCHED_GATEWAY/exapps/$APP_ID/public" "$pid" 30 || die "harp did not answer: $(log_tail "$dir/harp.log")"
    sleep 0.5
    before=$(rss_kb "$pid")
    hold_start "$LAUNCHED_GATEWAY" "$IDLE_CONNS" "$dir"
    sleep 1
    during=$(rss_kb "$pid")
    open=$(metric "$ops" harp_connections_open)
    hold_stop "$dir"
    sleep 2
    after=$(rss_kb "$pid")
    log "harp: RSS $before / $during / $after KiB (before / with $HOLD_OPEN idle connections / 2 s after they closed); harp_connections_open $open"
    ROWS+=("| harp-rs: RSS per idle connection | $(per_conn "$before" "$during" "$HOLD_OPEN") bytes | $HOLD_OPEN connections that sent nothing (client: $HOLD_FAILED failed to connect, $HOLD_CLOSED closed by harp before the end); RSS $(mib "$before") before, $(mib "$during") with them; harp_connections_open $open (the ops request not counted) |")
    ROWS+=("| harp-rs: RSS 2 s after they closed | $(mib "$after") | $(awk -v b="$before" -v a="$after" 'BEGIN { printf "%+.1f MiB", (a - b) / 1024 }') against before the connections |")
    stop_now "$pid"
}

measure_haproxy_idle() {
    local dir=$TMP/haproxy pid before during after
    start_haproxy || die "${SERVER_DOWN[haproxy]}"
    pid=${SERVER_PID[haproxy]}
    sleep 0.5
    before=$(rss_kb "$pid")
    hold_start "$IP:$HAPROXY_PORT" "$IDLE_CONNS" "$dir"
    sleep 1
    during=$(rss_kb "$pid")
    hold_stop "$dir"
    sleep 2
    after=$(rss_kb "$pid")
    log "HAProxy: RSS $before / $during / $after KiB"
    ROWS+=("| HAProxy: RSS per idle connection | $(per_conn "$before" "$during" "$HOLD_OPEN") bytes | $HOLD_OPEN connections that sent nothing (client: $HOLD_FAILED failed to connect, $HOLD_CLOSED closed by HAProxy before the end); RSS $(mib "$before") before, $(mib "$during") with them, $(mib "$after") 2 s after they closed; nbthread 1, maxconn $HAPROXY_MAXCONN |")
    stop_now "$pid"
}

measure_flood() {
    local dir=$TMP/harp_flood pid ops before during after open refused
    mkdir -p "$dir"
    launch_harp "$dir" HP_SESSION_LIFETIME=10 HP_MAX_CONNECTIONS="$FLOOD_MAX"
    pid=$LAUNCHED_PID ops=$LAUNCHED_OPS
    wait_http "http://$LAUNCHED_GATEWAY/exapps/$APP_ID/public" "$pid" 30 || die "harp did not answer: $(log_tail "$dir/harp.log")"
    sleep 0.5
    before=$(rss_kb "$pid")
    hold_start "$LAUNCHED_GATEWAY" "$FLOOD_CONNS" "$dir"
    sleep 1
    during=$(rss_kb "$pid")
    open=$(metric "$ops" harp_connections_open)
    refused=$(metric "$ops" harp_connections_refused_total)
    hold_stop "$dir"
    sleep 2
    after=$(rss_kb "$pid")
    log "flood: $FLOOD_CONNS connections, HP_MAX_CONNECTIONS=$FLOOD_MAX: open $open, refused $refused; client: $HOLD_ALIVE alive, $HOLD_CLOSED closed; RSS $before / $during / $after KiB"
    ROWS+=("| flood: $FLOOD_CONNS idle connections, HP_MAX_CONNECTIONS=$FLOOD_MAX | $open held, $refused refused | harp's /metrics during the flood (harp_connections_open, harp_connections_refused_total); the client saw $HOLD_ALIVE still open and $HOLD_CLOSED closed by harp ($HOLD_FAILED failed to connect) |")
    ROWS+=("| flood: harp-rs RSS before / during / 2 s after | $(mib "$before") / $(mib "$during") / $(mib "$after") | |")
    stop_now "$pid"
}

main_connections() {
    command -v python3 >/dev/null || die "missing: python3"
    [[ -x $HARP_BIN ]] || die "$HARP_BIN missing: cargo build --release first"
    local hard need=$((2 * (IDLE_CONNS > FLOOD_CONNS ? IDLE_CONNS : FLOOD_CONNS) + 1000))
    hard=$(ulimit -Hn)
    [[ $hard == unlimited ]] && hard=1048576
    ulimit -n "$hard" 2>/dev/null || true
    (($(ulimit -n) >= need)) || die "ulimit -n is $(ulimit -n), $need needed for $IDLE_CONNS idle connections"
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/harp-connections.XXXXXX")
    free_port BACKEND_PORT; free_port NC_PORT; free_port HAPROXY_PORT; free_port WS_PORT
    free_port TUN_PORT 23000 23999; free_port TUNLO_PORT 23000 23999
    start_nginx
    measure_harp_idle
    measure_haproxy_idle
    measure_flood

    echo "## Idle connections and a flood (bench/connections.sh)"
    echo
    echo "- measured: $(date -u '+%Y-%m-%d %H:%M UTC'), harp-rs $(git -C "$REPO_DIR" rev-parse --short HEAD)$(git -C "$REPO_DIR" diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo ', work tree modified'), binary built $(date -u -r "$HARP_BIN" '+%Y-%m-%d %H:%M UTC'); $(haproxy -v | head -1 | awk '{print "HAProxy " $3}')"
    echo "- each server fresh, one request answered first; VmRSS 1 s after the connections are open; plain TCP connections on the HTTP listener that send nothing"
    echo
    echo "| measurement | value | detail |"
    echo "|---|---:|---|"
    printf '%s\n' "${ROWS[@]}"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main_connections "$@"
fi
