#!/usr/bin/env bash
# Side-by-side loopback benchmark: a direct nginx backend, HAProxy as a plain proxy, and harp-rs on a
# PUBLIC route, a USER route with a session cookie and a USER route with Basic auth (both answered from
# harp's session cache) and a Basic-auth USER route with the cache off (one Nextcloud user-info call per
# request), against a stub Nextcloud served by the same nginx.
#
# Method (docs: bench/README.md, design/pingora-notes.md §e): wrk -t1 -c32 with keep-alive, a 1 s warm-up
# before every measured run, ROUNDS rounds with the targets interleaved inside each round (so slow drift of
# the machine hits every target alike), medians over the rounds.
#
# Everything listens on 127.0.0.1 only and is stopped on exit. Settings (environment):
#   DURATION=5      seconds per measured run          ROUNDS=3      interleaved rounds
#   WARMUP=1        seconds of warm-up per run        CONNECTIONS=32  wrk connections (one wrk thread)
#   PIN=1           pin servers / wrk to CPUs if possible (0 = never)
#   SERVER_CPU=0 CLIENT_CPU=1   the CPUs used when pinning
#   HARP=1          0 = leave harp-rs out (direct + HAProxy only)
#   HARP_BIN=<repo>/target/release/harp   built with `cargo build --release` when missing
#   KEEP_TMP=0      1 = keep the temp dir (configs, logs, raw wrk output)
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)

DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1}
CONNECTIONS=${CONNECTIONS:-32}
PIN=${PIN:-1}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
HARP=${HARP:-1}
HARP_BIN=${HARP_BIN:-$REPO_DIR/target/release/harp}
KEEP_TMP=${KEEP_TMP:-0}

readonly IP=127.0.0.1                 # the only address anything here binds to or connects to
readonly APP_ID=bench
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

# free_port VAR: store an unused loopback TCP port in VAR. Ports come from below the kernel's ephemeral
# range, so no outgoing connection (wrk's, curl's) can hold the port we are about to bind. A port counts as
# free when no socket in any state uses it (ss, if present) and nothing accepts a connection on it.
USED_PORTS=" "
free_port() {
    local _fp_port _fp_low _fp_in_use=""   # prefixed: printf -v must not hit a local of ours
    read -r _fp_low _ </proc/sys/net/ipv4/ip_local_port_range
    ((_fp_low > 12000)) || _fp_low=32768
    command -v ss >/dev/null && _fp_in_use=" $(ss -Htan | awk '{ sub(/.*:/, "", $4); print $4 }' | sort -u | tr '\n' ' ')"
    for _ in $(seq 200); do
        _fp_port=$((10000 + RANDOM % (_fp_low - 10000)))
        [[ $USED_PORTS == *" $_fp_port "* || $_fp_in_use == *" $_fp_port "* ]] && continue
        if (exec 3<>"/dev/tcp/$IP/$_fp_port") 2>/dev/null; then continue; fi
        USED_PORTS+="$_fp_port "
        printf -v "$1" '%s' "$_fp_port"
        return 0
    done
    die "no free loopback port found"
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

# wait_http URL PID: wait (max 15 s) until URL answers 2xx; fail early if PID has died.
wait_http() {
    local url=$1 pid=$2
    for _ in $(seq 150); do
        lcurl --fail --output /dev/null --max-time 1 "$url" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# CPU time (utime + stime, in clock ticks) of a process, all its threads included.
cpu_ticks() {
    local stat
    stat=$(<"/proc/$1/stat")
    stat=${stat##*) }      # drop "pid (comm) " - comm may contain spaces
    # shellcheck disable=SC2086
    set -- $stat           # now $1 is field 3 (state), so utime (14) is $12 and stime (15) is $13
    echo $((${12} + ${13}))
}

# ---------------------------------------------------------------------------------------------------------
# Environment checks, CPU pinning
# ---------------------------------------------------------------------------------------------------------

check_requirements() {
    local missing=() tool
    for tool in nginx haproxy wrk curl pgrep; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    if ((${#missing[@]})); then
        die "missing: ${missing[*]}. Install with: bench/setup.sh  (or: sudo apt-get install -y nginx-light haproxy wrk curl procps)"
    fi
    [[ $DURATION =~ ^[0-9]+$ && $DURATION -ge 1 ]] || die "DURATION must be a whole number of seconds >= 1"
    [[ $ROUNDS =~ ^[0-9]+$ && $ROUNDS -ge 1 ]] || die "ROUNDS must be >= 1"
    [[ $WARMUP =~ ^[0-9]+$ ]] || die "WARMUP must be a whole number of seconds"
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
    PINNING="pinned: wrk on CPU $CLIENT_CPU; nginx (backend + stub Nextcloud), HAProxy and harp-rs share CPU $SERVER_CPU"
}

# ---------------------------------------------------------------------------------------------------------
# Servers. Each start_* records the pid whose CPU is measured in SERVER_PID[role], or the reason the role
# is unavailable in SERVER_DOWN[role].
# ---------------------------------------------------------------------------------------------------------

declare -A SERVER_PID=()
declare -A SERVER_DOWN=()

# nginx: the backend ("hello from backend" on every path) and the stub Nextcloud (the two HaRP callbacks),
# one worker process, so "direct" is the single-core ceiling the proxies are compared to.
start_nginx() {
    local dir=$TMP/nginx temp_paths="" module
    mkdir -p "$dir/temp"
    # Temp paths must point into our dir: the compiled-in /var/lib/nginx may not be writable.
    for module in client_body proxy fastcgi uwsgi scgi; do
        [[ $module != client_body ]] && nginx -V 2>&1 | grep -q -- "--without-http_${module}_module" && continue
        temp_paths+="    ${module}_temp_path $dir/temp/$module;"$'\n'
    done

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
    }

    # The stub Nextcloud: answers like AppAPI's harp/exapp-meta and harp/user-info (spec: appapi-contract §9).
    map $http_harp_shared_key $bench_key_ok { "@SHARED_KEY@" 1; default 0; }
    map "$cookie_oc_sessionPassphrase|$http_authorization" $bench_has_credentials { "|" 0; default 1; }
    server {
        listen @IP@:@NC_PORT@;
        default_type application/json;
        location = /index.php/apps/app_api/harp/exapp-meta {
            if ($arg_appId != "@APP_ID@") { return 401 '{"message":"Harp shared key is not valid"}'; }
            if ($bench_key_ok = 0) { return 401 '{"message":"Harp shared key is not valid"}'; }
            return 200 '{"exapp_token":"tok","exapp_version":"1.0.0","host":"@IP@","port":@BACKEND_PORT@,"routes":[{"url":"^/public","access_level":0,"bruteforce_protection":[]},{"url":"^/user","access_level":1,"bruteforce_protection":[]}]}';
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
        -v key="$SHARED_KEY" -v app="$APP_ID" '
        /^@TEMP_PATHS@$/ { printf "%s", ENVIRON["TEMP_PATHS"]; next }
        { gsub(/@DIR@/, dir); gsub(/@IP@/, ip); gsub(/@BACKEND_PORT@/, bp); gsub(/@NC_PORT@/, np)
          gsub(/@SHARED_KEY@/, key); gsub(/@APP_ID@/, app); print }' \
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

# HAProxy: the reference proxy. Plain forwarding (no auth), same prefix stripping as harp, one thread.
start_haproxy() {
    local dir=$TMP/haproxy
    mkdir -p "$dir"
    cat >"$dir/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096     # well below typical fd limits; wrk opens only $CONNECTIONS connections

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend bench
    bind $IP:$HAPROXY_PORT
    default_backend backend

backend backend
    http-request replace-path ^/exapps/$APP_ID(/.*)\$ \\1
    server nginx $IP:$BACKEND_PORT
EOF
    haproxy -c -q -f "$dir/haproxy.cfg" || die "haproxy config test failed ($dir/haproxy.cfg)"
    # -db: stay in the foreground as one process, so $! is the process that serves requests.
    "${PIN_SERVER[@]}" haproxy -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 &
    local pid=$!
    STARTED_PIDS+=("$pid")
    wait_http "http://$IP:$HAPROXY_PORT/exapps/$APP_ID/public" "$pid" || die "haproxy did not start:"$'\n'"$(log_tail "$dir/haproxy.log")"
    SERVER_PID[haproxy]=$pid
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

# start_harp ROLE SESSION_LIFETIME: one harp-rs instance; its ExApp listener goes to HARP_ADDR[ROLE].
# Several instances can run side by side (they differ only in settings); idle ones cost nothing measurable.
declare -A HARP_ADDR=()
start_harp() {
    local role=$1 lifetime=$2 dir=$TMP/$1 port https_port frp_port ops_port
    if [[ -n $HARP_MISSING ]]; then SERVER_DOWN[$role]=$HARP_MISSING; return 0; fi
    mkdir -p "$dir/certs"
    free_port port; free_port https_port; free_port frp_port; free_port ops_port
    HARP_ADDR[$role]=$IP:$port
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
        HP_SESSION_LIFETIME="$lifetime" \
        "${PIN_SERVER[@]}" "$HARP_BIN" >"$dir/harp.log" 2>&1 &
    local pid=$!
    STARTED_PIDS+=("$pid")
    if ! wait_http "http://$IP:$ops_port/heartbeat" "$pid"; then
        if kill -0 "$pid" 2>/dev/null; then
            SERVER_DOWN[$role]="no 2xx from GET /heartbeat on $IP:$ops_port within 15 s"
            kill -TERM "$pid" 2>/dev/null || true
        else
            SERVER_DOWN[$role]="$HARP_BIN exited before answering GET /heartbeat"
        fi
        SERVER_DOWN[$role]+="; log: $(tail -n 3 "$dir/harp.log" | tr '\n' ' ')"
        return 0
    fi
    SERVER_PID[$role]=$pid
}

# ---------------------------------------------------------------------------------------------------------
# Targets. One line per target in define_targets; the first one is the baseline for the ratios.
# ---------------------------------------------------------------------------------------------------------

T_NAME=() T_ROLE=() T_URL=() T_HEADER=() T_SKIP=()

# add_target NAME ROLE URL [HEADER]: ROLE names the server whose CPU is charged (a SERVER_PID key).
add_target() {
    T_NAME+=("$1") T_ROLE+=("$2") T_URL+=("$3") T_HEADER+=("${4:-}")
    if [[ -n ${SERVER_PID[$2]:-} ]]; then T_SKIP+=(""); else T_SKIP+=("${SERVER_DOWN[$2]:-$2 not started}"); fi
}

define_targets() {
    local harp="http://${HARP_ADDR[harp]:-}/exapps/$APP_ID" nocache="http://${HARP_ADDR[harp_nocache]:-}/exapps/$APP_ID"
    add_target "direct (nginx)"           backend      "http://$IP:$BACKEND_PORT/public"
    add_target "HAProxy (plain proxy)"    haproxy      "http://$IP:$HAPROXY_PORT/exapps/$APP_ID/public"
    add_target "harp PUBLIC"              harp         "$harp/public"
    add_target "harp USER cached cookie"  harp         "$harp/user" "$SESSION_COOKIE"
    add_target "harp USER Basic auth"     harp         "$harp/user" "$BASIC_AUTH"
    add_target "harp USER Basic, no cache" harp_nocache "$nocache/user" "$BASIC_AUTH"
}

# One real request per target before measuring: wrk counts neither 3xx as errors nor looks at bodies, so a
# target that answers with a redirect or with the wrong content would otherwise be "measured".
precheck_targets() {
    local i code body
    for i in "${!T_NAME[@]}"; do
        [[ -z ${T_SKIP[$i]} ]] || continue
        local args=(--output "$TMP/precheck.body" --write-out '%{http_code}')
        [[ -n ${T_HEADER[$i]} ]] && args+=(--header "${T_HEADER[$i]}")
        code=$(lcurl "${args[@]}" "${T_URL[$i]}" 2>/dev/null) || code="no answer"
        body=$(head -c 200 "$TMP/precheck.body" 2>/dev/null || true)
        if [[ $code != 200 || $body != "$EXPECTED_BODY" ]]; then
            T_SKIP[$i]="pre-check failed: HTTP $code, body '${body//$'\n'/ }' (expected 200 '$EXPECTED_BODY')"
        fi
    done
}

# ---------------------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------------------

# run_wrk OUTFILE SECONDS URL HEADER
run_wrk() {
    local args=(-t1 "-c$CONNECTIONS" "-d${2}s" --latency)
    [[ -n $4 ]] && args+=(-H "$4")
    "${PIN_CLIENT[@]}" wrk "${args[@]}" "$3" >"$1" 2>&1 || true
}

# parse_wrk FILE -> "rps requests p50_ms p99_ms non2xx socket_errors" (wrk prints us/ms/s/m units).
parse_wrk() {
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
        END { printf "%s %s %s %s %d %d\n", (rps == "" ? "nan" : rps), (req == "" ? 0 : req),
              (p50 == "" ? "nan" : p50), (p99 == "" ? "nan" : p99), non2xx, sock }' "$1"
}

# Per-target results, one space-separated value per round.
declare -A R_RPS=() R_P50=() R_P99=() R_CPU=() R_ERRORS=()

measure_target() {
    local i=$1 round=$2 out=$TMP/wrk/$1.$2.txt
    local pid=${SERVER_PID[${T_ROLE[$i]}]}
    run_wrk "$TMP/wrk/$i.$round.warmup.txt" "$WARMUP" "${T_URL[$i]}" "${T_HEADER[$i]}"
    local before after
    before=$(cpu_ticks "$pid")
    run_wrk "$out" "$DURATION" "${T_URL[$i]}" "${T_HEADER[$i]}"
    after=$(cpu_ticks "$pid")

    local rps req p50 p99 non2xx sock cpu_us
    read -r rps req p50 p99 non2xx sock < <(parse_wrk "$out")
    cpu_us=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$req" 'BEGIN { print (n > 0 ? t * 1e6 / hz / n : "nan") }')
    R_RPS[$i]+="$rps " R_P50[$i]+="$p50 " R_P99[$i]+="$p99 " R_CPU[$i]+="$cpu_us "
    if [[ $rps == nan ]]; then
        R_ERRORS[$i]+="round $round: no result from wrk (see $out)"$'\n'
    elif ((non2xx > 0 || sock > 0)); then
        R_ERRORS[$i]+="round $round: $non2xx responses with status >= 400, $sock socket errors"$'\n'
    fi
    log "round $round/$ROUNDS  $(printf '%-26s' "${T_NAME[$i]}") $(fmt '%9.0f' "$rps") rps  p50 $(fmt '%.3f' "$p50") ms  p99 $(fmt '%.3f' "$p99") ms  cpu $(fmt '%.1f' "$cpu_us") us/req"
}

measure_all() {
    local round i
    mkdir -p "$TMP/wrk"
    for ((round = 1; round <= ROUNDS; round++)); do
        for i in "${!T_NAME[@]}"; do
            if [[ -z ${T_SKIP[$i]} ]]; then measure_target "$i" "$round"; fi
        done
    done
}

# ---------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------

report() {
    local i base_rps="" rps p50 p99 cpu ratio name
    [[ -z ${T_SKIP[0]} ]] && base_rps=$(median ${R_RPS[0]})   # word splitting intended: one value per round

    echo "# harp-rs loopback benchmark"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- machine: $(nproc) CPUs usable ($(grep -c '^processor' /proc/cpuinfo) online), $(cpu_model), kernel $(uname -r);" \
         "load average before / after: $LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg) (the run itself adds about 2)"
    echo "- method: wrk -t1 -c$CONNECTIONS -d${DURATION}s --latency, keep-alive, ${WARMUP} s warm-up before each run," \
         "$ROUNDS interleaved rounds, medians over the rounds"
    echo "- CPU: $PINNING"
    echo "- servers: nginx $(nginx -v 2>&1 | sed 's|.*nginx/||') worker_processes 1;" \
         "$(haproxy -v | head -1 | awk '{print "HAProxy " $3}') nbthread 1; harp-rs HP_THREADS=1, HP_SESSION_LIFETIME=10 (no cache: 0) ($(harp_version))"
    echo
    echo "| target | rps | p50 | p99 | CPU µs/req | ratio to direct |"
    echo "|---|---:|---:|---:|---:|---:|"
    for i in "${!T_NAME[@]}"; do
        name=${T_NAME[$i]}
        if [[ -n ${T_SKIP[$i]} ]]; then
            echo "| $name | not measured | | | | |"
            continue
        fi
        [[ -n ${R_ERRORS[$i]:-} ]] && name+=" ⚠ errors"
        rps=$(median ${R_RPS[$i]}) p50=$(median ${R_P50[$i]}) p99=$(median ${R_P99[$i]}) cpu=$(median ${R_CPU[$i]})
        ratio=$(awk -v r="$rps" -v b="$base_rps" 'BEGIN { if (b == "" || b == "nan" || r == "nan" || b == 0) print "nan"; else print r / b }')
        echo "| $name | $(fmt '%.0f' "$rps") | $(fmt '%.3f ms' "$p50") | $(fmt '%.3f ms' "$p99") | $(fmt '%.1f' "$cpu") | $(fmt '%.3f' "$ratio") |"
    done
    echo
    echo "rps per round:"
    for i in "${!T_NAME[@]}"; do
        if [[ -n ${T_SKIP[$i]} ]]; then
            echo "- ${T_NAME[$i]}: not measured: ${T_SKIP[$i]}"
        else
            echo "- ${T_NAME[$i]}: $(for v in ${R_RPS[$i]}; do fmt '%.0f\n' "$v"; done | paste -sd ' ')"
        fi
    done
    local header_done=0 line
    for i in "${!T_NAME[@]}"; do
        [[ -n ${R_ERRORS[$i]:-} ]] || continue
        if ((header_done == 0)); then
            echo
            echo "Errors (a flagged target's numbers are not comparable):"
            header_done=1
        fi
        while IFS= read -r line; do [[ -n $line ]] && echo "- ${T_NAME[$i]}: $line"; done <<<"${R_ERRORS[$i]}"
    done
    echo
    echo "Notes: p50/p99 are wrk's latency percentiles (medians over the rounds). CPU µs/req is the user+system" \
         "CPU time of the process under test during the measured run divided by the requests wrk completed:" \
         "the nginx worker for direct, otherwise the proxy alone (the backend's and stub Nextcloud's CPU are" \
         "not included). Ratio = median rps / median rps of direct."
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
    CLK_TCK=$(getconf CLK_TCK)
    LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
    awk -v l="${LOAD_BEFORE%% *}" 'BEGIN { exit !(l > 0.5) }' &&
        log "warning: 1-minute load average is ${LOAD_BEFORE%% *}: something else is running; numbers will be noisy"
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/harp-bench.XXXXXX")
    setup_pinning

    free_port BACKEND_PORT; free_port NC_PORT; free_port HAPROXY_PORT

    start_nginx
    start_haproxy
    build_harp
    # Session lifetime 10 s (the maximum): cookie and Basic credentials stay cached during a run (harp-rs
    # caches both; HaRP only the cookie). Lifetime 0 turns the cache off: one user-info call per request.
    start_harp harp 10
    start_harp harp_nocache 0
    define_targets
    precheck_targets
    local i measured=0
    for i in "${!T_NAME[@]}"; do
        if [[ -z ${T_SKIP[$i]} ]]; then ((++measured)); else log "not measuring ${T_NAME[$i]}: ${T_SKIP[$i]}"; fi
    done
    log "$PINNING"
    log "measuring: $ROUNDS rounds x $measured targets x (${WARMUP} s warm-up + ${DURATION} s)"
    measure_all

    report | tee "$BENCH_DIR/last-run.md"
    log "written to $BENCH_DIR/last-run.md"
}

main "$@"
