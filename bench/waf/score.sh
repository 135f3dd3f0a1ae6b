#!/usr/bin/env bash
# WAF scoring: the same Python runner (bench/waf/ftw.py) against nginx + libmodsecurity3 + CRS
# 3.3.4 and against moat's Cloud Armor WAF, side by side, in one run.
#
#   bench/waf/score.sh [crs] [detect] [throughput] [all] [--engines nginx,moat] [--require-corpus]
#
#   crs         CRS v3.3.4 regression tests (py-ftw YAML) of the families behind Cloud Armor's
#               sets (911 913 921 930 931 932 933 934 941 942 943 944): pass/fail/skipped per
#               family. nginx: DetectionOnly, paranoia 4, REQUEST-*.conf; moat: one preview rule
#               per set at sensitivity 4.
#   detect      libinjection data/sqli-*.txt, xss-*.txt (attacks), false_positives.txt and the CRS
#               tests' no_log_contains stages (benign) as GET /?q=LINE at paranoia/sensitivity 1
#               and 2, sqli + xss only: detected (any 941/942 id fired) / total.
#   throughput  wrk with a 20 benign / 5 attack mix (mixed.tsv): nginx + ModSecurity + CRS PL2
#               blocking (anomaly score) vs moat with sqli + xss at sensitivity 2 (deny(403)),
#               both proxying to the same upstream; req/s, p50, p99 and moat / nginx-modsec.
#   all         the three (the default).
#
# See bench/waf/README.md for how each number is produced. Everything listens on 127.0.0.1 and
# everything started is stopped on exit. Installs missing Debian packages with apt-get (nginx,
# libnginx-mod-http-modsecurity, modsecurity-crs, wrk, curl, python3-yaml).
#
# Environment: CRS_TESTS (default /work/shared/corpora/crs-v3.3.4/tests/regression/tests),
# LIBINJECTION_DATA (default /work/shared/corpora/libinjection/data), MOAT_BIN (default
# target/release/moat if it exists, else `cargo build --release -p moat`), RESULTS (where the
# JSON results and report.md go; default /tmp/moat-waf-results), KEEP=1 (keep the temp dir),
# DURATION (8s), CONNS (64), THREADS (2), ROUNDS (3), NGINX_WORKERS (auto, throughput only),
# BASE_PORT (18400: ports BASE_PORT..BASE_PORT+29 are used), MOAT_BIN_B (throughput: a second moat
# binary measured in the same run as target `moat-b`, to compare two builds), MOAT_POLICY (a policy JSON used
# instead of the generated ones: to dry-run the moat plumbing with a moat that has no WAF yet),
# MOAT_CRS_SETS (e.g. sqli,xss: the crs profile's policy names only these sets, for a moat that
# supports only some; the other families then fail for moat).
#
# Exit status: 0, or 3 when moat was requested but did not start (e.g. it cannot load the
# WAF policy yet); the other engine is still measured and reported.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CRS_TESTS=${CRS_TESTS:-/work/shared/corpora/crs-v3.3.4/tests/regression/tests}
LIBINJECTION_DATA=${LIBINJECTION_DATA:-/work/shared/corpora/libinjection/data}
RESULTS=${RESULTS:-/tmp/moat-waf-results}
KEEP=${KEEP:-0}
DURATION=${DURATION:-8s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
NGINX_WORKERS=${NGINX_WORKERS:-auto}
BASE_PORT=${BASE_PORT:-18400}

UPSTREAM_PORT=$((BASE_PORT + 9))
# scoring nginx (one worker): crs, detect PL1, detect PL2
NGX_CRS_PORT=$BASE_PORT
NGX_DET1_PORT=$((BASE_PORT + 1))
NGX_DET2_PORT=$((BASE_PORT + 2))
# throughput nginx: plain proxy, modsec sqli+xss PL2, modsec all request rules PL2
NGX_PLAIN_PORT=$((BASE_PORT + 10))
NGX_BLOCK_PORT=$((BASE_PORT + 11))
NGX_BLOCKFULL_PORT=$((BASE_PORT + 12))
# moat: one `moat serve` per profile
MOAT_CRS_PORT=$((BASE_PORT + 20))
MOAT_DET1_PORT=$((BASE_PORT + 21))
MOAT_DET2_PORT=$((BASE_PORT + 22))
MOAT_BLOCK_PORT=$((BASE_PORT + 23))
MOAT_B_PORT=$((BASE_PORT + 24))

CRS_RULES=/usr/share/modsecurity-crs/rules

log() { printf '==> %s\n' "$*" >&2; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit "${1:-2}"; }

# --- arguments ------------------------------------------------------------------------------------
STEPS=()
ENGINES=nginx,moat
REQUIRE_CORPUS=0
while (($#)); do
    case $1 in
        crs | detect | throughput) STEPS+=("$1") ;;
        all) STEPS+=(crs detect throughput) ;;
        --engines) ENGINES=${2:?--engines needs a list}; shift ;;
        --engines=*) ENGINES=${1#--engines=} ;;
        --require-corpus) REQUIRE_CORPUS=1 ;;
        -h | --help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage ;;
    esac
    shift
done
((${#STEPS[@]})) || STEPS=(crs detect throughput)
has_step() { local s; for s in "${STEPS[@]}"; do [[ $s == "$1" ]] && return 0; done; return 1; }
has_engine() { [[ ,$ENGINES, == *,$1,* ]]; }
for e in ${ENGINES//,/ }; do
    [[ $e == nginx || $e == moat ]] || { echo "unknown engine: $e (nginx, moat)" >&2; exit 2; }
done

# --- corpora ----------------------------------------------------------------------------------------
if has_step crs || has_step detect; then
    if [[ ! -d $CRS_TESTS ]]; then
        if ((REQUIRE_CORPUS)); then echo "CRS regression tests not found at $CRS_TESTS (CRS_TESTS)" >&2; exit 1; fi
        echo "crs: skipped: corpus absent ($CRS_TESTS; set CRS_TESTS)"
        NEW=()
        for s in "${STEPS[@]}"; do [[ $s == crs ]] || NEW+=("$s"); done
        STEPS=("${NEW[@]+"${NEW[@]}"}")
    fi
fi
if has_step detect && [[ ! -d $LIBINJECTION_DATA ]]; then
    if ((REQUIRE_CORPUS)); then echo "libinjection data not found at $LIBINJECTION_DATA (LIBINJECTION_DATA)" >&2; exit 1; fi
    echo "detect: skipped: corpus absent ($LIBINJECTION_DATA; set LIBINJECTION_DATA)"
    NEW=()
    for s in "${STEPS[@]}"; do [[ $s == detect ]] || NEW+=("$s"); done
    STEPS=("${NEW[@]+"${NEW[@]}"}")
fi
((${#STEPS[@]})) || exit 0

# --- tools ------------------------------------------------------------------------------------------
need=()
[[ -x /usr/sbin/nginx ]] || command -v nginx >/dev/null 2>&1 || need+=(nginx)
if has_engine nginx; then
    [[ -f /usr/lib/nginx/modules/ngx_http_modsecurity_module.so ]] || need+=(libnginx-mod-http-modsecurity)
fi
# moat loads the CRS rule files from /usr/share/modsecurity-crs too.
[[ -d $CRS_RULES ]] || need+=(modsecurity-crs)
if has_step throughput; then command -v wrk >/dev/null 2>&1 || need+=(wrk); fi
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import yaml' 2>/dev/null; then need+=(python3-yaml); fi
if ((${#need[@]})); then
    log "installing ${need[*]}"
    SUDO=()
    [[ $(id -u) -eq 0 ]] || SUDO=(sudo)
    # policy-rc.d exit 101: the packages must not start a system nginx on port 80.
    policy_created=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
        "${SUDO[@]}" chmod +x /usr/sbin/policy-rc.d
        policy_created=1
    fi
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    if ((policy_created)); then "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d; fi
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
# PyYAML from python3-yaml is Debian's python3; a pyenv/venv python may not have it.
PY=python3
if ! python3 -c 'import yaml' 2>/dev/null && [[ -x /usr/bin/python3 ]]; then PY=/usr/bin/python3; fi
FTW=("$PY" "$HERE/ftw.py")

MOAT=""
if has_engine moat; then
    if [[ -n ${MOAT_BIN:-} ]]; then
        MOAT=$MOAT_BIN
    elif [[ -x $ROOT/target/release/moat ]]; then
        MOAT=$ROOT/target/release/moat
        log "using $MOAT (built $(date -u -r "$MOAT" '+%F %H:%M UTC'); set MOAT_BIN to choose another)"
    else
        log "building moat (release)"
        (cd "$ROOT" && cargo build --release -q -p moat)
        MOAT=$ROOT/target/release/moat
    fi
fi

# --- processes ----------------------------------------------------------------------------------------
TMP=$(mktemp -d /tmp/moat-waf.XXXXXX)
mkdir -p "$RESULTS"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do wait "$pid" 2>/dev/null || true; done
    if [[ $KEEP == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # PORT [PID] [SECONDS]: until something accepts on 127.0.0.1:PORT
    local i tries=$((${3:-30} * 10))
    for ((i = 0; i < tries; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        if [[ -n ${2:-} ]] && ! kill -0 "$2" 2>/dev/null; then return 1; fi
        sleep 0.1
    done
    return 1
}

fill() { # FILE KEY=VALUE...: the template with @KEY@ replaced (values may hold / and &)
    local file=$1 kv text
    shift
    text=$(<"$file")
    for kv in "$@"; do text=${text//@${kv%%=*}@/${kv#*=}}; done
    printf '%s\n' "$text"
}

USER_LINE=""
[[ $(id -u) -eq 0 ]] && USER_LINE="user root;"

start_nginx() { # NAME CONF_FILE PORT...: nginx -c CONF in the foreground (its master is our child)
    local name=$1 conf=$2 dir
    shift 2
    dir=$(dirname "$conf")
    "$NGINX" -p "$dir" -c "$conf" -g 'daemon off;' 2>>"$dir/logs/stderr" &
    local pid=$!
    PIDS+=("$pid")
    local port
    for port in "$@"; do
        if ! wait_port "$port" "$pid" 60; then
            echo "$name: nginx did not come up on 127.0.0.1:$port:" >&2
            tail -20 "$dir/logs/stderr" "$dir/logs/error.log" >&2 2>/dev/null || true
            exit 1
        fi
    done
}

nginx_dir() { # NAME: a fresh nginx prefix with the ModSecurity base config
    local dir=$TMP/$1
    mkdir -p "$dir/logs"
    # Debian's recommended ModSecurity config minus the lines modsec.conf.in sets itself.
    grep -v -E '^\s*Sec(RuleEngine|AuditEngine|AuditLogRelevantStatus|AuditLogParts|AuditLogType|AuditLog|AuditLogStorageDir|AuditLogFormat)\s' \
        /etc/nginx/modsecurity.conf >"$dir/modsecurity-base.conf"
    cp /etc/nginx/unicode.mapping "$dir/"
    echo "$dir"
}

# Rule sets. REQUEST-*: every request-phase file of the package (901 init, 903 app exclusions
# (inactive unless enabled in crs-setup), 905, 910-944, 949 blocking evaluation); the RESPONSE
# files are left out (nothing here inspects responses). SQLIXSS: what Cloud Armor's sqli and
# xss sets are made of, plus the init and common-exception files they rely on.
INC_REQUEST="Include $CRS_RULES/REQUEST-*.conf"
INC_SQLIXSS="Include $CRS_RULES/REQUEST-901-INITIALIZATION.conf
Include $CRS_RULES/REQUEST-905-COMMON-EXCEPTIONS.conf
Include $CRS_RULES/REQUEST-941-APPLICATION-ATTACK-XSS.conf
Include $CRS_RULES/REQUEST-942-APPLICATION-ATTACK-SQLI.conf"
INC_SQLIXSS_BLOCK="$INC_SQLIXSS
Include $CRS_RULES/REQUEST-949-BLOCKING-EVALUATION.conf"

modsec_rules() { # DIR NAME ENGINE AUDIT PL INCLUDES: writes DIR/NAME.conf, its audit log DIR/logs/NAME.audit.log
    fill "$HERE/nginx/modsec.conf.in" "DIR=$1" "ENGINE=$3" "AUDIT=$4" "PL=$5" \
        "AUDIT_LOG=$1/logs/$2.audit.log" "INCLUDES=$6" >"$1/$2.conf"
}

server_block() { # NAME PORT MODSEC(on|off) RULES_FILE
    fill "$HERE/nginx/server.conf.in" "NAME=$1" "PORT=$2" "MODSEC=$3" "RULES=$4"
}

start_upstream() {
    local dir=$TMP/upstream
    mkdir -p "$dir/logs"
    fill "$HERE/nginx/upstream.conf.in" "DIR=$dir" "USER=$USER_LINE" "WORKERS=$NGINX_WORKERS" \
        "UPSTREAM_PORT=$UPSTREAM_PORT" >"$dir/nginx.conf"
    start_nginx upstream "$dir/nginx.conf" "$UPSTREAM_PORT"
}

# The scoring nginx: one worker, so the audit log is written in request order (see ftw.py).
NGX_SCORE_DIR=""
start_nginx_scoring() {
    local dir servers=""
    dir=$(nginx_dir score)
    if has_step crs; then
        modsec_rules "$dir" crs DetectionOnly On 4 "$INC_REQUEST"
        servers+=$(server_block "crs: DetectionOnly, PL4, all request rules" "$NGX_CRS_PORT" on "$dir/crs.conf")$'\n'
    fi
    if has_step detect; then
        local n
        for n in 1 2; do
            modsec_rules "$dir" "det$n" DetectionOnly On "$n" "$INC_SQLIXSS"
            local port_var=NGX_DET${n}_PORT
            servers+=$(server_block "detect: DetectionOnly, PL$n, 901+905+941+942" "${!port_var}" on "$dir/det$n.conf")$'\n'
        done
    fi
    fill "$HERE/nginx/nginx.conf.in" "DIR=$dir" "USER=$USER_LINE" "WORKERS=1" \
        "UPSTREAM_PORT=$UPSTREAM_PORT" "SERVERS=$servers" >"$dir/nginx.conf"
    local ports=()
    has_step crs && ports+=("$NGX_CRS_PORT")
    has_step detect && ports+=("$NGX_DET1_PORT" "$NGX_DET2_PORT")
    log "starting nginx + libmodsecurity (scoring, 1 worker) on ${ports[*]}"
    start_nginx nginx-scoring "$dir/nginx.conf" "${ports[@]}"
    NGX_SCORE_DIR=$dir
}

# moat: one project per profile (crs, detect-1, detect-2, block-2); returns 1 if it does not start.
start_moat() { # PROFILE PORT [BINARY NAME]: NAME (default PROFILE) names its directory
    local profile=$1 port=$2 bin=${3:-$MOAT} dir=$TMP/moat-${4:-$1}
    mkdir -p "$dir/project/services" "$dir/project/armor"
    fill "$HERE/moat/moat.yaml.in" "PORT=$port" "UPSTREAM_PORT=$UPSTREAM_PORT" >"$dir/project/moat.yaml"
    cp "$HERE/moat/services/app.yaml" "$dir/project/services/"
    if [[ -n ${MOAT_POLICY:-} ]]; then
        cp "$MOAT_POLICY" "$dir/project/armor/waf.json" # a dry run of the plumbing (README)
    else
        "${FTW[@]}" policy "$profile" >"$dir/project/armor/waf.json"
    fi
    "$bin" serve "$dir/project" --state "$dir/state" >"$dir/moat.out" 2>"$dir/moat.err" &
    local pid=$!
    PIDS+=("$pid")
    if ! wait_port "$port" "$pid" 60; then
        echo "moat ($profile) did not start; its errors (full output: KEEP=1, $dir/moat.err):" >&2
        grep -E '(×|^Error)' "$dir/moat.err" | head -8 >&2 || tail -15 "$dir/moat.err" >&2 || true
        # The first error, whole (miette wraps it over several `│` lines), for the report.
        MOAT_ERR=$(awk '/×/ { n++ } n == 2 && !/×/ && !/│/ { exit } n == 2 { sub(/^[ ×│]+/, ""); printf "%s ", $0 }' "$dir/moat.err")
        [[ -n $MOAT_ERR ]] || MOAT_ERR=$(grep -m1 -v '^moat: [0-9]' "$dir/moat.err" || true)
        return 1
    fi
    # The WAF hook loads the rule files when the policy is compiled; a quick request proves it answers.
    curl -s -o /dev/null -H 'Host: localhost' "http://127.0.0.1:$port/" || true
    return 0
}

# --- the run ------------------------------------------------------------------------------------------
start_upstream
REPORT_FILES=()
MOAT_PROBLEMS=()
MOAT_ERR=""

if has_step crs || has_step detect; then
    if has_engine nginx; then start_nginx_scoring; fi
    MOAT_CRS_OK=0
    MOAT_DET_OK=0
    if has_engine moat; then
        if has_step crs; then
            log "starting moat (crs profile: 12 preview rules at sensitivity 4) on $MOAT_CRS_PORT"
            if start_moat crs "$MOAT_CRS_PORT"; then MOAT_CRS_OK=1; else MOAT_PROBLEMS+=("crs: moat did not start: $MOAT_ERR"); fi
        fi
        if has_step detect; then
            log "starting moat (detect profiles: sqli + xss preview at sensitivity 1 and 2) on $MOAT_DET1_PORT, $MOAT_DET2_PORT"
            if start_moat detect-1 "$MOAT_DET1_PORT" && start_moat detect-2 "$MOAT_DET2_PORT"; then
                MOAT_DET_OK=1
            else
                MOAT_PROBLEMS+=("detect: moat did not start: $MOAT_ERR")
            fi
        fi
    fi

    if has_step crs; then
        if has_engine nginx; then
            log "crs: nginx + libmodsecurity (PL4, DetectionOnly)"
            "${FTW[@]}" crs --engine nginx-modsec --kind modsec --port "$NGX_CRS_PORT" \
                --log "$NGX_SCORE_DIR/logs/crs.audit.log" --tests "$CRS_TESTS" \
                --profile "PL4" --out "$RESULTS/crs-nginx.json"
            REPORT_FILES+=("$RESULTS/crs-nginx.json")
        fi
        if has_engine moat && ((MOAT_CRS_OK)); then
            log "crs: moat (sensitivity 4, preview)"
            "${FTW[@]}" crs --engine moat --kind moat --port "$MOAT_CRS_PORT" \
                --log "$TMP/moat-crs/state/decisions.jsonl" --tests "$CRS_TESTS" \
                --profile "sensitivity 4" --out "$RESULTS/crs-moat.json"
            REPORT_FILES+=("$RESULTS/crs-moat.json")
        fi
    fi

    if has_step detect; then
        for n in 1 2; do
            if has_engine nginx; then
                port_var=NGX_DET${n}_PORT
                log "detect: nginx + libmodsecurity PL$n"
                "${FTW[@]}" detect --engine nginx-modsec --kind modsec --port "${!port_var}" \
                    --log "$NGX_SCORE_DIR/logs/det$n.audit.log" --tests "$CRS_TESTS" --data "$LIBINJECTION_DATA" \
                    --label "PL$n" --out "$RESULTS/detect-nginx-$n.json"
                REPORT_FILES+=("$RESULTS/detect-nginx-$n.json")
            fi
            if has_engine moat && ((MOAT_DET_OK)); then
                port_var=MOAT_DET${n}_PORT
                log "detect: moat sensitivity $n"
                "${FTW[@]}" detect --engine moat --kind moat --port "${!port_var}" \
                    --log "$TMP/moat-detect-$n/state/decisions.jsonl" --tests "$CRS_TESTS" --data "$LIBINJECTION_DATA" \
                    --label "S$n" --out "$RESULTS/detect-moat-$n.json"
                REPORT_FILES+=("$RESULTS/detect-moat-$n.json")
            fi
        done
    fi
fi

# --- throughput ---------------------------------------------------------------------------------------
TPUT_TSV=$RESULTS/throughput.tsv
to_ms() { # wrk's 123.45us / 1.23ms / 1.02s → ms
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
        else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.3f", v * 60000 }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
        else { printf "nan" } }'
}

if has_step throughput; then
    declare -A TPORT=()
    TARGETS=()
    if has_engine nginx; then
        dir=$(nginx_dir tput)
        modsec_rules "$dir" block On RelevantOnly 2 "$INC_SQLIXSS_BLOCK"
        modsec_rules "$dir" blockfull On RelevantOnly 2 "$INC_REQUEST"
        servers=$(server_block "plain proxy, no WAF" "$NGX_PLAIN_PORT" off "$dir/block.conf")$'\n'
        servers+=$(server_block "ModSecurity On, PL2, 901+905+941+942+949" "$NGX_BLOCK_PORT" on "$dir/block.conf")$'\n'
        servers+=$(server_block "ModSecurity On, PL2, all request rules" "$NGX_BLOCKFULL_PORT" on "$dir/blockfull.conf")$'\n'
        fill "$HERE/nginx/nginx.conf.in" "DIR=$dir" "USER=$USER_LINE" "WORKERS=$NGINX_WORKERS" \
            "UPSTREAM_PORT=$UPSTREAM_PORT" "SERVERS=$servers" >"$dir/nginx.conf"
        log "starting nginx (throughput, worker_processes $NGINX_WORKERS) on $NGX_PLAIN_PORT, $NGX_BLOCK_PORT, $NGX_BLOCKFULL_PORT"
        start_nginx nginx-throughput "$dir/nginx.conf" "$NGX_PLAIN_PORT" "$NGX_BLOCK_PORT" "$NGX_BLOCKFULL_PORT"
        TPORT[nginx-proxy]=$NGX_PLAIN_PORT
        TPORT[nginx-modsec]=$NGX_BLOCK_PORT
        TPORT[nginx-modsec-full]=$NGX_BLOCKFULL_PORT
        TARGETS+=(nginx-proxy nginx-modsec nginx-modsec-full)
    fi
    if has_engine moat; then
        log "starting moat (block-2: sqli + xss at sensitivity 2, deny(403)) on $MOAT_BLOCK_PORT"
        if start_moat block-2 "$MOAT_BLOCK_PORT"; then
            TPORT[moat]=$MOAT_BLOCK_PORT
            TARGETS+=(moat)
        else
            MOAT_PROBLEMS+=("throughput: moat did not start: $MOAT_ERR")
        fi
        # A second moat binary in the same run (A/B of a change): target `moat-b`.
        if [[ -n ${MOAT_BIN_B:-} ]]; then
            log "starting moat-b ($MOAT_BIN_B, same policy) on $MOAT_B_PORT"
            if start_moat block-2 "$MOAT_B_PORT" "$MOAT_BIN_B" block-2-b; then
                TPORT[moat-b]=$MOAT_B_PORT
                TARGETS+=(moat-b)
            else
                MOAT_PROBLEMS+=("throughput: moat-b did not start: $MOAT_ERR")
            fi
        fi
    fi
    # Each target must do the same job: benign requests 2xx, attacks 403.
    PROBE=$RESULTS/throughput-probe.txt
    MISMATCH=""
    : >"$PROBE"
    for t in "${TARGETS[@]}"; do
        [[ $t == nginx-proxy ]] && continue
        if "${FTW[@]}" probe --port "${TPORT[$t]}" >"$TMP/probe-$t.txt"; then
            echo "$t: all 20 benign requests passed, all 5 attacks got 403" >>"$PROBE"
        else
            { echo "$t: MISMATCHES in the mix (its numbers are not comparable):"; grep '^BAD' "$TMP/probe-$t.txt"; } >>"$PROBE"
            MISMATCH+=" $t"
        fi
    done
    cat "$PROBE" >&2
    : >"$TPUT_TSV"
    log "warm-up"
    for t in "${TARGETS[@]}"; do wrk -t1 -c8 -d1s -s "$HERE/mixed.lua" "http://127.0.0.1:${TPORT[$t]}/" -- "$HERE/mixed.tsv" >/dev/null; done
    log "wrk -t$THREADS -c$CONNS -d$DURATION --latency, mixed.tsv, $ROUNDS rounds, interleaved"
    for round in $(seq "$ROUNDS"); do
        for t in "${TARGETS[@]}"; do
            out=$TMP/wrk-$t-$round.txt
            wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$HERE/mixed.lua" \
                "http://127.0.0.1:${TPORT[$t]}/" -- "$HERE/mixed.tsv" >"$out"
            rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
            total=$(awk '/requests in/ { print $1 }' "$out")
            non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")
            p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")
            p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
            errs=$(grep 'Socket errors' "$out" | xargs || true)
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$round" "$rps" "$p50" "$p99" "${non2xx:-0}" "$total" >>"$TPUT_TSV"
            printf '  %-18s round %s: %9.0f req/s  p50 %7.3f ms  p99 %7.3f ms  non-2xx %s/%s %s\n' \
                "$t" "$round" "$rps" "$p50" "$p99" "${non2xx:-0}" "$total" "$errs" >&2
        done
    done
fi

# --- report -------------------------------------------------------------------------------------------
{
    echo "# WAF scoring, $(date -u '+%F %H:%M UTC')"
    echo
    echo "machine: $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)); steps: ${STEPS[*]}; engines: $ENGINES"
    echo "nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///'), libmodsecurity $(dpkg-query -W -f '${Version}' libmodsecurity3 2>/dev/null || echo '?'), CRS $(dpkg-query -W -f '${Version}' modsecurity-crs 2>/dev/null || echo '?')${MOAT:+; moat: $MOAT}"
    echo
    if ((${#REPORT_FILES[@]})); then "${FTW[@]}" report "${REPORT_FILES[@]}"; fi
    if has_step throughput && [[ -s $TPUT_TSV ]]; then
        echo "### Throughput: wrk -t$THREADS -c$CONNS -d$DURATION, mixed.tsv (20 benign / 5 attack), median of $ROUNDS interleaved rounds"
        echo
        cat "$RESULTS/throughput-probe.txt" | sed 's/^/    /'
        echo
        awk -F'\t' -v mismatch="$MISMATCH" -v dry="${MOAT_POLICY:+1}" '
            function median(list,   a, n, i, j, t) {
                n = split(list, a, " ")
                for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
                return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
            }
            {
                rps[$1] = rps[$1] " " $3; p50[$1] = p50[$1] " " $4; p99[$1] = p99[$1] " " $5
                non[$1] += $6; tot[$1] += $7
                if (!seen[$1]++) order[++n] = $1
            }
            END {
                for (i = 1; i <= n; i++) { t = order[i]; mr[t] = median(rps[t]); m50[t] = median(p50[t]); m99[t] = median(p99[t]) }
                ref = ("nginx-modsec" in mr) ? "nginx-modsec" : ""
                printf "| target | req/s | p50 ms | p99 ms | non-2xx | req/s ÷ nginx-modsec |\n|---|---|---|---|---|---|\n"
                for (i = 1; i <= n; i++) {
                    t = order[i]
                    note = (index(mismatch " ", " " t " ") ? " (**mix mismatch**)" : "") ((t == "moat" && dry) ? " (**MOAT_POLICY dry run**)" : "")
                    printf "| %s%s | %.0f | %.3f | %.3f | %.1f %% | %s |\n", t, note, mr[t], m50[t], m99[t], 100 * non[t] / (tot[t] ? tot[t] : 1),
                        ref ? sprintf("%.2f×", mr[t] / mr[ref]) : "-"
                }
                if (("moat" in mr) && ref) printf "\n**moat / nginx-modsec: %.2f× req/s, p99 %.2f×**%s\n", mr["moat"] / mr[ref], m99["moat"] / m99[ref],
                    (index(mismatch " ", " moat ") || dry) ? " (not comparable: moat did not block the same requests, see above)" : ""
            }' "$TPUT_TSV"
        echo
        echo "targets: nginx-proxy = nginx without WAF; nginx-modsec = ModSecurity On, CRS PL2, 901+905+941+942+949 (blocking on the anomaly score); nginx-modsec-full = the same with every REQUEST-*.conf; moat = sqli-v33-stable + xss-v33-stable at sensitivity 2, deny(403). All proxy to one nginx \`return 200\` upstream."
        echo
    fi
    for p in "${MOAT_PROBLEMS[@]+"${MOAT_PROBLEMS[@]}"}"; do echo "moat: $p"; done
} | tee "$RESULTS/report.md"
log "results in $RESULTS"
# A requested engine that could not be measured is a failed run (the report above says why).
if ((${#MOAT_PROBLEMS[@]})); then exit 3; fi
