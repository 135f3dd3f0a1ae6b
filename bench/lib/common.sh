# Helpers every bench script shares: logging, installing the Debian packages a bench needs,
# building moat, waiting for a port, stopping what the script started, and nginx (the static
# upstream the proxies are measured against). Sourced; the sourcing script sets ROOT and KEEP,
# and TMP and PIDS before starting anything; NGINX_WORKERS defaults to `auto`.

NGINX_WORKERS=${NGINX_WORKERS:-auto}

log() { printf '==> %s\n' "$*" >&2; }

# --- tools ----------------------------------------------------------------------------------------
install_missing() { # PACKAGE:COMMAND...: apt-get installs the packages whose command is missing
    local need=() spec package cmd
    for spec in "$@"; do
        package=${spec%%:*}
        cmd=${spec#*:}
        command -v "$cmd" >/dev/null 2>&1 || [[ -x /usr/sbin/$cmd ]] || need+=("$package")
    done
    if ((${#need[@]})); then
        log "installing ${need[*]}"
        local sudo=()
        [[ $(id -u) -eq 0 ]] || sudo=(sudo)
        # policy-rc.d exit 101: the packages must not start a system nginx on port 80.
        local policy_created=0
        if [[ ! -e /usr/sbin/policy-rc.d ]]; then
            printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
            "${sudo[@]}" chmod +x /usr/sbin/policy-rc.d
            policy_created=1
        fi
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        # Releases without nginx-light have nginx.
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
            "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]/nginx-light/nginx}" >/dev/null
        if ((policy_created)); then "${sudo[@]}" rm -f /usr/sbin/policy-rc.d; fi
    fi
}

build_moat() { # sets MOAT: MOAT_BIN, or a release build of the working tree
    if [[ -n ${MOAT_BIN:-} ]]; then
        MOAT=$MOAT_BIN
    else
        log "building moat (release)"
        (cd "$ROOT" && cargo build --release -q -p moat)
        MOAT=$ROOT/target/release/moat
    fi
}

# --- processes ------------------------------------------------------------------------------------
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ $KEEP == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}

wait_port() { # PORT [TENTHS]: until something accepts on 127.0.0.1:PORT (default 10 s)
    local i
    for i in $(seq "${2:-100}"); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$1" >&2
    return 1
}

# --- nginx ----------------------------------------------------------------------------------------
nginx_bin() { command -v nginx || echo /usr/sbin/nginx; }

nginx_conf() { # NAME SERVER_BLOCK: a self-contained nginx config under $TMP/NAME
    local dir=$TMP/$1
    mkdir -p "$dir/logs"
    local user=""
    if [[ $(id -u) -eq 0 ]]; then user="user root;"; fi
    cat >"$dir/nginx.conf" <<CONF
$user
worker_processes $NGINX_WORKERS;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; multi_accept on; }
http {
    access_log off;
    default_type text/plain;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
$2
}
CONF
    echo "$dir"
}

start_nginx() { # NAME SERVER_BLOCK PORT: sets NAME_PID
    local dir
    dir=$(nginx_conf "$1" "$2")
    "$(nginx_bin)" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' 2>>"$dir/logs/stderr" &
    PIDS+=($!)
    eval "${1//-/_}_PID=$!"
    wait_port "$3"
}

start_upstream() { # the workload: nginx returning `200 ok`
    start_nginx upstream "
    server {
        listen 127.0.0.1:$UPSTREAM_PORT backlog=4096;
        location / { return 200 \"ok\\n\"; }
    }" "$UPSTREAM_PORT"
}
