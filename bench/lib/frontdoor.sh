# The bench project and the nginx peer of the front-door benchmarks: sourced by
# bench/frontdoor.sh and bench/frontdoor-instructions.sh, so both measure the same project
# behind the same upstream.
#
# The sourcing script sets ROOT, KEEP, UPSTREAM_PORT, PROXY_PORT and EDGE before calling these,
# and TMP and PIDS before starting anything.

# shellcheck source=bench/lib/common.sh
source "$ROOT/bench/lib/common.sh"

NUMBER=123456789012
REGION=us-central1
PROJECT_ID=bench-prod
SA=caller@${PROJECT_ID}.iam.gserviceaccount.com
PUB_HOST=pub-${NUMBER}.${REGION}.run.app
PRIV_HOST=priv-${NUMBER}.${REGION}.run.app
LB_PLAIN_HOST=plain.bench.example
LB_EDGE_HOST=edge.bench.example

proxy_server_block() { # the peer: an nginx reverse proxy to the upstream, kept-alive both ways
    echo "
    upstream workload {
        server 127.0.0.1:$UPSTREAM_PORT;
        keepalive 256;
        keepalive_requests 1000000;
        keepalive_timeout 75s;
    }
    server {
        listen 127.0.0.1:$PROXY_PORT backlog=4096;
        location / {
            proxy_pass http://workload;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        }
    }"
}

# --- sanity -----------------------------------------------------------------------------------------
status() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
check() { # WANT DESCRIPTION CURL_ARGS...: exits unless the request answers WANT
    local want=$1 what=$2 got
    shift 2
    got=$(status "$@")
    [[ $got == "$want" ]] || { echo "sanity: $what answered $got, want $want" >&2; exit 1; }
}

# --- the bench project ----------------------------------------------------------------------------
write_edge() { # DIR: two load balancers to `pub`, and the 20-rule policy of one of them
    local dir=$1 i rules=""
    mkdir -p "$dir/armor"
    cat >>"$dir/moat.yaml" <<EOF
load_balancers:
  - name: plain
    scheme: external
    hosts: [$LB_PLAIN_HOST]
    routes:
      - service: pub
  - name: edge
    scheme: external
    hosts: [$LB_EDGE_HOST]
    security_policy: bench-edge
    routes:
      - service: pub
EOF
    for i in $(seq 1 19); do
        if ((i % 2)); then
            rules+="{\"action\": \"deny(403)\", \"priority\": $((i * 10)), \"match\": {\"versionedExpr\": \"SRC_IPS_V1\", \"config\": {\"srcIpRanges\": [\"10.$i.0.0/16\", \"192.0.2.$i/32\"]}}},"
        else
            rules+="{\"action\": \"deny(403)\", \"priority\": $((i * 10)), \"match\": {\"expr\": {\"expression\": \"request.path.startsWith('/blocked-$i') || request.method == 'TRACE'\"}}},"
        fi
    done
    # A throttle every request matches and conforms to: at most 1,000,000 per 60 s per client
    # (wrk's requests all come from 127.0.0.1, one key); a run that passes it fails on non-2xx.
    rules+='{"action": "throttle", "priority": 200, "match": {"versionedExpr": "SRC_IPS_V1", "config": {"srcIpRanges": ["*"]}},'
    rules+=' "rateLimitOptions": {"conformAction": "allow", "exceedAction": "deny(429)", "enforceOnKey": "IP",'
    rules+=' "rateLimitThreshold": {"count": 1000000, "intervalSec": 60}}},'
    rules+='{"action": "allow", "priority": 2147483647, "match": {"versionedExpr": "SRC_IPS_V1", "config": {"srcIpRanges": ["*"]}}}'
    printf '{"name": "bench-edge", "rules": [%s]}\n' "$rules" >"$dir/armor/bench-edge.json"
}

write_project() { # DIR INTERNET_PORT
    local dir=$1
    mkdir -p "$dir/services" "$dir/iam"
    cat >"$dir/moat.yaml" <<EOF
project:
  id: $PROJECT_ID
  number: "$NUMBER"
  region: $REGION
service_accounts:
  - email: $SA
  - email: pub@$PROJECT_ID.iam.gserviceaccount.com
  - email: priv@$PROJECT_ID.iam.gserviceaccount.com
listeners:
  internet: 127.0.0.1:$2
run:
  pub: {url: "http://127.0.0.1:$UPSTREAM_PORT"}
  priv: {url: "http://127.0.0.1:$UPSTREAM_PORT"}
EOF
    if [[ $EDGE == 1 ]]; then write_edge "$dir"; fi
    local svc
    for svc in pub priv; do
        local extra=""
        [[ $svc == pub ]] && extra="    run.googleapis.com/invoker-iam-disabled: 'true'"
        cat >"$dir/services/$svc.yaml" <<EOF
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  annotations:
    run.googleapis.com/ingress: all
$extra
    run.googleapis.com/urls: '["https://$svc-$NUMBER.$REGION.run.app"]'
  labels:
    cloud.googleapis.com/location: $REGION
  name: $svc
  namespace: '$NUMBER'
spec:
  template:
    spec:
      containers:
      - image: $REGION-docker.pkg.dev/$PROJECT_ID/apps/$svc:1.0.0
      serviceAccountName: $svc@$PROJECT_ID.iam.gserviceaccount.com
status:
  url: https://$svc-$NUMBER.$REGION.run.app
EOF
    done
    cat >"$dir/iam/priv.json" <<EOF
{"bindings": [{"role": "roles/run.invoker", "members": ["serviceAccount:$SA"]}], "etag": "BwY=", "version": 1}
EOF
}
