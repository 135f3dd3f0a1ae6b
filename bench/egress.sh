#!/usr/bin/env bash
# Egress proxy throughput and latency: the same load on a local HTTP server, directly and
# through moat's egress proxy, in one run.
#
#   bench/egress.sh
#
# Starts, all on 127.0.0.1:
#   upstream  nginx returning `200 ok\n` (the outside host)                       :$UPSTREAM_PORT
#   moat      `moat serve` on a temp project with one service, `bench` (no VPC egress), whose
#             `egress:bench` proxy listener is what its instances get as HTTP_PROXY; the
#             project's `egress.hosts` names `www.bench.example` (203.0.113.10, public) with
#             the upstream as its local stand-in
# and measures with wrk, interleaved, ROUNDS times at CONNS connections:
#   direct        GET http://127.0.0.1:$UPSTREAM_PORT/
#   proxy         GET http://www.bench.example/ in absolute form to the egress proxy: decided
#                 (`direct`, allowed), forwarded on a pooled connection, one egress record each
#   proxy-service GET http://bench-NUMBER.REGION.run.app/ to the egress proxy: handed to the
#                 front door's `service:bench` listener, which decides and forwards it (two
#                 hops, two records)
# then prints the medians and the ratios to `direct`.
#
# Installs nginx-light and wrk with apt-get when missing. Everything it starts is stopped on
# exit. Overridable: DURATION, CONNS, THREADS, ROUNDS, NGINX_WORKERS, UPSTREAM_PORT, KEEP (keep
# the temp dir), MOAT_BIN (measure this binary instead of building the working tree).
set -euo pipefail

DURATION=${DURATION:-6s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
UPSTREAM_PORT=${UPSTREAM_PORT:-18201}
KEEP=${KEEP:-0}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib/common.sh
source "$ROOT/bench/lib/common.sh"
NUMBER=123456789012
REGION=us-central1
PROJECT_ID=bench-egress
OUTSIDE=www.bench.example
SERVICE_HOST=bench-${NUMBER}.${REGION}.run.app

install_missing nginx-light:nginx wrk:wrk curl:curl
build_moat

# --- processes ----------------------------------------------------------------------------------
TMP=$(mktemp -d /tmp/moat-egress.XXXXXX)
PIDS=()
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting nginx upstream :$UPSTREAM_PORT"
start_upstream

# --- the bench project -------------------------------------------------------------------------
mkdir -p "$TMP/project/services"
cat >"$TMP/project/moat.yaml" <<EOF
project:
  id: $PROJECT_ID
  number: "$NUMBER"
  region: $REGION
egress:
  hosts:
    - name: $OUTSIDE
      address: 203.0.113.10
      local: 127.0.0.1:$UPSTREAM_PORT
listeners:
  internet: 127.0.0.1:0
run:
  bench: {url: "http://127.0.0.1:$UPSTREAM_PORT"}
EOF
cat >"$TMP/project/services/bench.yaml" <<EOF
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  annotations:
    run.googleapis.com/ingress: all
    run.googleapis.com/invoker-iam-disabled: 'true'
  labels:
    cloud.googleapis.com/location: $REGION
  name: bench
  namespace: '$NUMBER'
spec:
  template:
    spec:
      containers:
      - image: bench
      serviceAccountName: bench@$PROJECT_ID.iam.gserviceaccount.com
EOF

STATE=$TMP/state
log "starting moat serve (decisions: $STATE/decisions.jsonl)"
"$MOAT" serve "$TMP/project" --state "$STATE" >"$TMP/moat.out" 2>"$TMP/moat.err" &
MOAT_PID=$!
PIDS+=("$MOAT_PID")
for _ in $(seq 100); do
    grep -q '^ready:' "$TMP/moat.out" 2>/dev/null && break
    sleep 0.1
done
PROXY=$(awk '$1 == "egress:bench" { print $2 }' "$TMP/moat.out")
[[ -n $PROXY ]] || { echo "moat printed no egress:bench listener:" >&2; cat "$TMP/moat.out" "$TMP/moat.err" >&2; exit 1; }

# wrk sends origin-form; these make it a proxy client: absolute-form request line and the
# destination's Host.
cat >"$TMP/outside.lua" <<EOF
wrk.path = "http://$OUTSIDE/"
wrk.headers["Host"] = "$OUTSIDE"
EOF
cat >"$TMP/service.lua" <<EOF
wrk.path = "http://$SERVICE_HOST/"
wrk.headers["Host"] = "$SERVICE_HOST"
EOF

# --- sanity -------------------------------------------------------------------------------------
check() { # WANT DESCRIPTION CURL_ARGS...
    local want=$1 what=$2 got
    shift 2
    got=$(curl -s -o /dev/null -w '%{http_code}' "$@")
    [[ $got == "$want" ]] || { echo "sanity: $what answered $got, want $want" >&2; exit 1; }
}
check 200 direct "http://127.0.0.1:$UPSTREAM_PORT/"
check 200 proxy -x "http://$PROXY" "http://$OUTSIDE/"
check 200 proxy-service -x "http://$PROXY" "http://$SERVICE_HOST/"
check 403 "proxy to a private address" -x "http://$PROXY" "http://10.1.2.3/"

# --- measuring ----------------------------------------------------------------------------------
TARGETS=(direct proxy proxy-service)
to_ms() { # wrk's 123.45us / 1.23ms / 1.02s → ms
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
        else { printf "nan" } }'
}
wrk_cmd() { # TARGET CONNS DURATION THREADS
    case $1 in
        direct) echo "wrk -t$4 -c$2 -d$3 --latency http://127.0.0.1:$UPSTREAM_PORT/" ;;
        proxy) echo "wrk -t$4 -c$2 -d$3 --latency -s $TMP/outside.lua http://$PROXY/" ;;
        proxy-service) echo "wrk -t$4 -c$2 -d$3 --latency -s $TMP/service.lua http://$PROXY/" ;;
    esac
}

RESULTS=$TMP/results.tsv # target round rps p50 p99
: >"$RESULTS"
log "warm-up"
for t in "${TARGETS[@]}"; do $(wrk_cmd "$t" 8 1s 1) >/dev/null; done
log "wrk -t$THREADS -c$CONNS -d$DURATION --latency, $ROUNDS rounds, interleaved"
for round in $(seq "$ROUNDS"); do
    for t in "${TARGETS[@]}"; do
        out=$TMP/wrk-$t-$round.txt
        $(wrk_cmd "$t" "$CONNS" "$DURATION" "$THREADS") >"$out"
        if grep -q 'Non-2xx' "$out"; then
            echo "wrk against $t got non-2xx responses:" >&2
            cat "$out" >&2
            exit 1
        fi
        rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
        p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")
        p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
        printf '%s\t%s\t%s\t%s\t%s\n' "$t" "$round" "$rps" "$p50" "$p99" >>"$RESULTS"
        printf '  %-14s round %s: %9.0f req/s  p50 %7.3f ms  p99 %7.3f ms\n' "$t" "$round" "$rps" "$p50" "$p99" >&2
    done
done
LINES=$(grep -c '"kind":"egress"' "$STATE/decisions.jsonl" || true)

# --- report -------------------------------------------------------------------------------------
echo
echo "egress proxy: $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)); wrk, nginx and moat share them"
echo "wrk -t$THREADS -c$CONNS -d$DURATION --latency, median of $ROUNDS interleaved rounds"
echo
awk -F'\t' '
    function median(list,   a, n, i, j, t) {
        n = split(list, a, " ")
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
        return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    {
        rps[$1] = rps[$1] " " $3; p50[$1] = p50[$1] " " $4; p99[$1] = p99[$1] " " $5
        if (!seen[$1]++) order[++n] = $1
    }
    END {
        printf "| target | req/s (median) | p50 ms | p99 ms | req/s ÷ direct | p50 ÷ direct | p99 ÷ direct |\n"
        printf "| --- | --- | --- | --- | --- | --- | --- |\n"
        for (i = 1; i <= n; i++) { k = order[i]; mr[k] = median(rps[k]); m50[k] = median(p50[k]); m99[k] = median(p99[k]) }
        for (i = 1; i <= n; i++) {
            k = order[i]
            printf "| %s | %.0f | %.3f | %.3f | %.2f× | %.2f× | %.2f× |\n", k, mr[k], m50[k], m99[k],
                mr[k] / mr["direct"], m50[k] / m50["direct"], m99[k] / m99["direct"]
        }
    }' "$RESULTS"
echo
echo "egress records written: $LINES"
