#!/usr/bin/env bash
# User-space instructions per proxied request, moat next to nginx, counted by callgrind.
#
#   bench/frontdoor-instructions.sh
#
# Why: on a shared 2-core machine, req/s and CPU time per request (bench/frontdoor.sh) move by
# ±30 % between runs of the same binary, which hides changes of a few per cent. Instructions
# retired in user space do not move with the machine's load. They leave out the kernel (about
# half of a proxy's CPU on loopback, and the same for both: two reads and two writes per
# request) and they weigh every instruction the same, so they are a measure of work done, not
# of time: read them next to bench/frontdoor.sh, not instead of it.
#
# Starts the upstream, the nginx proxy and the project of bench/frontdoor.sh (shared in
# bench/lib/frontdoor.sh). nginx runs as one process (`master_process off`, one worker) and
# moat as `moat serve`, each under `valgrind --tool=callgrind`. For each target: a warm-up
# (wrk, 4 connections, 3 s), counters zeroed, wrk for DURATION on 4 connections, counters
# dumped; instructions ÷ requests wrk completed. Targets: nginx, moat-public (invoker check
# disabled), moat-private (ID token verified from the cache, IAM, the decision record), and
# moat-b-* for a second binary (MOAT_BIN_B).
#
# One caveat is reported with the numbers: valgrind's CPU has no SHA extensions, so the
# SHA-256 the token cache takes of each token runs aws-lc's software code (~30,000
# instructions per private request) where the real machine runs SHA-NI (~1 % of moat's
# CPU in a perf profile). The table shows the private target with and without that digest.
#
# Installs nginx-light, wrk and valgrind with apt-get when missing. Overridable: DURATION,
# UPSTREAM_PORT, PROXY_PORT, MOAT_PORT, MOAT_B_PORT, MOAT_BIN, MOAT_BIN_B, KEEP.
set -euo pipefail

DURATION=${DURATION:-10s}
UPSTREAM_PORT=${UPSTREAM_PORT:-18101}
PROXY_PORT=${PROXY_PORT:-18100}
MOAT_PORT=${MOAT_PORT:-18180}
MOAT_B_PORT=${MOAT_B_PORT:-18182}
KEEP=${KEEP:-0}
EDGE=0

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib/frontdoor.sh
source "$ROOT/bench/lib/frontdoor.sh"

install_missing nginx-light:nginx wrk:wrk curl:curl valgrind:callgrind_control
build_moat

TMP=$(mktemp -d /tmp/moat-frontdoor-ir.XXXXXX)
PIDS=()
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting nginx upstream :$UPSTREAM_PORT"
start_upstream
write_project "$TMP/project" "$MOAT_PORT"
STATE=$TMP/state
TOKEN=$("$MOAT" token "$TMP/project" --as "serviceAccount:$SA" \
    --audience "https://$PRIV_HOST" --state "$STATE")

RESULTS=$TMP/results.tsv # target requests instructions digest_instructions pipeline_instructions
: >"$RESULTS"

# The instructions in FUNCTION and what it calls, from callgrind_annotate's inclusive listing:
# its first (largest) line is the whole function, later ones are parts inlined elsewhere.
inclusive() { # FUNCTION ANNOTATED
    awk -v f="$1" 'index($0, f) { gsub(",", "", $1); print $1; exit }' "$2"
}

wait_file() { # FILE: until callgrind has written it (10 s)
    local i
    for i in $(seq 100); do
        [[ -s $1 ]] && grep -q '^totals:' "$1" && return 0
        sleep 0.1
    done
    echo "callgrind wrote no $1" >&2
    return 1
}

# Runs COMMAND... under callgrind (its counts in $TMP/cg-NAME.*), waits for PORT, then measures
# each TARGET (name:host-or-empty:token-or-empty) in turn.
measure() { # NAME PORT "TARGET..." COMMAND...
    local name=$1 port=$2 targets=$3
    shift 3
    valgrind --tool=callgrind --callgrind-out-file="$TMP/cg-$name.%p" --dump-instr=no "$@" \
        >"$TMP/$name.out" 2>"$TMP/$name.err" &
    local pid=$!
    PIDS+=("$pid")
    wait_port "$port" 600
    local target host token hdr out n dumps=0
    for target in $targets; do
        IFS=: read -r target host token <<<"$target"
        hdr=()
        [[ -n $host ]] && hdr+=(-H "Host: $host")
        [[ -n $token ]] && hdr+=(-H "Authorization: Bearer $TOKEN")
        check 200 "$target" "${hdr[@]}" "http://127.0.0.1:$port/"
        wrk -t1 -c4 -d3s "${hdr[@]}" "http://127.0.0.1:$port/" >/dev/null
        callgrind_control -z "$pid" >/dev/null
        out=$(wrk -t1 -c4 -d"$DURATION" "${hdr[@]}" "http://127.0.0.1:$port/")
        callgrind_control -d "$pid" >/dev/null
        dumps=$((dumps + 1))
        if grep -q 'Non-2xx' <<<"$out"; then
            echo "wrk against $target got non-2xx responses:" >&2
            echo "$out" >&2
            exit 1
        fi
        n=$(awk '/requests in/ { print $1 }' <<<"$out")
        # Dumps are numbered in order: this target's is the latest.
        local dump=$TMP/cg-$name.$pid.$dumps
        wait_file "$dump"
        local ir digest pipeline
        ir=$(awk '/^(summary|totals):/ { print $2; exit }' "$dump")
        callgrind_annotate --inclusive=yes --threshold=100 "$dump" >"$dump.annotated" 2>/dev/null
        digest=$(inclusive 'moat_crypto::verify::cache::Cache::digest' "$dump.annotated")
        pipeline=$(inclusive 'moat_server::frontdoor::pipeline::handle::{{closure}}' "$dump.annotated")
        printf '%s\t%s\t%s\t%s\t%s\n' "$target" "$n" "$ir" "${digest:-0}" "${pipeline:-0}" >>"$RESULTS"
        printf '  %-16s %8d requests  %8.0f instructions/request\n' "$target" "$n" "$(awk -v a="$ir" -v b="$n" 'BEGIN { print a / b }')" >&2
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

log "nginx proxy under callgrind (one process)"
PROXY_DIR=$(nginx_conf proxy "$(proxy_server_block)")
measure nginx "$PROXY_PORT" "nginx::" "$(nginx_bin)" -p "$PROXY_DIR" -c "$PROXY_DIR/nginx.conf" -g 'daemon off; master_process off;'

log "moat serve under callgrind"
measure moat "$MOAT_PORT" "moat-public:$PUB_HOST: moat-private:$PRIV_HOST:1" \
    "$MOAT" serve "$TMP/project" --state "$STATE"

if [[ -n ${MOAT_BIN_B:-} ]]; then
    log "second binary ($MOAT_BIN_B) under callgrind"
    write_project "$TMP/project-b" "$MOAT_B_PORT"
    mkdir -p "$TMP/state-b"
    cp -r "$STATE/keys" "$TMP/state-b/keys"
    measure moat-b "$MOAT_B_PORT" "moat-b-public:$PUB_HOST: moat-b-private:$PRIV_HOST:1" \
        "$MOAT_BIN_B" serve "$TMP/project-b" --state "$TMP/state-b"
fi

echo
echo "user-space instructions per request (callgrind), wrk -t1 -c4 -d$DURATION after a 3 s warm-up"
echo
awk -F'\t' '
    {
        t[NR] = $1; n[NR] = $2; ir[NR] = $3 / $2; dg[NR] = $4 / $2; pl[NR] = $5 / $2
        if ($1 == "nginx") base = $3 / $2
    }
    END {
        print "| target | requests | instructions/request | ÷ nginx | without the token digest | ÷ nginx | in the pipeline | outside it |"
        print "| --- | --- | --- | --- | --- | --- | --- | --- |"
        for (i = 1; i <= NR; i++) {
            inside = (pl[i] > 0) ? sprintf("%.0f", pl[i]) : "-"
            outside = (pl[i] > 0) ? sprintf("%.0f", ir[i] - pl[i]) : "-"
            printf "| %s | %d | %.0f | %.2f× | %.0f | %.2f× | %s | %s |\n", t[i], n[i], ir[i], ir[i] / base,
                ir[i] - dg[i], (ir[i] - dg[i]) / base, inside, outside
        }
    }' "$RESULTS"
echo
echo "in the pipeline: pipeline::handle and all it calls (route, policy, token, forward, record);"
echo "outside it: the rest of the process (hyper's server and client connections, tokio)."
