#!/usr/bin/env bash
# Front-door throughput and latency, side by side with nginx, in one run.
#
#   bench/frontdoor.sh
#
# Starts, all on 127.0.0.1:
#   upstream  nginx returning `200 ok\n` (the workload)                    :$UPSTREAM_PORT
#   nginx     an nginx reverse proxy to it (the peer)                      :$PROXY_PORT
#   moat      `moat serve` on a temp project in front of the same upstream :$MOAT_PORT
#             (`pub`: invoker check disabled; `priv`: private, one service-account invoker)
#   moat-nolog  (LOGCOST=1) the same moat, with decisions.jsonl and stderr sent to /dev/null
#   moat-lb-*   (EDGE=1) `pub` through two external load balancers of the same moat:
#             `moat-lb-plain` without a security policy, `moat-lb-edge` with a 20-rule Cloud
#             Armor policy (19 deny rules that do not match, CIDR and CEL alternating, then a
#             throttle keyed on IP that every request conforms to) before the default rule
#   moat-b-*    (MOAT_BIN_B) a second moat binary on the same project and keys, `pub` and `priv`:
#             two builds compared in the same run
# and measures each with wrk, interleaved (direct, nginx, moat-public, moat-private, repeat),
# ROUNDS times at CONNS connections and ROUNDS times at HIGH_CONNS connections; prints the
# medians, the ratios to nginx, each proxy's CPU time per request (user + system of its
# processes over the run, divided by the requests wrk completed), and moat's memory (VmRSS peak
# sampled during the HIGH_CONNS runs, and VmHWM).
#
# Installs nginx-light and wrk with apt-get when missing. Everything it starts is stopped on
# exit. Overridable: DURATION, HIGH_DURATION, CONNS, HIGH_CONNS, THREADS, ROUNDS, LOGCOST, EDGE,
# NGINX_WORKERS, UPSTREAM_PORT, PROXY_PORT, MOAT_PORT, MOAT_NOLOG_PORT, KEEP (keep the temp dir),
# MOAT_BIN (measure this binary instead of building the working tree), MOAT_BIN_B and
# MOAT_B_PORT (a second binary, measured as moat-b-public / moat-b-private).
set -euo pipefail

DURATION=${DURATION:-8s}
HIGH_DURATION=${HIGH_DURATION:-6s}
CONNS=${CONNS:-64}
HIGH_CONNS=${HIGH_CONNS:-200}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
LOGCOST=${LOGCOST:-1}
EDGE=${EDGE:-0}
UPSTREAM_PORT=${UPSTREAM_PORT:-18101}
PROXY_PORT=${PROXY_PORT:-18100}
MOAT_PORT=${MOAT_PORT:-18180}
MOAT_NOLOG_PORT=${MOAT_NOLOG_PORT:-18181}
MOAT_B_PORT=${MOAT_B_PORT:-18182}
KEEP=${KEEP:-0}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib/frontdoor.sh
source "$ROOT/bench/lib/frontdoor.sh"

install_missing nginx-light:nginx wrk:wrk curl:curl
build_moat

# --- processes ----------------------------------------------------------------------------------
TMP=$(mktemp -d /tmp/moat-frontdoor.XXXXXX)
PIDS=()
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting nginx upstream :$UPSTREAM_PORT and nginx proxy :$PROXY_PORT"
start_upstream
start_nginx proxy "$(proxy_server_block)" "$PROXY_PORT"

write_project "$TMP/project" "$MOAT_PORT"
STATE=$TMP/state
TOKEN=$("$MOAT" token "$TMP/project" --as "serviceAccount:$SA" \
    --audience "https://$PRIV_HOST" --state "$STATE")

log "starting moat serve :$MOAT_PORT (decisions: $STATE/decisions.jsonl)"
"$MOAT" serve "$TMP/project" --state "$STATE" >"$TMP/moat.out" 2>"$TMP/moat.err" &
MOAT_PID=$!
PIDS+=("$MOAT_PID")
wait_port "$MOAT_PORT"

# Another `moat serve` of BINARY on the same project (on PORT) with the same keys, so the token
# is good for it too; its decisions.jsonl is a link to LOG when given. Prints its pid.
start_copy() { # NAME BINARY PORT [LOG]
    local name=$1 bin=$2 port=$3 log=${4:-}
    write_project "$TMP/project-$name" "$port"
    mkdir -p "$TMP/state-$name"
    cp -r "$STATE/keys" "$TMP/state-$name/keys"
    if [[ -n $log ]]; then ln -s "$log" "$TMP/state-$name/decisions.jsonl"; fi
    "$bin" serve "$TMP/project-$name" --state "$TMP/state-$name" >"${log:-$TMP/moat-$name.out}" 2>"${log:-$TMP/moat-$name.err}" &
    echo $!
}

if [[ $LOGCOST == 1 ]]; then
    # The same front door, its decision log and per-request stderr line going to /dev/null: the
    # difference to `moat-private` is what writing the log costs.
    NOLOG_PID=$(start_copy nolog "$MOAT" "$MOAT_NOLOG_PORT" /dev/null)
    PIDS+=("$NOLOG_PID")
    wait_port "$MOAT_NOLOG_PORT"
fi

if [[ -n ${MOAT_BIN_B:-} ]]; then
    # The second build, measured as moat-b-*.
    B_PID=$(start_copy b "$MOAT_BIN_B" "$MOAT_B_PORT")
    PIDS+=("$B_PID")
    wait_port "$MOAT_B_PORT"
fi

# --- sanity: every target answers 200, and the private one refuses without a token --------------
check 200 direct "http://127.0.0.1:$UPSTREAM_PORT/"
check 200 nginx "http://127.0.0.1:$PROXY_PORT/"
check 200 moat-public -H "Host: $PUB_HOST" "http://127.0.0.1:$MOAT_PORT/"
check 403 "moat-private without a token" -H "Host: $PRIV_HOST" "http://127.0.0.1:$MOAT_PORT/"
check 200 moat-private -H "Host: $PRIV_HOST" -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$MOAT_PORT/"
if [[ -n ${MOAT_BIN_B:-} ]]; then
    check 200 moat-b-public -H "Host: $PUB_HOST" "http://127.0.0.1:$MOAT_B_PORT/"
    check 403 "moat-b-private without a token" -H "Host: $PRIV_HOST" "http://127.0.0.1:$MOAT_B_PORT/"
    check 200 moat-b-private -H "Host: $PRIV_HOST" -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$MOAT_B_PORT/"
fi
if [[ $EDGE == 1 ]]; then
    check 200 moat-lb-plain -H "Host: $LB_PLAIN_HOST" "http://127.0.0.1:$MOAT_PORT/"
    check 200 moat-lb-edge -H "Host: $LB_EDGE_HOST" "http://127.0.0.1:$MOAT_PORT/"
    check 403 "moat-lb-edge on a denied path" -H "Host: $LB_EDGE_HOST" "http://127.0.0.1:$MOAT_PORT/blocked-2"
fi

# --- measuring ----------------------------------------------------------------------------------
TARGETS=(direct nginx moat-public moat-private)
if [[ $LOGCOST == 1 ]]; then TARGETS+=(moat-private-nolog); fi
if [[ -n ${MOAT_BIN_B:-} ]]; then TARGETS+=(moat-b-public moat-b-private); fi
if [[ $EDGE == 1 ]]; then TARGETS+=(moat-lb-plain moat-lb-edge); fi

wrk_args() { # TARGET: the URL and headers for it
    case $1 in
        direct) echo "http://127.0.0.1:$UPSTREAM_PORT/" ;;
        nginx) echo "http://127.0.0.1:$PROXY_PORT/" ;;
        moat-public) echo "http://127.0.0.1:$MOAT_PORT/" ;;
        moat-private) echo "http://127.0.0.1:$MOAT_PORT/" ;;
        moat-private-nolog) echo "http://127.0.0.1:$MOAT_NOLOG_PORT/" ;;
        moat-b-public | moat-b-private) echo "http://127.0.0.1:$MOAT_B_PORT/" ;;
        moat-lb-plain | moat-lb-edge) echo "http://127.0.0.1:$MOAT_PORT/" ;;
    esac
}

to_ms() { # wrk's 123.45us / 1.23ms / 1.02s → ms
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
        else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.3f", v * 60000 }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
        else { printf "nan" } }'
}

rss_of() { # PID FIELD → KiB
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0
}

cpu_ticks() { # PID...: user + system time of these processes (all their threads), clock ticks
    local total=0 p
    for p in "$@"; do
        total=$((total + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo "$total"
}
TICKS=$(getconf CLK_TCK)

nginx_rss() { # MASTER_PID: VmRSS of the master and its workers, KiB
    local total=0 p
    for p in "$1" $(pgrep -P "$1" || true); do
        total=$((total + $(rss_of "$p" VmRSS)))
    done
    echo "$total"
}

RESULTS=$TMP/results.tsv # conns target round rps p50 p99 rss_kib cpu_us_per_request
: >"$RESULTS"

run_wrk() { # CONNS DURATION TARGET ROUND
    local conns=$1 dur=$2 target=$3 round=$4 out=$TMP/wrk-$1-$3-$4.txt
    local url
    url=$(wrk_args "$target")
    local hdr=()
    case $target in
        moat-public | moat-b-public) hdr=(-H "Host: $PUB_HOST") ;;
        moat-private | moat-private-nolog | moat-b-private) hdr=(-H "Host: $PRIV_HOST" -H "Authorization: Bearer $TOKEN") ;;
        moat-lb-plain) hdr=(-H "Host: $LB_PLAIN_HOST") ;;
        moat-lb-edge) hdr=(-H "Host: $LB_EDGE_HOST") ;;
    esac
    local watch_pid=""
    case $target in
        moat-public | moat-private | moat-lb-plain | moat-lb-edge) watch_pid=$MOAT_PID ;;
        moat-private-nolog) watch_pid=${NOLOG_PID:-} ;;
        moat-b-public | moat-b-private) watch_pid=${B_PID:-} ;;
        nginx) watch_pid=$proxy_PID ;;
    esac
    # The proxy's processes, for its CPU time: nginx's master and workers, or moat.
    local cpu_pids=()
    if [[ $target == nginx ]]; then
        cpu_pids=("$watch_pid" $(pgrep -P "$watch_pid" || true))
    elif [[ -n $watch_pid ]]; then
        cpu_pids=("$watch_pid")
    fi
    local ticks_before=0
    if ((${#cpu_pids[@]})); then ticks_before=$(cpu_ticks "${cpu_pids[@]}"); fi
    # Peak RSS over the run, sampled every 200 ms.
    local peak_file=$TMP/peak-$conns-$target-$round
    echo 0 >"$peak_file"
    local sampler=""
    if [[ -n $watch_pid ]]; then
        (
            peak=0
            while sleep 0.2; do
                if [[ $target == nginx ]]; then r=$(nginx_rss "$watch_pid"); else r=$(rss_of "$watch_pid" VmRSS); fi
                ((r > peak)) && peak=$r && echo "$peak" >"$peak_file"
            done
        ) &
        sampler=$!
    fi
    wrk -t"$THREADS" -c"$conns" -d"$dur" --latency "${hdr[@]}" "$url" >"$out"
    local cpu_us=""
    if ((${#cpu_pids[@]})); then
        local ticks=$(($(cpu_ticks "${cpu_pids[@]}") - ticks_before))
        local requests
        requests=$(awk '/requests in/ { print $1 }' "$out")
        cpu_us=$(awk -v t="$ticks" -v hz="$TICKS" -v n="$requests" 'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n }')
    fi
    if [[ -n $sampler ]]; then kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true; fi
    if grep -q 'Non-2xx' "$out"; then
        echo "wrk against $target got non-2xx responses:" >&2
        cat "$out" >&2
        exit 1
    fi
    # A read error or two when wrk stops mid-request is normal; more is reported, not hidden.
    if grep -q 'Socket errors' "$out"; then
        printf '  c=%s %s round %s: %s\n' "$conns" "$target" "$round" "$(grep 'Socket errors' "$out" | xargs)" >>"$TMP/socket-errors"
    fi
    local rps p50 p99
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")
    p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$conns" "$target" "$round" "$rps" "$p50" "$p99" "$(cat "$peak_file")" "$cpu_us" >>"$RESULTS"
    printf '  c=%-4s %-19s round %s: %9.0f req/s  p50 %7.3f ms  p99 %7.3f ms  cpu %s µs/req\n' \
        "$conns" "$target" "$round" "$rps" "$p50" "$p99" "${cpu_us:--}" >&2
}

# Warm-up: connections, the token cache, the upstream pools.
log "warm-up"
for t in "${TARGETS[@]}"; do
    url=$(wrk_args "$t")
    case $t in
        moat-public | moat-b-public) wrk -t1 -c8 -d1s -H "Host: $PUB_HOST" "$url" >/dev/null ;;
        moat-private | moat-private-nolog | moat-b-private) wrk -t1 -c8 -d1s -H "Host: $PRIV_HOST" -H "Authorization: Bearer $TOKEN" "$url" >/dev/null ;;
        moat-lb-plain) wrk -t1 -c8 -d1s -H "Host: $LB_PLAIN_HOST" "$url" >/dev/null ;;
        moat-lb-edge) wrk -t1 -c8 -d1s -H "Host: $LB_EDGE_HOST" "$url" >/dev/null ;;
        *) wrk -t1 -c8 -d1s "$url" >/dev/null ;;
    esac
done

log "wrk -t$THREADS -c$CONNS -d$DURATION --latency, $ROUNDS rounds, interleaved"
for round in $(seq "$ROUNDS"); do
    for t in "${TARGETS[@]}"; do run_wrk "$CONNS" "$DURATION" "$t" "$round"; done
done
log "wrk -t$THREADS -c$HIGH_CONNS -d$HIGH_DURATION --latency, $ROUNDS rounds, interleaved"
for round in $(seq "$ROUNDS"); do
    for t in "${TARGETS[@]}"; do run_wrk "$HIGH_CONNS" "$HIGH_DURATION" "$t" "$round"; done
done

MOAT_HWM=$(rss_of "$MOAT_PID" VmHWM)
MOAT_RSS=$(rss_of "$MOAT_PID" VmRSS)
LOG_BYTES=$(stat -c %s "$STATE/decisions.jsonl")
LOG_LINES=$(wc -l <"$STATE/decisions.jsonl")

# --- report -------------------------------------------------------------------------------------
if [[ -s $TMP/socket-errors ]]; then
    echo
    echo "socket errors reported by wrk:"
    cat "$TMP/socket-errors"
fi
echo
echo "front door: $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)); wrk, nginx and moat share them"
echo "wrk -t$THREADS -d$DURATION/$HIGH_DURATION --latency, median of $ROUNDS interleaved rounds; nginx worker_processes $NGINX_WORKERS"
echo
awk -F'\t' -v rounds="$ROUNDS" '
    function median(list,   a, n, i, j, t) {
        n = split(list, a, " ")
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
        return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    {
        k = $1 SUBSEP $2
        rps[k] = rps[k] " " $4; p50[k] = p50[k] " " $5; p99[k] = p99[k] " " $6
        if ($8 != "") cpu[k] = cpu[k] " " $8
        if ($7 + 0 > peak[k] + 0) peak[k] = $7
        if (!seen[k]++) order[++n] = k
        runs[k] = runs[k] (runs[k] == "" ? "" : " / ") sprintf("%.1fk", $4 / 1000)
    }
    END {
        printf "| conns | target | req/s (median) | runs | p50 ms | p99 ms | req/s ÷ nginx | p50 ÷ nginx | p99 ÷ nginx | CPU µs/req | peak RSS |\n"
        printf "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
        for (i = 1; i <= n; i++) {
            k = order[i]; split(k, kk, SUBSEP)
            mr[k] = median(rps[k]); m50[k] = median(p50[k]); m99[k] = median(p99[k])
        }
        for (i = 1; i <= n; i++) {
            k = order[i]; split(k, kk, SUBSEP); ng = kk[1] SUBSEP "nginx"
            mem = (peak[k] > 0) ? sprintf("%.1f MiB", peak[k] / 1024) : "-"
            cpus = (cpu[k] != "") ? sprintf("%.1f", median(cpu[k])) : "-"
            printf "| %s | %s | %.0f | %s | %.3f | %.3f | %.2f× | %.2f× | %.2f× | %s | %s |\n", kk[1], kk[2], mr[k], runs[k], m50[k], m99[k],
                mr[k] / mr[ng], m50[k] / m50[ng], m99[k] / m99[ng], cpus, mem
        }
    }' "$RESULTS"
echo
awk -v hwm="$MOAT_HWM" -v rss="$MOAT_RSS" -v bytes="$LOG_BYTES" -v lines="$LOG_LINES" 'BEGIN {
    printf "moat after the run: VmHWM %.1f MiB, VmRSS %.1f MiB; decisions.jsonl %d lines, %.0f MiB (%.0f bytes/record)\n",
        hwm / 1024, rss / 1024, lines, bytes / 1048576, (lines > 0 ? bytes / lines : 0) }'
