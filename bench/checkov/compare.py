#!/usr/bin/env python3
"""Reads what bench/checkov/run.sh left in OUT_DIR and prints the side-by-side report.

    compare.py OUT_DIR SIZE [SIZE...] [--no-checkov] [--expect CATEGORY,...]

Per size it reads plan-N.json, moat-N.json (`moat check --format json`), checkov-N.json
(`checkov -o json`, unless --no-checkov) and times.tsv (tool, size, run, seconds), then prints
findings per category for each tool, the per-resource comparison of checkov's CKV_GCP_102
failures with moat's public-invoker findings, the public grants only moat reports, and wall
times (median) with the speed ratio. Exits 1 when moat misses a CKV_GCP_102 failure, when
moat misses a public invoker grant of the plan, or when a category given to --expect has no
moat finding.
"""
import json
import os
import statistics
import sys

# The comparison categories: (key, title).
CATEGORIES = [
    ("public-invoker", "Cloud Run service invocable by anyone"),
    ("ingress-path", "ingress: LB bypass, blocked caller paths"),
    ("edge", "load balancer and Cloud Armor"),
    ("identity", "runtime identity (service accounts)"),
    ("project-grants", "broad grants at project level"),
    ("secrets", "secrets (plaintext, pinning, access)"),
    ("network", "VPC network and egress"),
    ("cloud-sql", "Cloud SQL"),
    ("other", "other"),
]

# moat rule → category (docs/CHECKS.md).
MOAT_RULES = {
    "MOAT001": "public-invoker",   # invoker role to allUsers/allAuthenticatedUsers, or invoker check disabled
    "MOAT010": "public-invoker",   # anonymous invoker on an `internal` service (ingress as authentication)
    "MOAT002": "ingress-path",     # load balancer bypassed through the run.app URL
    "MOAT003": "ingress-path",     # caller's path blocked by the callee's ingress
    "MOAT011": "edge",             # external LB without a security policy
    "MOAT014": "edge",             # security policy enforces nothing
    "MOAT015": "edge",             # rate limit keyed on ALL
    "MOAT016": "edge",             # shadowed security policy rule
    "MOAT004": "identity",         # default compute service account
    "MOAT005": "identity",         # runtime service account holds a basic role
    "MOAT009": "project-grants",   # secret accessor at project level
    "MOAT012": "project-grants",   # invoker at project level
    "MOAT006": "secrets",          # plaintext secret in an env var
    "MOAT007": "secrets",          # env secret pinned to latest
    "MOAT008": "secrets",          # runtime service account cannot access a referenced secret
    "MOAT013": "network",          # connector where Direct VPC egress would do
    # Issue 9's rules (in progress when this was written; a rule not listed counts as `other`).
    "MOAT017": "cloud-sql",        # public IP
    "MOAT018": "cloud-sql",        # no private network
    "MOAT019": "cloud-sql",        # unencrypted connections accepted
    "MOAT020": "cloud-sql",        # IAM database authentication off
    "MOAT021": "cloud-sql",        # built-in user with a password
    "MOAT022": "cloud-sql",        # service reaches a private-IP-only instance without VPC egress
    "MOAT023": "edge",             # public service not behind a load balancer with a security policy
    "MOAT024": "edge",             # security policy on the public surface without WAF rules
    "MOAT025": "edge",             # security policy on the public surface without a rate limit
    "MOAT026": "identity",         # runtime service account shared by several services
    "MOAT027": "project-grants",   # acting as a runtime service account granted broadly
}

# checkov check id → category, for the checks that fire on these plans (checkov 3.3.30,
# terraform_plan framework). Checks not listed fall back to the resource type below.
CHECKOV_CHECKS = {
    "CKV_GCP_102": "public-invoker",  # Cloud Run services not anonymously or publicly accessible (v1 IAM member/binding)
    "CKV_GCP_113": "public-invoker",  # IAM policy should not define public access
    "CKV_GCP_73": "edge",             # Cloud Armor prevents message lookup in Log4j2 (cve-canary)
    "CKV_GCP_42": "identity",         # service account has no admin privileges
    "CKV_GCP_46": "identity",         # default service account not used at project level
    "CKV_GCP_41": "project-grants",   # Service Account User / Token Creator at project level
    "CKV_GCP_49": "project-grants",   # roles that impersonate or manage service accounts at project level
    "CKV_GCP_117": "project-grants",  # basic roles at project level
    "CKV_GCP_26": "network",          # subnetwork flow logs
    "CKV_GCP_74": "network",          # subnetwork Private Google Access
    "CKV_GCP_76": "network",          # subnetwork private IPv6 Google access
}
CHECKOV_TYPES = [
    ("google_sql_", "cloud-sql"),
    ("google_compute_security_policy", "edge"),
    ("google_compute_backend_service", "edge"),
    ("google_compute_url_map", "edge"),
    ("google_compute_target_https_proxy", "edge"),
    ("google_compute_global_forwarding_rule", "edge"),
    ("google_compute_region_network_endpoint_group", "edge"),
    ("google_project_iam_", "project-grants"),
    ("google_service_account", "identity"),
    ("google_secret_manager_", "secrets"),
    ("google_compute_network", "network"),
    ("google_compute_subnetwork", "network"),
    ("google_compute_firewall", "network"),
    ("google_compute_router", "network"),
    ("google_vpc_access_connector", "network"),
]

PUBLIC = ("allUsers", "allAuthenticatedUsers")


def checkov_category(check_id, resource):
    if check_id in CHECKOV_CHECKS:
        return CHECKOV_CHECKS[check_id]
    rtype = resource.split(".")[-2] if "." in resource else resource
    for prefix, cat in CHECKOV_TYPES:
        if rtype.startswith(prefix):
            return cat
    return "other"


def load(path):
    with open(path) as f:
        return json.load(f)


def checkov_report(path):
    d = load(path)
    if isinstance(d, list):  # one entry per framework
        d = next(x for x in d if x.get("check_type") == "terraform_plan")
    return d


def by_address(plan):
    return {rc["address"]: rc for rc in plan["resource_changes"]}


def service_of_iam(rc):
    after = rc["change"]["after"] or {}
    name = after.get("service") or after.get("name") or ""
    return name.rstrip("/").rsplit("/", 1)[-1]


def public_grants(plan):
    """(address, service) of every Cloud Run IAM resource of the plan granting to allUsers/allAuthenticatedUsers."""
    out = []
    for rc in plan["resource_changes"]:
        if not (rc["type"].startswith("google_cloud_run") and "_iam_" in rc["type"]):
            continue
        after = rc["change"]["after"] or {}
        members = list(after.get("members") or []) + ([after["member"]] if after.get("member") else [])
        if after.get("policy_data"):
            for b in json.loads(after["policy_data"]).get("bindings", []):
                members += b.get("members", [])
        if any(m in PUBLIC for m in members):
            out.append((rc["address"], service_of_iam(rc)))
    return out


def median_times(path):
    times = {}
    if not os.path.exists(path):
        return times
    with open(path) as f:
        for line in f:
            tool, size, _, secs = line.split()
            times.setdefault((tool, int(size)), []).append(float(secs))
    return {k: (statistics.median(v), len(v)) for k, v in times.items()}


def main():
    args = sys.argv[1:]
    no_checkov = "--no-checkov" in args
    expect = []
    if "--expect" in args:
        i = args.index("--expect")
        expect = args[i + 1].split(",")
        del args[i:i + 2]
    args = [a for a in args if a != "--no-checkov"]
    out, sizes = args[0], [int(a) for a in args[1:]]
    times = median_times(os.path.join(out, "times.tsv"))
    ok = True
    rows = []  # per size: (n, resources, moat counts, checkov counts)

    print("\nmapping (category: moat rules | checkov checks, then by resource type)")
    for key, title in CATEGORIES:
        m = sorted(r for r, c in MOAT_RULES.items() if c == key)
        k = sorted(r for r, c in CHECKOV_CHECKS.items() if c == key)
        t = sorted(p + "*" for p, c in CHECKOV_TYPES if c == key)
        print(f"  {key:15} {', '.join(m) or '-'} | {', '.join(k + t) or '-'}")

    for n in sizes:
        plan = load(os.path.join(out, f"plan-{n}.json"))
        moat = load(os.path.join(out, f"moat-{n}.json"))
        mcount = {}
        moat_public = set()
        for f in moat["findings"]:
            cat = MOAT_RULES.get(f["rule"], "other")
            mcount[cat] = mcount.get(cat, 0) + 1
            if cat == "public-invoker":
                moat_public.add(f.get("service"))
        ccount = {}
        ck_public = []
        ck_summary = None
        if not no_checkov:
            ck = checkov_report(os.path.join(out, f"checkov-{n}.json"))
            ck_summary = ck["summary"]
            for c in ck["results"]["failed_checks"]:
                cat = checkov_category(c["check_id"], c["resource"])
                ccount[cat] = ccount.get(cat, 0) + 1
                if c["check_id"] == "CKV_GCP_102":
                    ck_public.append(c["resource"])
        rows.append((n, len(plan["resource_changes"]), mcount, ccount, ck_summary))

        print(f"\n== {n} services: {len(plan['resource_changes'])} resources in the plan")
        if ck_summary:
            print(f"   checkov evaluated {ck_summary['resource_count']} resources: "
                  f"{ck_summary['passed']} passed, {ck_summary['failed']} failed, "
                  f"{ck_summary['parsing_errors']} parsing errors")
            if ck_summary["resource_count"] == 0:
                print("   FAIL: checkov evaluated no resource (plan shape?)")
                ok = False
        # Per resource: every CKV_GCP_102 failure must be a moat public-invoker finding on that service.
        rcs = by_address(plan)
        misses = []
        for addr in ck_public:
            svc = service_of_iam(rcs[addr]) if addr in rcs else None
            if svc not in moat_public:
                misses.append((addr, svc))
        if not no_checkov:
            print(f"   CKV_GCP_102 failures: {len(ck_public)}; moat public-invoker finding on the same service: "
                  f"{len(ck_public) - len(misses)}; missed by moat: {len(misses)}")
            for addr, svc in misses:
                print(f"   MISS: checkov fails {addr} (service `{svc}`), moat reports no MOAT001/MOAT010 on it")
            ok = ok and not misses
        grants = public_grants(plan)
        unflagged = [(a, s) for a, s in grants if s not in moat_public]
        only_moat = [(a, s) for a, s in grants if a not in ck_public]
        print(f"   public invoker grants in the plan: {len(grants)}; moat flags the service of "
              f"{len(grants) - len(unflagged)}" + ("" if no_checkov else f"; checkov (CKV_GCP_102) {len(ck_public)}"))
        for a, s in unflagged:
            print(f"   MISS: {a} grants `{s}` to the public, moat reports nothing on it")
        ok = ok and not unflagged
        if not no_checkov and only_moat:
            kinds = {}
            for a, _ in only_moat:
                kinds[a.split(".")[0]] = kinds.get(a.split(".")[0], 0) + 1
            print("   public grants only moat reports: " + ", ".join(f"{v} {k}" for k, v in sorted(kinds.items())))
        for cat in expect:
            if not mcount.get(cat):
                print(f"   FAIL: expected moat findings in category `{cat}`, found none")
                ok = False

    print("\nfindings per category (moat / checkov)")
    head = "| category | " + " | ".join(f"{n:,} services" for n, *_ in rows) + " |"
    print(head)
    print("| --- |" + " --- |" * len(rows))
    for key, title in CATEGORIES:
        cells = []
        for _, _, m, c, _ in rows:
            cells.append(f"{m.get(key, 0)} / {'-' if no_checkov else c.get(key, 0)}")
        print(f"| {title} | " + " | ".join(cells) + " |")
    totals = [f"{sum(m.values())} / {'-' if no_checkov else sum(c.values())}" for _, _, m, c, _ in rows]
    print("| **total** | " + " | ".join(totals) + " |")

    if times:
        print("\nwall time, median of runs (seconds)")
        print("| services | resources | moat | checkov | checkov ÷ moat |")
        print("| ---: | ---: | ---: | ---: | ---: |")
        for n, res, *_ in rows:
            mt = times.get(("moat", n))
            ct = times.get(("checkov", n))
            ratio = f"{ct[0] / mt[0]:.0f}×" if mt and ct and mt[0] > 0 else "-"
            print(f"| {n:,} | {res:,} | " + (f"{mt[0]:.3f} ({mt[1]} runs)" if mt else "-") + " | "
                  + (f"{ct[0]:.2f} ({ct[1]} runs)" if ct else "-") + f" | {ratio} |")
        big = max(sizes)
        mt, ct = times.get(("moat", big)), times.get(("checkov", big))
        if mt and ct:
            ratio = ct[0] / mt[0]
            verdict = "met" if ratio >= 20 else "MISSED"
            print(f"\ntarget: moat ≥ 20× faster on the {big:,}-service plan: {ratio:.0f}× ({verdict})")

    if not ok:
        print("\nFAIL: see the lines above", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
