#!/usr/bin/env python3
"""Writes `terraform show -json` plans of N Cloud Run services for bench/checkov/run.sh.

    gen_plans.py OUT_DIR 10 100 1000      # writes OUT_DIR/plan-10.json, plan-100.json, ...

Deterministic (no randomness): service i gets its traits from i % 10, i % 20 and its group of
ten, so every plan of 10 or more services holds every shape below, and a plan of 10 × k
services holds k times the plan of 10 (plus a few shared resources per 100 services).

The mix, per group of ten services (j = i % 10):

    j  form  ingress                      invoker                          identity             other
    0  v2    internal-and-cloud-lb        allUsers (behind the group's LB) dedicated SA         secret env (pinned)
    1  v1    all                          allUsers (behind the LB: bypass) dedicated SA
    2  v2    all                          allUsers (the public API)        dedicated SA
    3  v2    all                          allAuthenticatedUsers (binding)  dedicated SA         secret env `latest`
    4  v1    all                          another service's SA             dedicated SA         every other: _iam_policy
    5  v2    internal                     SA of j=4 (no VPC egress)        dedicated SA         plaintext DB_PASSWORD, Direct VPC
    6  v2    internal                     another SA; allUsers when i%20=6 dedicated SA         secret env without a grant, Direct VPC
    7  v1    internal                     another service's SA             default compute SA   (not set)
    8  v2    internal-and-cloud-lb        another service's SA             explicit default SA if i%20=8
    9  v2    internal-and-cloud-lb        another service's SA             shared SA (per 50)   connector

Each group of ten has an external HTTPS load balancer (global forwarding rule → target HTTPS
proxy → URL map → backend services → serverless NEGs) for j=0 and j=1; its backends use the
`edge-weak` policy (a throttle keyed on ALL) for group % 3 = 0, the `edge` policy (deny rules
for `${jndi:` user agents and for SQL injection, written in plain CEL because moat refuses
preconfigured WAF expressions until it evaluates them; a per-IP throttle) for 1, and no policy
for 2. Shared: one VPC network with a
subnet (Private Google Access), a connector, a router with NAT, two egress firewall rules;
per started 100 services, project IAM grants (Editor to a runtime SA, secret accessor and
invoker at project level, Service Account User and Token Creator) and a Cloud SQL instance
(alternating public IP with 0.0.0.0/0 and no TLS, private IP with TLS and IAM auth) with a
built-in user. The project number is known (data.google_project read at plan time).

Values a real plan only knows after apply are unknown here too: new service accounts'
emails, and everything that references them (service_account, invoker members); ids, etags,
URIs. configuration carries the references that resolve them.
"""
import json
import os
import sys

PROVIDER = "registry.terraform.io/hashicorp/google"
PROJECT = "bench-prod"
NUMBER = "123456789012"
REGION = "us-central1"
DEFAULT_SA = f"{NUMBER}-compute@developer.gserviceaccount.com"


def const(v):
    return {"constant_value": v}


def ref(*refs):
    return {"references": list(refs)}


class Plan:
    def __init__(self):
        self.items = []  # (resource, after_unknown, expressions, actions)
        self.data = []

    def add(self, rtype, name, values, unknown=None, expressions=None):
        r = {
            "address": f"{rtype}.{name}",
            "mode": "managed",
            "type": rtype,
            "name": name,
            "provider_name": PROVIDER,
            "schema_version": 0,
            "values": values,
            "sensitive_values": sensitive_of(values),
        }
        self.items.append((r, unknown or {}, expressions or {}))
        return r["address"]

    def add_data(self, rtype, name, values, expressions=None):
        r = {
            "address": f"data.{rtype}.{name}",
            "mode": "data",
            "type": rtype,
            "name": name,
            "provider_name": PROVIDER,
            "schema_version": 0,
            "values": values,
            "sensitive_values": {},
        }
        self.data.append((r, expressions or {}))

    def doc(self):
        changes = []
        for r, unknown, _ in self.items:
            changes.append({
                "address": r["address"],
                "mode": r["mode"],
                "type": r["type"],
                "name": r["name"],
                "provider_name": PROVIDER,
                "change": {
                    "actions": ["create"],
                    "before": None,
                    "after": r["values"],
                    "after_unknown": unknown,
                    "before_sensitive": False,
                    "after_sensitive": r["sensitive_values"],
                },
            })
        for r, _ in self.data:
            changes.append({
                "address": r["address"], "mode": "data", "type": r["type"], "name": r["name"],
                "provider_name": PROVIDER,
                "change": {"actions": ["read"], "before": None, "after": r["values"], "after_unknown": {},
                           "before_sensitive": False, "after_sensitive": {}},
            })
        conf = []
        for r, _, expr in self.items:
            conf.append({"address": r["address"], "mode": "managed", "type": r["type"], "name": r["name"],
                         "provider_config_key": "google", "expressions": expr, "schema_version": 0})
        for r, expr in self.data:
            conf.append({"address": r["address"], "mode": "data", "type": r["type"], "name": r["name"],
                         "provider_config_key": "google", "expressions": expr, "schema_version": 0})
        return {
            "format_version": "1.2",
            "terraform_version": "1.9.5",
            "planned_values": {"root_module": {"resources": [r for r, _, _ in self.items]}},
            "resource_changes": changes,
            "prior_state": {
                "format_version": "1.0",
                "terraform_version": "1.9.5",
                "values": {"root_module": {"resources": [r for r, _ in self.data]}},
            },
            "configuration": {
                "provider_config": {
                    "google": {"name": "google", "full_name": PROVIDER,
                               "expressions": {"project": const(PROJECT), "region": const(REGION)}},
                },
                "root_module": {"resources": conf},
            },
            "timestamp": "2026-11-22T12:00:00Z",
            "applyable": True,
            "complete": True,
            "errored": False,
        }


def sensitive_of(values):
    """Terraform marks the provider's sensitive attributes; only a few appear here."""
    out = {}
    for key in ("password", "secret_data"):
        if key in values:
            out[key] = True
    return out


def svc_name(i):
    return f"svc-{i:05d}"


def tf(i):
    return f"svc_{i:05d}"


V2_COMPUTED = {
    "id": True, "uid": True, "uri": True, "urls": True, "etag": True, "generation": True,
    "create_time": True, "update_time": True, "latest_ready_revision": True,
    "latest_created_revision": True, "conditions": True, "terminal_condition": True,
    "traffic_statuses": True, "effective_labels": True, "effective_annotations": True,
    "terraform_labels": True, "observed_generation": True, "reconciling": True,
}
V1_COMPUTED = {"id": True, "status": True}
IAM_COMPUTED = {"condition": [], "etag": True, "id": True}

INGRESS_V2 = {"all": "INGRESS_TRAFFIC_ALL", "internal": "INGRESS_TRAFFIC_INTERNAL_ONLY",
              "internal-and-cloud-load-balancing": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"}
INGRESS_BY_J = ["internal-and-cloud-load-balancing", "all", "all", "all", "all", "internal", "internal", "internal",
                "internal-and-cloud-load-balancing", "internal-and-cloud-load-balancing"]


def is_v1(i):
    return i % 10 in (1, 4, 7)


def identity(i):
    """(email or None, terraform address of the service account or None)."""
    j = i % 10
    if j == 7:
        return None, None
    if j == 8 and i % 20 == 8:
        return DEFAULT_SA, None
    if j == 9:
        k = i // 50
        return f"shared-runtime-{k}@{PROJECT}.iam.gserviceaccount.com", f"google_service_account.shared_{k}"
    return f"{svc_name(i)}@{PROJECT}.iam.gserviceaccount.com", f"google_service_account.{tf(i)}"


def secret_of(i):
    """(secret id, version) of the env secret the service reads, or None."""
    j = i % 10
    if j == 0:
        return f"{svc_name(i)}-api-key", "3"
    if j == 3:
        return f"{svc_name(i)}-api-key", "latest"
    if j == 6:
        return f"{svc_name(i)}-db-password", "2"
    return None


def env_plain(i):
    env = [("LOG_LEVEL", "info"), ("UPSTREAM_URL", f"https://{svc_name(i ^ 1)}-{NUMBER}.{REGION}.run.app")]
    if i % 10 == 5:
        env.append(("DB_PASSWORD", f"Prod-db-pass-{i:05d}-Zq8x"))
    return env


def vpc_of(i):
    j = i % 10
    if j in (5, 6):
        return "direct"
    if j == 9:
        return "connector"
    return None


def v2_service(p, i):
    name = svc_name(i)
    email, sa_addr = identity(i)
    sec = secret_of(i)
    env = [{"name": k, "value": v, "value_source": []} for k, v in env_plain(i)]
    env_expr = []
    if sec:
        env.append({"name": "API_KEY" if i % 10 != 6 else "DB_PASSWORD_FILE_CONTENT", "value": None,
                    "value_source": [{"secret_key_ref": [{"secret": sec[0], "version": sec[1]}]}]})
    vpc = vpc_of(i)
    vpc_access = []
    if vpc == "direct":
        vpc_access = [{"connector": None, "egress": "ALL_TRAFFIC",
                       "network_interfaces": [{"network": "bench-vpc", "subnetwork": "run-egress", "tags": [name]}]}]
    elif vpc == "connector":
        vpc_access = [{"connector": f"projects/{PROJECT}/locations/{REGION}/connectors/run-conn",
                       "egress": "PRIVATE_RANGES_ONLY", "network_interfaces": []}]
    template = {
        "service_account": email if sa_addr is None else None,
        "timeout": "300s",
        "max_instance_request_concurrency": 80,
        "execution_environment": "EXECUTION_ENVIRONMENT_GEN2",
        "revision": None,
        "labels": None,
        "annotations": None,
        "encryption_key": None,
        "session_affinity": False,
        "scaling": [{"min_instance_count": 0, "max_instance_count": 20}],
        "vpc_access": vpc_access,
        "containers": [{
            "name": None,
            "image": f"{REGION}-docker.pkg.dev/{PROJECT}/apps/{name}:1.4.{i % 7}",
            "args": None, "command": None, "working_dir": None, "depends_on": None,
            "env": env,
            "ports": [{"container_port": 8080, "name": "http1"}],
            "resources": [{"cpu_idle": True, "startup_cpu_boost": False, "limits": {"cpu": "1", "memory": "512Mi"}}],
            "volume_mounts": [],
            "liveness_probe": [], "startup_probe": [],
        }],
        "volumes": [],
    }
    values = {
        "name": name, "location": REGION, "project": PROJECT,
        "ingress": INGRESS_V2[INGRESS_BY_J[i % 10]],
        "invoker_iam_disabled": False, "custom_audiences": None, "default_uri_disabled": False,
        "iap_enabled": False, "deletion_protection": False, "description": f"{name} service",
        "labels": {"team": f"team-{i // 50}"}, "annotations": None, "client": None, "client_version": None,
        "launch_stage": "GA", "binary_authorization": [], "scaling": [],
        "template": [template],
        "traffic": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100, "revision": None, "tag": None}],
        "timeouts": None,
    }
    unknown = dict(V2_COMPUTED)
    t_expr = {}
    if sa_addr:
        unknown["template"] = [{"service_account": True}]
        t_expr["service_account"] = ref(f"{sa_addr}.email", sa_addr)
    if sec:
        k = sec[0].replace("-", "_")
        env_expr = [{} for _ in env[:-1]] + [{"name": const(env[-1]["name"]), "value_source": [{"secret_key_ref": [{
            "secret": ref(f"google_secret_manager_secret.{k}.secret_id", f"google_secret_manager_secret.{k}"),
            "version": const(sec[1])}]}]}]
        t_expr["containers"] = [{"image": const(template["containers"][0]["image"]), "env": env_expr}]
    if vpc == "connector":
        t_expr["vpc_access"] = [{"connector": const(vpc_access[0]["connector"]), "egress": const("PRIVATE_RANGES_ONLY")}]
    expr = {"name": const(name), "location": const(REGION), "ingress": const(values["ingress"])}
    if t_expr:
        expr["template"] = [t_expr]
    return p.add("google_cloud_run_v2_service", tf(i), values, unknown, expr)


def v1_service(p, i):
    name = svc_name(i)
    email, sa_addr = identity(i)
    env = [{"name": k, "value": v, "value_from": []} for k, v in env_plain(i)]
    ann = {"run.googleapis.com/ingress": INGRESS_BY_J[i % 10]}
    values = {
        "name": name, "location": REGION, "project": PROJECT, "autogenerate_revision_name": True,
        "metadata": [{"annotations": ann, "labels": {"team": f"team-{i // 50}"}, "namespace": None}],
        "template": [{
            "metadata": [{"annotations": {"autoscaling.knative.dev/maxScale": "20"}, "labels": None, "name": None}],
            "spec": [{
                "service_account_name": email if sa_addr is None else None,
                "container_concurrency": 80, "timeout_seconds": 300,
                "containers": [{"image": f"gcr.io/{PROJECT}/{name}:1.4.{i % 7}", "args": None, "command": None,
                                "env": env, "ports": [{"container_port": 8080, "name": "http1", "protocol": None}],
                                "resources": [{"limits": {"cpu": "1000m", "memory": "512Mi"}, "requests": None}],
                                "volume_mounts": [], "working_dir": None}],
                "volumes": [],
            }],
        }],
        "traffic": [{"latest_revision": True, "percent": 100, "revision_name": None, "tag": None, "url": None}],
        "timeouts": None,
    }
    unknown = {"id": True, "status": True,
               "metadata": [{"annotations": {}, "generation": True, "resource_version": True, "self_link": True,
                             "uid": True, "namespace": True, "effective_annotations": True, "effective_labels": True,
                             "terraform_labels": True, "labels": {}}]}
    spec_expr = {"containers": [{"image": const(values["template"][0]["spec"][0]["containers"][0]["image"])}]}
    if sa_addr:
        unknown["template"] = [{"spec": [{"service_account_name": True}]}]
        spec_expr["service_account_name"] = ref(f"{sa_addr}.email", sa_addr)
    expr = {"name": const(name), "location": const(REGION),
            "metadata": [{"annotations": const(ann)}],
            "template": [{"spec": [spec_expr]}]}
    return p.add("google_cloud_run_service", tf(i), values, unknown, expr)


def caller_of(i):
    """The service whose runtime identity is granted invoke on service i (service to service):
    the previous service with a dedicated service account (the next one for the first)."""
    c = i - 1 if i % 10 else i + 1
    while identity(c)[1] != f"google_service_account.{tf(c)}":
        c -= 1
    return c


def invoker(p, i, n, svc_addr):
    j = i % 10
    name = svc_name(i)
    v1 = is_v1(i)
    rtype = "google_cloud_run_service_iam" if v1 else "google_cloud_run_v2_service_iam"
    key = "service" if v1 else "name"
    name_expr = ref(f"{svc_addr}.name", svc_addr)
    base = {"location": REGION, "project": PROJECT, key: name, "etag": None, "id": None}
    public = None
    if j in (0, 1, 2) or (j == 6 and i % 20 == 6):
        public = "allUsers"
    elif j == 3:
        public = "allAuthenticatedUsers"
    if public and j == 3:
        p.add(f"{rtype}_binding", f"{tf(i)}_invokers",
              dict(base, role="roles/run.invoker", members=[public], condition=[]), IAM_COMPUTED,
              {key: name_expr, "role": const("roles/run.invoker"), "members": const([public])})
        return
    if public:
        p.add(f"{rtype}_member", f"{tf(i)}_public",
              dict(base, role="roles/run.invoker", member=public, condition=[]), IAM_COMPUTED,
              {key: name_expr, "role": const("roles/run.invoker"), "member": const(public)})
        # Public services keep their own callers' grants too.
    c = caller_of(i)
    if c >= n:
        return
    email, sa_addr = identity(c)
    member = f"serviceAccount:{email}" if email else f"serviceAccount:{DEFAULT_SA}"
    if j == 4 and i % 20 == 4:
        # Authoritative policy from a data.google_iam_policy read at plan time (its inputs are known).
        policy = json.dumps({"bindings": [{"role": "roles/run.invoker", "members": [member]}]}, separators=(",", ":"))
        p.add_data("google_iam_policy", f"{tf(i)}_invokers",
                   {"audit_config": [], "binding": [{"role": "roles/run.invoker", "members": [member], "condition": []}],
                    "id": str(1000000 + i), "policy_data": policy},
                   {"binding": [{"role": const("roles/run.invoker"), "members": const([member])}]})
        p.add(f"{rtype}_policy", f"{tf(i)}", dict(base, policy_data=policy), {"etag": True, "id": True},
              {key: name_expr, "policy_data": ref(f"data.google_iam_policy.{tf(i)}_invokers.policy_data",
                                                  f"data.google_iam_policy.{tf(i)}_invokers")})
        return
    unknown = dict(IAM_COMPUTED)
    expr = {key: name_expr, "role": const("roles/run.invoker")}
    values = dict(base, role="roles/run.invoker", member=member, condition=[])
    if sa_addr and sa_addr.startswith(f"google_service_account.{tf(c)}"):
        values["member"] = None
        unknown["member"] = True
        expr["member"] = ref(f"{sa_addr}.email", sa_addr)
    else:
        expr["member"] = const(member)
    p.add(f"{rtype}_member", f"{tf(i)}_caller", values, unknown, expr)


def secrets(p, i):
    sec = secret_of(i)
    if not sec:
        return
    sid, _ = sec
    k = sid.replace("-", "_")
    p.add("google_secret_manager_secret", k,
          {"secret_id": sid, "project": PROJECT, "labels": None, "annotations": None, "version_aliases": None,
           "replication": [{"auto": [{"customer_managed_encryption": []}], "user_managed": []}],
           "rotation": [], "topics": [], "ttl": None, "expire_time": None, "version_destroy_ttl": None},
          {"id": True, "name": True, "create_time": True, "effective_labels": True, "effective_annotations": True,
           "terraform_labels": True},
          {"secret_id": const(sid), "replication": [{"auto": [{}]}]})
    if i % 10 == 6:
        return  # the runtime service account is never granted access: the deploy fails
    email, sa_addr = identity(i)
    values = {"secret_id": sid, "project": PROJECT, "role": "roles/secretmanager.secretAccessor",
              "member": None, "condition": [], "etag": None, "id": None}
    unknown = {"member": True, "condition": [], "etag": True, "id": True}
    expr = {"secret_id": ref(f"google_secret_manager_secret.{k}.secret_id", f"google_secret_manager_secret.{k}"),
            "role": const("roles/secretmanager.secretAccessor")}
    if sa_addr:
        expr["member"] = ref(f"{sa_addr}.email", sa_addr)
    else:
        values["member"] = f"serviceAccount:{email}"
        unknown.pop("member")
        expr["member"] = const(values["member"])
    p.add("google_secret_manager_secret_iam_member", k, values, unknown, expr)


def service_account(p, addr_name, account_id):
    p.add("google_service_account", addr_name,
          {"account_id": account_id, "display_name": f"{account_id} runtime", "project": PROJECT, "description": None,
           "disabled": False, "create_ignore_already_exists": None, "timeouts": None},
          {"email": True, "id": True, "member": True, "name": True, "unique_id": True},
          {"account_id": const(account_id), "display_name": const(f"{account_id} runtime")})


SECURITY_POLICIES = {
    "edge": [
        # Not evaluatePreconfiguredExpr('cve-canary'): moat refuses policies with preconfigured
        # WAF rules until it evaluates them (fail closed, docs/EDGE.md).
        ("deny(403)", 1000, "jndi lookups", "request.headers['user-agent'].contains('${jndi:')", None, None),
        ("deny(403)", 1100, "plain sqli", "request.query.lower().contains('union select')", None, None),
        ("throttle", 2000, "per-client throttle", "request.path.startsWith('/')", None, "IP"),
        ("allow", 2147483647, "default rule", None, ["*"], None),
    ],
    "edge-weak": [
        ("throttle", 2000, "global throttle", "request.path.startsWith('/api')", None, "ALL"),
        ("allow", 2147483647, "default rule", None, ["*"], None),
    ],
}


def security_policy(p, name, rules):
    out = []
    for action, prio, desc, expr, ips, key in rules:
        rl = []
        if key:
            rl = [{"conform_action": "allow", "exceed_action": "deny(429)", "enforce_on_key": key,
                   "enforce_on_key_name": None, "enforce_on_key_configs": [],
                   "rate_limit_threshold": [{"count": 600, "interval_sec": 60}], "ban_threshold": [],
                   "ban_duration_sec": None, "exceed_redirect_options": []}]
        out.append({"action": action, "priority": prio, "description": desc, "preview": False,
                    "match": [{"versioned_expr": "SRC_IPS_V1" if ips else None,
                               "config": [{"src_ip_ranges": ips}] if ips else [],
                               "expr": [{"expression": expr}] if expr else [], "expr_options": []}],
                    "rate_limit_options": rl, "redirect_options": [], "header_action": [],
                    "preconfigured_waf_config": []})
    addr = p.add("google_compute_security_policy", name.replace("-", "_"),
                 {"name": name, "project": PROJECT, "type": "CLOUD_ARMOR", "description": None, "rule": out,
                  "adaptive_protection_config": [], "advanced_options_config": [], "recaptcha_options_config": []},
                 {"fingerprint": True, "id": True, "self_link": True}, {"name": const(name)})
    return addr


def load_balancer(p, g, members, svc_addrs, policy_addr):
    """An external HTTPS LB for group g routing /NAME/* to each member service."""
    backends = []
    for i in members:
        neg = p.add("google_compute_region_network_endpoint_group", tf(i),
                    {"name": f"{svc_name(i)}-neg", "project": PROJECT, "region": REGION,
                     "network_endpoint_type": "SERVERLESS", "network": None, "subnetwork": None, "description": None,
                     "cloud_run": [{"service": svc_name(i), "tag": None, "url_mask": None}],
                     "app_engine": [], "cloud_function": [], "serverless_deployment": [], "psc_target_service": None},
                    {"id": True, "self_link": True},
                    {"cloud_run": [{"service": ref(f"{svc_addrs[i]}.name", svc_addrs[i])}]})
        bexpr = {"backend": [{"group": ref(f"{neg}.id", neg)}], "load_balancing_scheme": const("EXTERNAL_MANAGED")}
        bunk = {"backend": [{"group": True}], "id": True, "self_link": True, "fingerprint": True, "generated_id": True,
                "creation_timestamp": True}
        if policy_addr:
            bexpr["security_policy"] = ref(f"{policy_addr}.id", policy_addr)
            bunk["security_policy"] = True
        be = p.add("google_compute_backend_service", tf(i),
                   {"name": f"{svc_name(i)}-backend", "project": PROJECT, "load_balancing_scheme": "EXTERNAL_MANAGED",
                    "protocol": "HTTPS", "security_policy": None, "edge_security_policy": None, "enable_cdn": False,
                    "iap": [], "log_config": [{"enable": True, "sample_rate": 1}], "description": None,
                    "backend": [{"group": None, "balancing_mode": "UTILIZATION", "capacity_scaler": 1,
                                 "description": None, "max_utilization": None}],
                    "custom_request_headers": None, "custom_response_headers": None, "timeout_sec": None},
                   bunk, bexpr)
        backends.append((i, be))
    default = backends[0][1]
    lb = f"lb_{g:04d}"
    host = f"app-{g:04d}.bench.example"
    path_rules = [{"paths": [f"/{svc_name(i)}/*"], "service": None, "route_action": [], "url_redirect": []}
                  for i, _ in backends]
    um = p.add("google_compute_url_map", lb,
               {"name": f"{lb.replace('_', '-')}", "project": PROJECT, "default_service": None, "description": None,
                "host_rule": [{"hosts": [host], "path_matcher": "routes", "description": None}],
                "path_matcher": [{"name": "routes", "default_service": None, "path_rule": path_rules,
                                  "route_rules": [], "description": None}],
                "default_url_redirect": [], "header_action": [], "test": []},
               {"default_service": True, "id": True, "self_link": True, "fingerprint": True, "map_id": True,
                "path_matcher": [{"default_service": True, "path_rule": [{"service": True} for _ in backends]}]},
               {"default_service": ref(f"{default}.id", default),
                "path_matcher": [{"default_service": ref(f"{default}.id", default),
                                  "path_rule": [{"service": ref(f"{be}.id", be)} for _, be in backends]}]})
    proxy = p.add("google_compute_target_https_proxy", lb,
                  {"name": f"{lb.replace('_', '-')}-https", "project": PROJECT, "url_map": None,
                   "ssl_certificates": [f"projects/{PROJECT}/global/sslCertificates/app-{g:04d}"], "ssl_policy": None,
                   "quic_override": "NONE", "description": None},
                  {"url_map": True, "id": True, "self_link": True, "proxy_id": True},
                  {"url_map": ref(f"{um}.id", um)})
    p.add("google_compute_global_forwarding_rule", lb,
          {"name": f"{lb.replace('_', '-')}-fr", "project": PROJECT, "target": None, "port_range": "443",
           "ip_protocol": "TCP", "load_balancing_scheme": "EXTERNAL_MANAGED", "ip_address": None,
           "network": None, "labels": None, "description": None},
          {"target": True, "ip_address": True, "id": True, "self_link": True, "label_fingerprint": True},
          {"target": ref(f"{proxy}.id", proxy)})


def network(p):
    net = p.add("google_compute_network", "vpc",
                {"name": "bench-vpc", "project": PROJECT, "auto_create_subnetworks": False, "routing_mode": "REGIONAL",
                 "description": None, "delete_default_routes_on_create": False, "mtu": 1460},
                {"id": True, "self_link": True, "gateway_ipv4": True, "numeric_id": True},
                {"name": const("bench-vpc"), "auto_create_subnetworks": const(False)})
    nref = ref("google_compute_network.vpc.id", net)
    p.add("google_compute_subnetwork", "run",
          {"name": "run-egress", "project": PROJECT, "region": REGION, "ip_cidr_range": "10.8.0.0/20", "network": None,
           "private_ip_google_access": True, "log_config": [], "secondary_ip_range": [], "description": None,
           "stack_type": "IPV4_ONLY", "purpose": "PRIVATE"},
          {"network": True, "id": True, "self_link": True, "gateway_address": True},
          {"name": const("run-egress"), "network": nref})
    p.add("google_vpc_access_connector", "conn",
          {"name": "run-conn", "project": PROJECT, "region": REGION, "network": "bench-vpc", "ip_cidr_range": "10.8.16.0/28",
           "min_instances": 2, "max_instances": 3, "machine_type": "e2-micro", "subnet": []},
          {"id": True, "self_link": True, "state": True, "connected_projects": True},
          {"network": ref("google_compute_network.vpc.name", net)})
    p.add("google_compute_router", "r",
          {"name": "bench-router", "project": PROJECT, "region": REGION, "network": None, "bgp": [], "description": None},
          {"network": True, "id": True, "self_link": True, "creation_timestamp": True}, {"network": nref})
    p.add("google_compute_router_nat", "nat",
          {"name": "bench-nat", "project": PROJECT, "region": REGION, "router": "bench-router",
           "nat_ip_allocate_option": "AUTO_ONLY", "source_subnetwork_ip_ranges_to_nat": "ALL_SUBNETWORKS_ALL_IP_RANGES",
           "log_config": [{"enable": True, "filter": "ERRORS_ONLY"}]},
          {"id": True}, {"router": ref("google_compute_router.r.name", "google_compute_router.r")})
    p.add("google_compute_firewall", "deny_all_egress",
          {"name": "deny-all-egress", "project": PROJECT, "network": None, "direction": "EGRESS", "priority": 65000,
           "deny": [{"protocol": "all", "ports": []}], "allow": [], "destination_ranges": ["0.0.0.0/0"],
           "source_ranges": None, "target_tags": None, "disabled": False, "log_config": [], "description": None},
          {"network": True, "id": True, "self_link": True, "creation_timestamp": True}, {"network": nref})
    p.add("google_compute_firewall", "allow_https_egress",
          {"name": "allow-https-egress", "project": PROJECT, "network": None, "direction": "EGRESS", "priority": 1000,
           "allow": [{"protocol": "tcp", "ports": ["443"]}], "deny": [], "destination_ranges": ["0.0.0.0/0"],
           "source_ranges": None, "target_tags": None, "disabled": False, "log_config": [], "description": None},
          {"network": True, "id": True, "self_link": True, "creation_timestamp": True}, {"network": nref})


def per_hundred(p, k):
    """Shared resources for each started hundred services: project grants and a Cloud SQL instance."""
    grants = [
        ("editor", "roles/editor", f"serviceAccount:svc-{k * 100 + 2:05d}@{PROJECT}.iam.gserviceaccount.com"),
        ("accessor", "roles/secretmanager.secretAccessor", f"serviceAccount:etl-{k}@{PROJECT}.iam.gserviceaccount.com"),
        ("invoker", "roles/run.invoker", f"group:developers-{k}@bench.example"),
        ("sa_user", "roles/iam.serviceAccountUser", f"user:ops-{k}@bench.example"),
        ("token_creator", "roles/iam.serviceAccountTokenCreator", f"group:deployers-{k}@bench.example"),
        ("viewer", "roles/viewer", f"group:auditors-{k}@bench.example"),
    ]
    for tag, role, member in grants:
        p.add("google_project_iam_member", f"{tag}_{k}",
              {"project": PROJECT, "role": role, "member": member, "condition": [], "etag": None, "id": None},
              IAM_COMPUTED, {"project": const(PROJECT), "role": const(role), "member": const(member)})
    service_account(p, f"etl_{k}", f"etl-{k}")
    name = f"bench-db-{k}"
    public = k % 2 == 0
    ipc = {"ipv4_enabled": public, "private_network": None if public else f"projects/{PROJECT}/global/networks/bench-vpc",
           "ssl_mode": "ALLOW_UNENCRYPTED_AND_ENCRYPTED" if public else "ENCRYPTED_ONLY",
           "require_ssl": False if public else True,
           "authorized_networks": [{"name": "anywhere", "value": "0.0.0.0/0", "expiration_time": None}] if public else [],
           "allocated_ip_range": None, "enable_private_path_for_google_cloud_services": False, "psc_config": []}
    flags = [{"name": "cloudsql.iam_authentication", "value": "off" if public else "on"}]
    addr = p.add("google_sql_database_instance", f"db_{k}",
                 {"name": name, "project": PROJECT, "region": REGION, "database_version": "POSTGRES_15",
                  "deletion_protection": True, "root_password": None, "encryption_key_name": None,
                  "settings": [{"tier": "db-custom-2-7680", "availability_type": "ZONAL", "disk_size": 20,
                                "ip_configuration": [ipc], "database_flags": flags,
                                "backup_configuration": [{"enabled": not public, "point_in_time_recovery_enabled": False,
                                                          "start_time": "03:00", "binary_log_enabled": False,
                                                          "location": None, "transaction_log_retention_days": 7,
                                                          "backup_retention_settings": []}],
                                "insights_config": [], "maintenance_window": [], "user_labels": None}]},
                 {"id": True, "self_link": True, "connection_name": True, "ip_address": True, "first_ip_address": True,
                  "public_ip_address": True, "private_ip_address": True, "server_ca_cert": True, "service_account_email_address": True},
                 {"name": const(name), "database_version": const("POSTGRES_15"),
                  "settings": [{"ip_configuration": [{"ipv4_enabled": const(public)}]}]})
    p.add("google_sql_user", f"app_{k}",
          {"name": "app", "project": PROJECT, "instance": name, "type": None, "host": None,
           "password": "generated-by-terraform-not-read", "deletion_policy": None, "password_policy": []},
          {"id": True, "sql_server_user_details": True},
          {"instance": ref(f"{addr}.name", addr), "password": ref("random_password.db.result", "random_password.db")})


def generate(n):
    p = Plan()
    p.add_data("google_project", "this", {"project_id": PROJECT, "number": NUMBER, "name": PROJECT,
                                          "id": f"projects/{PROJECT}", "org_id": "100000000001"},
               {"project_id": const(PROJECT)})
    network(p)
    policies = {name: security_policy(p, name, rules) for name, rules in SECURITY_POLICIES.items()}
    for k in range((n + 99) // 100):
        per_hundred(p, k)
    for k in range((n + 49) // 50):
        if any(i % 10 == 9 for i in range(k * 50, min(n, k * 50 + 50))):
            service_account(p, f"shared_{k}", f"shared-runtime-{k}")
    svc_addrs = {}
    for i in range(n):
        _, sa_addr = identity(i)
        if sa_addr and sa_addr == f"google_service_account.{tf(i)}":
            service_account(p, tf(i), svc_name(i))
        secrets(p, i)
        svc_addrs[i] = v1_service(p, i) if is_v1(i) else v2_service(p, i)
    for i in range(n):
        invoker(p, i, n, svc_addrs[i])
    for g in range((n + 9) // 10):
        members = [i for i in (g * 10, g * 10 + 1) if i < n]
        if not members:
            continue
        policy = {0: policies["edge-weak"], 1: policies["edge"], 2: None}[g % 3]
        load_balancer(p, g, members, svc_addrs, policy)
    return p.doc()


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: gen_plans.py OUT_DIR N [N...]")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for arg in sys.argv[2:]:
        n = int(arg)
        doc = generate(n)
        path = os.path.join(out, f"plan-{n}.json")
        with open(path, "w") as f:
            # As `terraform show -json` prints it: one line.
            json.dump(doc, f, separators=(",", ":"))
            f.write("\n")
        print(f"{path}: {n} services, {len(doc['resource_changes'])} resources "
              f"({os.path.getsize(path) / 1e6:.1f} MB)", file=sys.stderr)


if __name__ == "__main__":
    main()
