#!/usr/bin/env bash
# The Secret Manager API over HTTP: access throughput and latency, add-version latency.
#
#   bench/secrets.sh
#
# Starts `moat up` on a temp project with one workload (`app`, a stdlib Python server whose
# service account holds roles/secretmanager.admin on the project), takes an access token from
# the workload's own metadata server (as google-auth does), creates a secret with a 1 KiB value
# through `moat secrets`, then:
#   access      wrk with `Authorization: Bearer <access token>` on
#               GET /v1/projects/P/secrets/bench/versions/latest:access, at 1 connection
#               (sequential) and at HIGH_CONNS connections, DURATION each, ROUNDS rounds
#               interleaved; medians of req/s, p50 and p99
#   addVersion  ADDS sequential POST .../bench:addVersion with curl (a 1 KiB value and its
#               CRC32C), p50/p99/max of curl's time_total
# Every access is the store's full path: token lookup, IAM, redb read, unseal, CRC check, audit
# line. Every addVersion is a durable redb commit plus an fdatasync of the audit log.
#
# Installs wrk and curl with apt-get when missing. Everything it starts is stopped on exit.
# Overridable: DURATION, CONNS (the sequential case, default 1), HIGH_CONNS, THREADS, ROUNDS,
# ADDS, KEEP (keep the temp dir), MOAT_BIN (measure this binary instead of building the tree).
set -euo pipefail

DURATION=${DURATION:-10s}
CONNS=${CONNS:-1}
HIGH_CONNS=${HIGH_CONNS:-32}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
ADDS=${ADDS:-300}
KEEP=${KEEP:-0}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib/common.sh
source "$ROOT/bench/lib/common.sh"
PROJECT_ID=bench-sm
NUMBER=400000000004
SA=app@${PROJECT_ID}.iam.gserviceaccount.com

install_missing wrk:wrk curl:curl python3:python3
build_moat

# --- processes ----------------------------------------------------------------------------------
TMP=$(mktemp -d /tmp/moat-secrets-bench.XXXXXX)
PIDS=()
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the bench project --------------------------------------------------------------------------
P=$TMP/project
mkdir -p "$P/services" "$P/app"
cat >"$P/app/app.py" <<'EOF'
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
EOF
cat >"$P/moat.yaml" <<EOF
project: {id: $PROJECT_ID, number: "$NUMBER", region: us-central1}
listeners:
  internet: 127.0.0.1:0
iam:
  bindings:
  - role: roles/secretmanager.admin
    members: ["serviceAccount:$SA"]
run:
  app:
    command: [python3, app.py]
    dir: app
EOF
cat >"$P/services/app.yaml" <<EOF
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  annotations:
    run.googleapis.com/ingress: all
    run.googleapis.com/invoker-iam-disabled: 'true'
  name: app
  namespace: '$NUMBER'
  labels:
    cloud.googleapis.com/location: us-central1
spec:
  template:
    spec:
      containers:
      - image: app
      serviceAccountName: $SA
EOF

log "starting moat up (state: $P/.moat)"
"$MOAT" up "$P" >"$TMP/moat.out" 2>"$TMP/moat.err" &
MOAT_PID=$!
PIDS+=("$MOAT_PID")
for _ in $(seq 300); do
    grep -q '^ready:' "$TMP/moat.out" 2>/dev/null && break
    kill -0 "$MOAT_PID" 2>/dev/null || { cat "$TMP/moat.err" >&2; exit 1; }
    sleep 0.1
done
grep -q '^ready: 1/1' "$TMP/moat.out" || { echo "moat up did not get ready:" >&2; cat "$TMP/moat.out" "$TMP/moat.err" >&2; exit 1; }
listener() { awk -v o="$1" '$1 == o { print $2; exit }' "$TMP/moat.out"; }
SECRETS=$(listener secrets)
ADMIN=$(listener admin)
ENDPOINT=$(cat "$P/.moat/secrets/endpoint")
[[ $ENDPOINT == "http://$SECRETS" ]] || { echo "endpoint file says $ENDPOINT, the table $SECRETS" >&2; exit 1; }
MDS=$(curl -s "http://$ADMIN/status" | python3 -c 'import json,sys; print([s for s in json.load(sys.stdin)["services"] if s["service"] == "app"][0]["metadata"])')
TOKEN=$(curl -s -H 'Metadata-Flavor: Google' \
    "http://$MDS/computeMetadata/v1/instance/service-accounts/default/token" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

# --- the secret: a 1 KiB value ------------------------------------------------------------------
head -c 1024 /dev/urandom >"$TMP/value"
"$MOAT" secrets --project "$P" create bench --data-file "$TMP/value" >/dev/null
ACCESS=http://$SECRETS/v1/projects/$PROJECT_ID/secrets/bench/versions/latest:access
ADD=http://$SECRETS/v1/projects/$PROJECT_ID/secrets/bench:addVersion

# --- sanity: the workload's token reads the value; no token is a 401 ---------------------------
status() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
[[ $(status "$ACCESS") == 401 ]] || { echo "sanity: access without a token did not answer 401" >&2; exit 1; }
got=$(curl -s -H "Authorization: Bearer $TOKEN" "$ACCESS" | python3 -c 'import base64,json,sys; sys.stdout.buffer.write(base64.b64decode(json.load(sys.stdin)["payload"]["data"]))' | cmp - "$TMP/value" && echo same)
[[ $got == same ]] || { echo "sanity: the value read is not the value written" >&2; exit 1; }

# --- access: wrk ----------------------------------------------------------------------------------
to_ms() { # wrk's 123.45us / 1.23ms / 1.02s → ms
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
        else { printf "nan" } }'
}
RESULTS=$TMP/results.tsv # conns round rps p50 p99
: >"$RESULTS"
run_wrk() { # CONNS ROUND
    local conns=$1 round=$2 out=$TMP/wrk-$1-$2.txt threads=$THREADS
    ((conns < threads)) && threads=$conns
    wrk -t"$threads" -c"$conns" -d"$DURATION" --latency -H "Authorization: Bearer $TOKEN" "$ACCESS" >"$out"
    if grep -q 'Non-2xx' "$out"; then
        echo "wrk got non-2xx responses:" >&2
        cat "$out" >&2
        exit 1
    fi
    local rps p50 p99
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")
    p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
    printf '%s\t%s\t%s\t%s\t%s\n' "$conns" "$round" "$rps" "$p50" "$p99" >>"$RESULTS"
    printf '  c=%-3s round %s: %9.0f req/s  p50 %7.3f ms  p99 %7.3f ms\n' "$conns" "$round" "$rps" "$p50" "$p99" >&2
}
log "warm-up"
wrk -t1 -c4 -d1s -H "Authorization: Bearer $TOKEN" "$ACCESS" >/dev/null
log "wrk --latency on :access, $DURATION, c=$CONNS and c=$HIGH_CONNS, $ROUNDS rounds interleaved"
for round in $(seq "$ROUNDS"); do
    run_wrk "$CONNS" "$round"
    run_wrk "$HIGH_CONNS" "$round"
done

# --- addVersion: sequential curl ------------------------------------------------------------------
log "$ADDS sequential addVersion calls"
python3 - "$TMP/value" >"$TMP/add.json" <<'EOF'
import base64, sys
data = open(sys.argv[1], "rb").read()
crc = 0xFFFFFFFF
for b in data:
    crc ^= b
    for _ in range(8):
        crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
print('{"payload": {"data": "%s", "dataCrc32c": "%d"}}' % (base64.b64encode(data).decode(), crc ^ 0xFFFFFFFF))
EOF
: >"$TMP/add.times"
for _ in $(seq "$ADDS"); do
    curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' --data-binary "@$TMP/add.json" "$ADD" >>"$TMP/add.times"
done
if awk '$1 != 200 { bad = 1 } END { exit !bad }' "$TMP/add.times"; then
    echo "addVersion failed:" >&2
    sort "$TMP/add.times" | uniq -c | head >&2
    exit 1
fi

HWM=$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$MOAT_PID/status")
AUDIT_LINES=$(wc -l <"$P/.moat/secrets/audit.jsonl")

# --- report -------------------------------------------------------------------------------------
echo
echo "secret manager API: $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)); wrk and moat share them"
echo "wrk -t$THREADS (1 for c=1) -d$DURATION --latency, median of $ROUNDS interleaved rounds; 1 KiB value; access token from the workload's metadata server"
echo
awk -F'\t' '
    function median(list,   a, n, i, j, t) {
        n = split(list, a, " ")
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
        return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    {
        k = $1; rps[k] = rps[k] " " $3; p50[k] = p50[k] " " $4; p99[k] = p99[k] " " $5
        if (!seen[k]++) order[++n] = k
        runs[k] = runs[k] (runs[k] == "" ? "" : " / ") sprintf("%.0f", $3)
    }
    END {
        printf "| :access, conns | req/s (median) | runs | p50 ms | p99 ms |\n| --- | --- | --- | --- | --- |\n"
        for (i = 1; i <= n; i++) { k = order[i]; printf "| %s | %.0f | %s | %.3f | %.3f |\n", k, median(rps[k]), runs[k], median(p50[k]), median(p99[k]) }
    }' "$RESULTS"
echo
sort -n -k2 "$TMP/add.times" | awk -v n="$ADDS" '
    { t[NR] = $2 * 1000 }
    END {
        p50 = t[int((n + 1) * 0.50)]; p99 = t[int(n * 0.99) > 0 ? int(n * 0.99) : 1]
        printf "| addVersion (sequential, %d calls) | p50 %.2f ms | p99 %.2f ms | max %.2f ms |\n", n, p50, p99, t[n]
    }'
echo
echo "moat after the run: VmHWM $((HWM / 1024)) MiB; audit.jsonl $AUDIT_LINES lines"
