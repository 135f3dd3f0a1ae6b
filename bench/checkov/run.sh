#!/usr/bin/env bash
# moat vs checkov on the same Terraform plans: findings per category and wall time.
#
#   bench/checkov/run.sh                  # 10, 100 and 1,000 services, 3 runs each, both tools
#   bench/checkov/run.sh --smoke          # 10 services, 1 run, moat only (scripts/test-all)
#   bench/checkov/run.sh --sizes "10 100" --runs 1 --no-checkov
#
# 1. installs checkov $CHECKOV_VERSION into target/checkov-venv (unless --no-checkov);
# 2. writes plans of each size with gen_plans.py (`terraform show -json` shape: v1 and v2
#    services, IAM members/bindings/policies with some allUsers and allAuthenticatedUsers
#    invokers, mixed ingress, secrets with secret IAM, external LBs with NEGs, backend services,
#    URL maps and Cloud Armor policies, Direct VPC egress and a connector, dedicated, shared and
#    default compute service accounts, project grants, Cloud SQL; see its docstring);
# 3. runs, per size and RUNS times each, interleaved:
#      moat:    moat check PLAN --format json
#      checkov: checkov -f PLAN --framework terraform_plan -o json --quiet --compact
#    timing each run's wall time (process start to exit, output to a file);
# 4. prints (compare.py, which holds the category mapping of moat rules and checkov checks):
#    findings per category for each tool, the per-resource check that every resource checkov
#    fails on CKV_GCP_102 has a moat public-invoker finding (MOAT001/MOAT010) on the same
#    service (misses are listed), and the median wall times with the speed ratio.
#
# Exits 1 when moat misses a public invoker grant (one checkov flags, or one of the plan), or,
# with --smoke, when moat's findings lack an expected category. Both tools exit 1 when they
# find something; only 2 (moat) or another status (checkov) counts as a failed run.
#
# Overridable: CHECKOV_VERSION, OUT (where plans and reports go, default target/checkov-bench,
# target/checkov-smoke with --smoke),
# MOAT_BIN (measure this binary instead of building the working tree).
set -euo pipefail

CHECKOV_VERSION=${CHECKOV_VERSION:-3.3.30}
SIZES="10 100 1000"
RUNS=3
CHECKOV=1
SMOKE=0
while (($#)); do
    case $1 in
    --sizes) SIZES=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --no-checkov) CHECKOV=0; shift ;;
    --smoke) SMOKE=1; SIZES=10; RUNS=1; CHECKOV=0; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument \`$1\` (try --help)" >&2; exit 2 ;;
    esac
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/bench/checkov
if ((SMOKE)); then OUT=${OUT:-$ROOT/target/checkov-smoke}; else OUT=${OUT:-$ROOT/target/checkov-bench}; fi
VENV=$ROOT/target/checkov-venv

log() { printf '==> %s\n' "$*" >&2; }

# --- tools ------------------------------------------------------------------------------------
if [[ -n ${MOAT_BIN:-} ]]; then
    MOAT=$MOAT_BIN
elif ((SMOKE)); then
    # The smoke run checks findings, not speed: the debug build the test suite uses will do.
    log "building moat (debug)"
    (cd "$ROOT" && cargo build --locked -q -p moat)
    MOAT=$ROOT/target/debug/moat
else
    log "building moat (release)"
    (cd "$ROOT" && cargo build --release -q -p moat)
    MOAT=$ROOT/target/release/moat
fi

if ((CHECKOV)); then
    if [[ $("$VENV/bin/checkov" --version 2>/dev/null) != "$CHECKOV_VERSION" ]]; then
        log "installing checkov $CHECKOV_VERSION into ${VENV#"$ROOT"/}"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q --upgrade pip
        "$VENV/bin/pip" install -q "checkov==$CHECKOV_VERSION"
    fi
    # Offline: do not ask Prisma Cloud for its guideline mapping on every run.
    export BC_SKIP_MAPPING=TRUE
fi

# --- plans ------------------------------------------------------------------------------------
rm -rf "$OUT"
mkdir -p "$OUT"
log "generating plans: $SIZES services"
# shellcheck disable=SC2086
python3 "$HERE/gen_plans.py" "$OUT" $SIZES

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", b - a }'; }

run_moat() { # PLAN OUTPUT
    local rc=0
    "$MOAT" check "$1" --format json >"$2" 2>"$2.err" || rc=$?
    if ((rc > 1)); then
        log "moat failed on $1 (exit $rc):"
        cat "$2.err" >&2
        exit 1
    fi
}

run_checkov() { # PLAN OUTPUT
    local rc=0
    "$VENV/bin/checkov" -f "$1" --framework terraform_plan -o json --quiet --compact >"$2" 2>"$2.err" || rc=$?
    if ((rc > 1)); then
        log "checkov failed on $1 (exit $rc):"
        tail -20 "$2.err" >&2
        exit 1
    fi
}

# --- runs -------------------------------------------------------------------------------------
: >"$OUT/times.tsv"
for n in $SIZES; do
    plan=$OUT/plan-$n.json
    for ((r = 1; r <= RUNS; r++)); do
        t0=$(now)
        run_moat "$plan" "$OUT/moat-$n.json"
        t1=$(now)
        printf 'moat\t%s\t%s\t%s\n' "$n" "$r" "$(elapsed "$t0" "$t1")" >>"$OUT/times.tsv"
        log "$n services, run $r/$RUNS: moat $(elapsed "$t0" "$t1") s"
        if ((CHECKOV)); then
            t0=$(now)
            run_checkov "$plan" "$OUT/checkov-$n.json"
            t1=$(now)
            printf 'checkov\t%s\t%s\t%s\n' "$n" "$r" "$(elapsed "$t0" "$t1")" >>"$OUT/times.tsv"
            log "$n services, run $r/$RUNS: checkov $(elapsed "$t0" "$t1") s"
        fi
    done
done

# --- report -----------------------------------------------------------------------------------
args=()
((CHECKOV)) || args+=(--no-checkov)
# The 10-service plan holds every shape the generator writes; these are the categories moat
# must find in it (the load balancer bypass, MOAT002, is not among them: see docs/BENCHMARKS.md).
((SMOKE)) && args+=(--expect public-invoker,ingress-path,edge,identity,project-grants,secrets,network)
echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "moat: $("$MOAT" --version 2>/dev/null || echo "$MOAT"), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' + uncommitted changes')"
((CHECKOV)) && echo "checkov: $("$VENV/bin/checkov" --version)"
# shellcheck disable=SC2086
python3 "$HERE/compare.py" "$OUT" $SIZES "${args[@]}"
