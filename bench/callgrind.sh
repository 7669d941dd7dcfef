#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind: deterministic, so it holds on a busy machine
# where requests/s do not. Targets, each a fresh process under `valgrind --tool=callgrind`:
#
#  * floor: bench/floor, a do-nothing Pingora 0.9.1 proxy (only upstream_peer; one thread, mimalloc):
#    what Pingora itself costs per request;
#  * harp PUBLIC: harp-rs (HP_THREADS=1, settings as bench/run.sh's) on its PUBLIC route
#    GET /exapps/bench/public, with the ExApp record cached (stub Nextcloud and nginx backend as in run.sh);
#  * HAProxy as a plain proxy (optional, HAPROXY_CG=1), the same request as in run.sh.
#
# Method: one kept-alive connection from a client outside valgrind (bench/client.py); WARMUP requests, then
# phases of N1 and N2 sequential requests, REPEAT times, with `callgrind_control --dump` after each phase
# (a dump resets the counts, so each dump holds one phase). Instructions per request =
# (I(N2 phase) - I(N1 phase)) / (N2 - N1): start-up, the dump itself and whatever a phase costs once
# cancel out. An idle phase (no requests) at the end shows what the process does on its own per second.
# The counts are of the binaries users run (stripped release builds). If a non-stripped copy of harp is
# found (PROFILE_BIN, built as below), it is measured too and its per-function profile goes to
# bench/last-callgrind.txt (git-ignored), against the floor's (bench/floor built the same way):
#
#   CARGO_PROFILE_RELEASE_STRIP=false CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
#       cargo build --release --target-dir target-prof
#   CARGO_PROFILE_RELEASE_STRIP=false CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
#       cargo build --release --manifest-path bench/floor/Cargo.toml --target-dir target-prof
#
# Settings (environment): CG_WARMUP=200 CG_N1=200 CG_N2=1000 CG_REPEAT=3 HAPROXY_CG=1 PROFILE=1 (0: skip
# the profiled copies) HARP_BIN FLOOR_BIN PROFILE_BIN PROFILE_FLOOR_BIN KEEP_TMP=0. About 3 minutes.
# Prints a Markdown section on stdout (bench/run.sh includes it in its report); progress on stderr.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/run.sh
source "$BENCH_DIR/run.sh"   # servers (start_nginx, launch_harp, start_haproxy) and helpers; exit trap

CG_WARMUP=${CG_WARMUP:-200}
CG_N1=${CG_N1:-200}
CG_N2=${CG_N2:-1000}
CG_REPEAT=${CG_REPEAT:-3}
HAPROXY_CG=${HAPROXY_CG:-1}
PROFILE=${PROFILE:-1}
FLOOR_DIR=$BENCH_DIR/floor
FLOOR_BIN=${FLOOR_BIN:-$FLOOR_DIR/target/release/floor}
PROFILE_BIN=${PROFILE_BIN:-$REPO_DIR/target-prof/release/harp}
PROFILE_FLOOR_BIN=${PROFILE_FLOOR_BIN:-$REPO_DIR/target-prof/release/floor}
PROFILE_OUT=$BENCH_DIR/last-callgrind.txt
START_TIMEOUT=180      # valgrind starts a Rust binary in tens of seconds on a busy machine
BULK_MB=1              # start_nginx's bulk file: not used here

log() { printf '[callgrind] %s\n' "$*" >&2; }
commas() { sed ':a;s/\B[0-9]\{3\}\>/,&/;ta' <<<"$1"; }   # 129600 -> 129,600

# ---------------------------------------------------------------------------------------------------------

declare -A CG_PER_REQ=() CG_DETAIL=() CG_SKIP=() CG_DUMPS=()
CG_TARGETS=()

# callgrind_cmd OUTFILE: the valgrind command line every target runs under.
callgrind_cmd() {
    echo valgrind --tool=callgrind --collect-atstart=yes --callgrind-out-file="$1" --log-file="$1.vg.log"
}

# measure_phases NAME PID URL DIR: drive the phases against PID (already under callgrind) and compute
# instructions per request into CG_PER_REQ[NAME] (median of the REPEAT estimates), CG_DETAIL[NAME].
measure_phases() {
    local name=$1 pid=$2 url=$3 dir=$4 phases=("$CG_WARMUP") r k estimates=() idle_rate bias
    for ((r = 0; r < CG_REPEAT; r++)); do phases+=("$CG_N1" "$CG_N2"); done
    phases+=(0)
    log "$name: phases ${phases[*]} (requests; 0 = idle ${IDLE_SECONDS:-3} s)"
    if ! python3 "$BENCH_DIR/client.py" phases "$url" "$pid" "$dir" "${phases[@]}" >"$dir/phases.txt" 2>"$dir/phases.err"; then
        CG_SKIP[$name]="client failed: $(tail -n 2 "$dir/phases.err" | tr '\n' ' ')"
        return 0
    fi
    local -a totals=() secs=()
    for ((k = 1; k <= ${#phases[@]}; k++)); do
        [[ -f $dir/cg.out.$k ]] || { CG_SKIP[$name]="no callgrind dump $k in $dir"; return 0; }
        totals+=("$(python3 "$BENCH_DIR/cgprofile.py" totals "$dir/cg.out.$k")")
        secs+=("$(awk -v k="$k" '$1 == "phase" && $2 == k { print $4 }' "$dir/phases.txt")")
    done
    # Phase index (0-based): 0 warm-up, then (N1, N2) pairs, last idle.
    for ((r = 0; r < CG_REPEAT; r++)); do
        estimates+=("$(awk -v a="${totals[$((1 + 2 * r))]}" -v b="${totals[$((2 + 2 * r))]}" -v n1="$CG_N1" -v n2="$CG_N2" \
            'BEGIN { printf "%.0f", (b - a) / (n2 - n1) }')")
    done
    local last=$((${#phases[@]} - 1))
    # What the process does on its own: instructions per second of the idle phase (its settle time included),
    # times the extra seconds the N2 phase took over the N1 phase, per extra request.
    idle_rate=$(awk -v t="${totals[$last]}" -v s="${secs[$last]}" 'BEGIN { printf "%.0f", t / (s + 0.5) }')
    bias=$(awk -v i="$idle_rate" -v s1="${secs[1]}" -v s2="${secs[2]}" -v n1="$CG_N1" -v n2="$CG_N2" \
        'BEGIN { printf "%.0f", i * (s2 - s1) / (n2 - n1) }')
    CG_PER_REQ[$name]=$(median "${estimates[@]}" | awk '{ printf "%.0f", $1 }')
    CG_DETAIL[$name]="estimates ${estimates[*]}; phase totals $(printf '%s ' "${totals[@]:1:$((2 * CG_REPEAT))}")(N1, N2 alternating); idle ${idle_rate} instr/s (≈ ${bias} per request of the N2 - N1 difference)"
    CG_DUMPS[$name]="$dir/cg.out.2 $dir/cg.out.3"
    log "$name: ${CG_PER_REQ[$name]} instructions/request (${CG_DETAIL[$name]})"
}

# measure_floor NAME BIN
measure_floor() {
    local name=$1 bin=$2 dir=$TMP/cg/$1 port pid
    CG_TARGETS+=("$name")
    [[ -x $bin ]] || { CG_SKIP[$name]="$bin missing"; return 0; }
    mkdir -p "$dir"
    free_port port
    # shellcheck disable=SC2046   # the command line is words
    $(callgrind_cmd "$dir/cg.out") "$bin" "$IP:$port" "$IP:$BACKEND_PORT" >"$dir/floor.log" 2>&1 &
    pid=$!
    STARTED_PIDS+=("$pid")
    log "$name: started under callgrind (pid $pid), waiting for it to answer"
    if ! wait_http "http://$IP:$port/public" "$pid" "$START_TIMEOUT"; then
        CG_SKIP[$name]="did not answer within $START_TIMEOUT s: $(tail -n 2 "$dir/floor.log" "$dir/cg.out.vg.log" | tr '\n' ' ')"
        stop_now "$pid"
        return 0
    fi
    measure_phases "$name" "$pid" "http://$IP:$port/public" "$dir"
    stop_now "$pid"
}

# measure_harp NAME BIN: harp's PUBLIC route, settings as run.sh's measured instance.
measure_harp() {
    local name=$1 bin=$2 dir=$TMP/cg/$1 pid url
    CG_TARGETS+=("$name")
    [[ -x $bin ]] || { CG_SKIP[$name]="$bin missing"; return 0; }
    mkdir -p "$dir"
    # One native start first: harp generates its FRP certificate set (slow under valgrind) and the instance
    # under valgrind reuses it, as a restarted production harp does.
    HARP_BIN=$bin HARP_WRAP=()
    launch_harp "$dir" HP_SESSION_LIFETIME=10
    wait_http "http://$LAUNCHED_OPS/heartbeat" "$LAUNCHED_PID" 30 || { CG_SKIP[$name]="harp did not start natively: $(tail -n 2 "$dir/harp.log" | tr '\n' ' ')"; stop_now "$LAUNCHED_PID"; return 0; }
    stop_now "$LAUNCHED_PID"
    # shellcheck disable=SC2207
    HARP_WRAP=($(callgrind_cmd "$dir/cg.out"))
    launch_harp "$dir" HP_SESSION_LIFETIME=10
    HARP_WRAP=()
    pid=$LAUNCHED_PID url=http://$LAUNCHED_GATEWAY/exapps/$APP_ID/public
    log "$name: started under callgrind (pid $pid), waiting for it to answer"
    if ! wait_http "$url" "$pid" "$START_TIMEOUT"; then
        CG_SKIP[$name]="no 2xx from $url within $START_TIMEOUT s: $(tail -n 2 "$dir/harp.log" | tr '\n' ' ')"
        stop_now "$pid"
        return 0
    fi
    measure_phases "$name" "$pid" "$url" "$dir"
    stop_now "$pid"
}

# measure_haproxy NAME: HAProxy as a plain proxy (run.sh's configuration and request), under callgrind.
measure_haproxy() {
    local name=$1 dir=$TMP/cg/$1 pid
    CG_TARGETS+=("$name")
    mkdir -p "$dir"
    # shellcheck disable=SC2207
    HAPROXY_WRAP=($(callgrind_cmd "$dir/cg.out"))
    log "$name: starting under callgrind, waiting for it to answer"
    if ! start_haproxy; then
        HAPROXY_WRAP=()
        CG_SKIP[$name]="did not start under valgrind: ${SERVER_DOWN[haproxy]//$'\n'/ }"
        return 0
    fi
    HAPROXY_WRAP=()
    pid=${SERVER_PID[haproxy]}
    measure_phases "$name" "$pid" "http://$IP:$HAPROXY_PORT/exapps/$APP_ID/public" "$dir"
    stop_now "$pid"
}

# ---------------------------------------------------------------------------------------------------------

report_callgrind() {
    local name floor=${CG_PER_REQ[floor]:-} v ratio
    echo "| target | instructions / request | ratio to floor | detail |"
    echo "|---|---:|---:|---|"
    for name in "${CG_TARGETS[@]}"; do
        if [[ -n ${CG_SKIP[$name]:-} ]]; then
            echo "| $(cg_label "$name") | not measured | | ${CG_SKIP[$name]} |"
            continue
        fi
        v=${CG_PER_REQ[$name]}
        ratio=$(awk -v v="$v" -v f="$floor" 'BEGIN { if (f == "" || f == 0) print "n/a"; else printf "%.2fx", v / f }')
        echo "| $(cg_label "$name") | $(commas "$v") | $ratio | ${CG_DETAIL[$name]} |"
    done
    echo
    echo "Goal (issue 12): harp PUBLIC <= 1.15x the floor."
}

cg_label() {
    case $1 in
        floor) echo "floor: do-nothing Pingora 0.9.1 proxy (bench/floor)" ;;
        harp) echo "harp PUBLIC (GET /exapps/bench/public, record cached)" ;;
        haproxy) echo "HAProxy (plain proxy)" ;;
        floor-prof) echo "floor, non-stripped build (profile)" ;;
        harp-prof) echo "harp PUBLIC, non-stripped build (profile)" ;;
        *) echo "$1" ;;
    esac
}

main_callgrind() {
    local tool
    for tool in valgrind callgrind_control python3 nginx curl; do
        command -v "$tool" >/dev/null || die "missing: $tool (bench/setup.sh installs it)"
    done
    ((CG_N2 > CG_N1)) || die "CG_N2 must be larger than CG_N1"
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/harp-callgrind.XXXXXX")
    free_port BACKEND_PORT; free_port NC_PORT; free_port HAPROXY_PORT; free_port WS_PORT
    free_port TUN_PORT 23000 23999; free_port TUNLO_PORT 23000 23999
    start_nginx
    if [[ ! -x $FLOOR_BIN || $FLOOR_BIN -ot $FLOOR_DIR/src/main.rs ]]; then
        log "building bench/floor (cargo build --release), log: $TMP/floor-build.log"
        cargo build --release --manifest-path "$FLOOR_DIR/Cargo.toml" >"$TMP/floor-build.log" 2>&1 || true
    fi
    [[ -x $HARP_BIN ]] || die "$HARP_BIN missing: cargo build --release first"
    local harp_bin=$HARP_BIN

    measure_floor floor "$FLOOR_BIN"
    measure_harp harp "$harp_bin"
    if [[ $HAPROXY_CG == 1 ]]; then measure_haproxy haproxy; fi
    if [[ $PROFILE == 1 && -x $PROFILE_BIN ]]; then
        [[ -x $PROFILE_FLOOR_BIN ]] && measure_floor floor-prof "$PROFILE_FLOOR_BIN"
        measure_harp harp-prof "$PROFILE_BIN"
    fi

    echo "## Instructions per request (callgrind)"
    echo
    echo "- measured: $(date -u '+%Y-%m-%d %H:%M UTC'), harp-rs $(git -C "$REPO_DIR" rev-parse --short HEAD)$(git -C "$REPO_DIR" diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo ', work tree modified'), binary built $(date -u -r "$harp_bin" '+%Y-%m-%d %H:%M UTC'); $(valgrind --version)"
    echo "- method: one kept-alive connection, $CG_WARMUP warm-up requests, then $CG_REPEAT x ($CG_N1, $CG_N2) sequential GETs with a callgrind dump after each phase; instructions per request = (I($CG_N2) - I($CG_N1)) / $((CG_N2 - CG_N1)), median of the $CG_REPEAT estimates; all threads of the process, user space only (the kernel's work is not counted)"
    echo
    report_callgrind

    if [[ -z ${CG_SKIP[harp-prof]:-} && -n ${CG_DUMPS[harp-prof]:-} ]]; then
        local floor_args=()
        # shellcheck disable=SC2206
        [[ -n ${CG_DUMPS[floor-prof]:-} && -z ${CG_SKIP[floor-prof]:-} ]] &&
            floor_args=(--floor "$CG_N1" ${CG_DUMPS[floor-prof]%% *} "$CG_N2" ${CG_DUMPS[floor-prof]##* })
        {
            echo "# harp-rs PUBLIC path: where the instructions go (bench/callgrind.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), $(git -C "$REPO_DIR" rev-parse --short HEAD))"
            echo
            # shellcheck disable=SC2086
            python3 "$BENCH_DIR/cgprofile.py" profile "$CG_N1" ${CG_DUMPS[harp-prof]%% *} "$CG_N2" ${CG_DUMPS[harp-prof]##* } \
                "${floor_args[@]}" --top 20
        } >"$PROFILE_OUT"
        log "profile written to $PROFILE_OUT"
        echo
        echo "Per-function profile of the non-stripped harp (and floor): bench/last-callgrind.txt."
    fi
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main_callgrind "$@"
fi
