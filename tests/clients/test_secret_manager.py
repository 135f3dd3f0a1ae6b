"""Unmodified google-cloud-secret-manager (REST transport) against moat's Secret Manager API,
authenticated end to end: `moat up` runs two workloads whose clients use default credentials
(ADC → the instance's own metadata server → an access token) and `MOAT_SECRETMANAGER_ENDPOINT`.

`owner`'s service account holds roles/secretmanager.admin on the project; `stranger`'s holds
nothing until the owner grants it secretAccessor on one secret. Errors must arrive as the
google.api_core exceptions Google's own service gives this client: over REST, api_core picks
the class from the HTTP status (a FAILED_PRECONDITION is a 400, so `BadRequest`; a
PERMISSION_DENIED is `Forbidden`) and the envelope carries the rpc status (spec/clients.md §2,
spec/cloudrun.md §5.4). Then gcloud `secrets` commands, where gcloud is installed, with an access token from the
owner's metadata server (`--access-token-file`) and the endpoint `moat up` wrote to
STATE/secrets/endpoint."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from conftest import _FOREIGN_ENV, moat_bin, moat_up

PROJECT_ID = "sm-proj"
NUMBER = "300000000003"
OWNER = f"owner@{PROJECT_ID}.iam.gserviceaccount.com"
STRANGER = f"stranger@{PROJECT_ID}.iam.gserviceaccount.com"

# The workload: runs one Secret Manager call per POST /op and answers with its outcome: the
# exception class, HTTP code, rpc status and message when the API refused.
APP = r'''
import base64, json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import google.auth
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.cloud import secretmanager
from google.iam.v1 import iam_policy_pb2, policy_pb2
from google.protobuf import json_format

ENDPOINT = os.environ["MOAT_SECRETMANAGER_ENDPOINT"]
client = secretmanager.SecretManagerServiceClient(
    transport="rest", client_options=ClientOptions(api_endpoint=ENDPOINT))
_, PROJECT = google.auth.default()
PARENT = f"projects/{PROJECT}"


def msg(m):
    return json.loads(type(m).to_json(m, use_integers_for_enums=False)) if hasattr(type(m), "to_json") else json_format.MessageToDict(m)


def run(op, a):
    name = f"{PARENT}/secrets/{a.get('id', '')}"
    if op == "create":
        return msg(client.create_secret(request={
            "parent": PARENT, "secret_id": a["id"],
            "secret": {"replication": {"automatic": {}}, "labels": a.get("labels", {})}}))
    if op == "add_plain":
        return msg(client.add_secret_version(request={"parent": name, "payload": {"data": a["data"].encode()}}))
    if op == "add_crc":
        data = a["data"].encode()
        return msg(client.add_secret_version(request={
            "parent": name, "payload": {"data": data, "data_crc32c": a["crc"]}}))
    if op == "access":
        r = client.access_secret_version(request={"name": f"{name}/versions/{a['version']}"})
        return {"name": r.name, "data": r.payload.data.decode(), "crc": r.payload.data_crc32c}
    if op in ("enable", "disable", "destroy"):
        fn = getattr(client, f"{op}_secret_version")
        v = fn(request={"name": f"{name}/versions/{a['version']}"})
        return {"name": v.name, "state": v.state.name, "destroyed": v.destroy_time is not None and v.destroy_time.timestamp() > 0}
    if op == "get":
        s = client.get_secret(request={"name": name})
        return {"name": s.name, "labels": dict(s.labels), "automatic": "automatic" in s.replication}
    if op == "get_version":
        v = client.get_secret_version(request={"name": f"{name}/versions/{a['version']}"})
        return {"name": v.name, "state": v.state.name}
    if op == "list":
        return [s.name for s in client.list_secrets(request={"parent": PARENT, "page_size": a.get("page_size", 0)})]
    if op == "versions":
        return [[v.name, v.state.name] for v in client.list_secret_versions(request={"parent": name})]
    if op == "update_labels":
        s = client.update_secret(request={"secret": {"name": name, "labels": a["labels"]},
                                          "update_mask": {"paths": ["labels"]}})
        return {"labels": dict(s.labels)}
    if op == "grant":
        p = client.get_iam_policy(request={"resource": name})
        p.bindings.add(role="roles/secretmanager.secretAccessor", members=[a["member"]])
        p = client.set_iam_policy(request={"resource": name, "policy": p})
        return {"bindings": [[b.role, list(b.members)] for b in p.bindings], "etag": p.etag.hex()}
    if op == "stale_set":
        p = client.get_iam_policy(request={"resource": name})
        client.set_iam_policy(request={"resource": name, "policy": p})
        return msg(client.set_iam_policy(request={"resource": name, "policy": p}))
    if op == "test":
        r = client.test_iam_permissions(request={"resource": name, "permissions": a["permissions"]})
        return list(r.permissions)
    if op == "delete":
        client.delete_secret(request={"name": name})
        return {}
    raise ValueError(op)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        try:
            out = {"ok": run(body["op"], body.get("args", {}))}
        except exceptions.GoogleAPICallError as e:
            # Over REST, api_core picks the class from the HTTP status (400 → BadRequest,
            # 403 → Forbidden), as it does against Google; the envelope keeps the rpc status.
            status = e.response.json()["error"]["status"] if e.response is not None else None
            out = {"error": type(e).__name__, "code": e.code, "status": status, "message": e.message}
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
'''

SERVICE = """apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  annotations:
    run.googleapis.com/ingress: all
    run.googleapis.com/invoker-iam-disabled: 'true'
  name: {name}
  namespace: '{number}'
  labels:
    cloud.googleapis.com/location: us-central1
spec:
  template:
    spec:
      containers:
      - image: {name}
      serviceAccountName: {name}@{project}.iam.gserviceaccount.com
"""


def write_project(dest: Path) -> Path:
    (dest / "app").mkdir(parents=True)
    (dest / "services").mkdir()
    (dest / "app" / "app.py").write_text(APP)
    run = "".join(
        f"  {name}:\n    command: [{json.dumps(sys.executable)}, app.py]\n    dir: app\n" for name in ("owner", "stranger")
    )
    (dest / "moat.yaml").write_text(
        f"project: {{id: {PROJECT_ID}, number: '{NUMBER}', region: us-central1}}\n"
        "listeners:\n  internet: 127.0.0.1:0\n"
        "iam:\n  bindings:\n  - role: roles/secretmanager.admin\n"
        f"    members: ['serviceAccount:{OWNER}']\n"
        f"run:\n{run}"
    )
    for name in ("owner", "stranger"):
        (dest / "services" / f"{name}.yaml").write_text(SERVICE.format(name=name, number=NUMBER, project=PROJECT_ID))
    return dest


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    """`moat up` on the two-workload project until the module's tests are done."""
    tmp = tmp_path_factory.mktemp("sm")
    dest = write_project(tmp / "project")
    state = tmp / "state"
    with moat_up(dest, state, tmp, ready="ready: 2/2") as (lines, services):
        endpoint = (state / "secrets" / "endpoint").read_text().strip()
        listed = next(l.split()[1] for l in lines if l.split()[:1] == ["secrets"])
        assert endpoint == f"http://{listed}", (endpoint, listed)
        yield {"services": services, "endpoint": endpoint, "state": state, "tmp": tmp}
    assert not (state / "secrets" / "endpoint").exists(), "a clean stop removes the endpoint file"


def op(up, who: str, name: str, **args):
    """Runs one client call in `who`'s workload; its JSON outcome."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{up['services'][who]['port']}/op",
        data=json.dumps({"op": name, "args": args}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.load(resp)


def ok(up, who: str, name: str, **args):
    out = op(up, who, name, **args)
    assert "ok" in out, f"{who} {name} {args}: {out}"
    return out["ok"]


def test_a_workload_manages_and_reads_secrets_with_default_credentials(up):
    created = ok(up, "owner", "create", id="db-password", labels={"env": "dev"})
    assert created["name"] == f"projects/{NUMBER}/secrets/db-password"
    assert created["labels"] == {"env": "dev"}
    assert created["replication"] == {"automatic": {}}

    v1 = ok(up, "owner", "add_crc", id="db-password", data="hunter2", crc=1736498283)
    assert v1["name"] == f"projects/{NUMBER}/secrets/db-password/versions/1"
    assert v1["state"] == "ENABLED"
    assert v1["clientSpecifiedPayloadChecksum"] is True
    ok(up, "owner", "add_plain", id="db-password", data="hunter3")

    latest = ok(up, "owner", "access", id="db-password", version="latest")
    assert latest == {"name": f"projects/{NUMBER}/secrets/db-password/versions/2", "data": "hunter3", "crc": 2515230568}
    assert ok(up, "owner", "access", id="db-password", version="1")["data"] == "hunter2"

    got = ok(up, "owner", "get", id="db-password")
    assert got == {"name": f"projects/{NUMBER}/secrets/db-password", "labels": {"env": "dev"}, "automatic": True}
    assert ok(up, "owner", "update_labels", id="db-password", labels={"env": "prod"}) == {"labels": {"env": "prod"}}

    # A checksum that does not match the data is refused, and nothing is stored.
    bad = op(up, "owner", "add_crc", id="db-password", data="x", crc=1)
    assert (bad["error"], bad["status"]) == ("BadRequest", "INVALID_ARGUMENT"), bad

    assert ok(up, "owner", "disable", id="db-password", version="2")["state"] == "DISABLED"
    refused = op(up, "owner", "access", id="db-password", version="latest")
    assert (refused["error"], refused["code"], refused["status"]) == ("BadRequest", 400, "FAILED_PRECONDITION"), refused
    assert refused["message"].endswith(
        f": Secret Version [projects/{NUMBER}/secrets/db-password/versions/2] is in DISABLED state."
    ), refused
    assert ok(up, "owner", "enable", id="db-password", version="2")["state"] == "ENABLED"

    destroyed = ok(up, "owner", "destroy", id="db-password", version="1")
    assert destroyed == {"name": f"projects/{NUMBER}/secrets/db-password/versions/1", "state": "DESTROYED", "destroyed": True}
    gone = op(up, "owner", "access", id="db-password", version="1")
    assert gone["status"] == "FAILED_PRECONDITION" and gone["message"].endswith("is in DESTROYED state."), gone

    versions = ok(up, "owner", "versions", id="db-password")
    assert versions == [
        [f"projects/{NUMBER}/secrets/db-password/versions/2", "ENABLED"],
        [f"projects/{NUMBER}/secrets/db-password/versions/1", "DESTROYED"],
    ]
    assert ok(up, "owner", "get_version", id="db-password", version="latest")["state"] == "ENABLED"

    for extra in ("a-1", "a-2", "a-3"):
        ok(up, "owner", "create", id=extra)
    # The client's pager follows nextPageToken.
    listed = ok(up, "owner", "list", page_size=2)
    assert listed == [f"projects/{NUMBER}/secrets/{s}" for s in ("a-1", "a-2", "a-3", "db-password")]

    missing = op(up, "owner", "access", id="nope", version="1")
    assert (missing["error"], missing["code"], missing["status"]) == ("NotFound", 404, "NOT_FOUND"), missing
    dup = op(up, "owner", "create", id="db-password")
    assert (dup["error"], dup["status"]) == ("Conflict", "ALREADY_EXISTS"), dup


def test_iam_decides_what_another_workload_may_read(up):
    ok(up, "owner", "create", id="shared")
    ok(up, "owner", "add_plain", id="shared", data="for-the-stranger")

    denied = op(up, "stranger", "access", id="shared", version="latest")
    assert (denied["error"], denied["code"], denied["status"]) == ("Forbidden", 403, "PERMISSION_DENIED"), denied
    assert "secretmanager.versions.access" in denied["message"]
    assert op(up, "stranger", "create", id="mine")["status"] == "PERMISSION_DENIED"

    policy = ok(up, "owner", "grant", id="shared", member=f"serviceAccount:{STRANGER}")
    assert policy["bindings"] == [["roles/secretmanager.secretAccessor", [f"serviceAccount:{STRANGER}"]]]
    assert ok(up, "stranger", "access", id="shared", version="latest")["data"] == "for-the-stranger"
    held = ok(up, "stranger", "test", id="shared",
              permissions=["secretmanager.versions.access", "secretmanager.versions.add"])
    assert held == ["secretmanager.versions.access"]
    # Only on that secret.
    assert op(up, "stranger", "access", id="db-password", version="latest")["status"] == "PERMISSION_DENIED"

    # setIamPolicy with an etag that is no longer current: Aborted (409 → Conflict).
    stale = op(up, "owner", "stale_set", id="shared")
    assert (stale["error"], stale["code"], stale["status"]) == ("Conflict", 409, "ABORTED"), stale

    ok(up, "owner", "delete", id="shared")
    assert op(up, "owner", "get", id="shared")["error"] == "NotFound"


@pytest.fixture()
def gcloud() -> str:
    path = shutil.which("gcloud")
    if path is None:
        reason = "gcloud is not installed (it comes with the machine image, not from a registry)"
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    return path


def test_gcloud_secrets_commands(up, gcloud, tmp_path):
    mds = up["services"]["owner"]["metadata"]
    req = urllib.request.Request(
        f"http://{mds}/computeMetadata/v1/instance/service-accounts/default/token",
        headers={"Metadata-Flavor": "Google"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        token = json.load(resp)["access_token"]
    token_file = tmp_path / "token"
    token_file.write_text(token)
    config = tmp_path / "gcloud-config"
    config.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_ENV and not k.startswith("CLOUDSDK_")}
    env.update(
        CLOUDSDK_CONFIG=str(config),
        CLOUDSDK_CORE_DISABLE_USAGE_REPORTING="true",
        CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK="true",
        CLOUDSDK_CORE_DISABLE_PROMPTS="1",
        CLOUDSDK_API_ENDPOINT_OVERRIDES_SECRETMANAGER=up["endpoint"] + "/",
    )

    def g(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [gcloud, *args, f"--project={PROJECT_ID}", f"--access-token-file={token_file}"],
            env=env, input=stdin, capture_output=True, text=True, timeout=120,
        )

    out = g("secrets", "create", "gc-secret", "--data-file=-", "--labels=tool=gcloud", stdin="from-gcloud")
    assert out.returncode == 0, out.stderr
    out = g("secrets", "versions", "access", "latest", "--secret=gc-secret")
    assert (out.returncode, out.stdout) == (0, "from-gcloud"), out.stderr
    out = g("secrets", "versions", "add", "gc-secret", "--data-file=-", stdin="second")
    assert out.returncode == 0, out.stderr
    out = g("secrets", "versions", "disable", "2", "--secret=gc-secret")
    assert out.returncode == 0, out.stderr
    out = g("secrets", "versions", "access", "2", "--secret=gc-secret")
    assert out.returncode != 0 and "is in DISABLED state" in out.stderr, out.stderr
    out = g("secrets", "versions", "list", "gc-secret", "--format=json")
    assert out.returncode == 0, out.stderr
    states = {v["name"].rsplit("/", 1)[1]: v["state"] for v in json.loads(out.stdout)}
    assert states == {"1": "ENABLED", "2": "DISABLED"}
    out = g("secrets", "list", "--format=json")
    assert out.returncode == 0, out.stderr
    names = [s["name"] for s in json.loads(out.stdout)]
    assert f"projects/{NUMBER}/secrets/gc-secret" in names
    out = g("secrets", "describe", "gc-secret", "--format=json")
    assert out.returncode == 0 and json.loads(out.stdout)["labels"] == {"tool": "gcloud"}, out.stderr
    out = g("secrets", "add-iam-policy-binding", "gc-secret",
            f"--member=serviceAccount:{STRANGER}", "--role=roles/secretmanager.secretAccessor", "--format=json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["bindings"][0]["members"] == [f"serviceAccount:{STRANGER}"]
    out = g("secrets", "versions", "access", "latest", "--secret=nope")
    assert out.returncode != 0 and "NOT_FOUND" in out.stderr, out.stderr
    out = g("secrets", "delete", "gc-secret", "--quiet")
    assert out.returncode == 0, out.stderr
