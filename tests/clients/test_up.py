"""`moat up` with workloads that use unmodified google-auth: `fetch_id_token` from the instance's
own metadata server, then a call to another service's run.app host through $HTTP_PROXY (the
front door's listener for the caller). spec/cloudrun.md §9: the call gets through (200); a
wrong audience is a 401; a caller without the invoker binding gets a 403; a caller without VPC
egress calling an internal service gets a 404.

The project is a temporary copy of crates/moat/tests/fixtures/up plus a `stranger` service
(VPC egress, no binding on `backend`); its workloads run with this venv's interpreter, which
has google-auth and requests."""

from __future__ import annotations

import json
import os
import shutil
import sys
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO, moat_up

FIXTURE = REPO / "crates" / "moat" / "tests" / "fixtures" / "up"

APP = '''
import json, os, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import google.auth.transport.requests
import google.oauth2.id_token
import requests


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        path, _, query = self.path.partition("?")
        q = urllib.parse.parse_qs(query)
        if path == "/call":
            url = os.environ["MOAT_URL_" + q["service"][0].upper()]
            audience = q.get("audience", [url])[0]
            token = google.oauth2.id_token.fetch_id_token(google.auth.transport.requests.Request(), audience)
            resp = requests.get("http://" + url.split("://", 1)[1] + "/",
                                headers={"Authorization": "Bearer " + token}, timeout=10)
            out = {"status": resp.status_code, "body": resp.text}
        else:
            out = {"service": os.environ["K_SERVICE"], "authorization": self.headers.get("Authorization", "")}
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
'''

STRANGER = """apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  annotations:
    run.googleapis.com/ingress: all
    run.googleapis.com/invoker-iam-disabled: 'true'
  name: stranger
  namespace: '100000000001'
  labels:
    cloud.googleapis.com/location: us-central1
spec:
  template:
    metadata:
      annotations:
        run.googleapis.com/network-interfaces: '[{"network": "vpc", "subnetwork": "run"}]'
        run.googleapis.com/vpc-access-egress: all-traffic
    spec:
      containers:
      - image: stranger
      serviceAccountName: stranger@up-proj.iam.gserviceaccount.com
"""


def project(tmp: Path) -> Path:
    dest = tmp / "project"
    shutil.copytree(FIXTURE, dest)
    (dest / "app" / "app.py").write_text(APP)
    (dest / "services" / "stranger.yaml").write_text(STRANGER)
    text = (dest / "moat.yaml").read_text()
    # The venv's interpreter: it has google-auth; quoted so YAML keeps the path as one string.
    text = text.replace("command: [python3, app.py]", f"command: [{json.dumps(sys.executable)}, app.py]")
    text += f"  stranger:\n    command: [{json.dumps(sys.executable)}, app.py]\n    dir: app\n"
    (dest / "moat.yaml").write_text(text)
    return dest


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    """`moat up` on the temporary project until the module's tests are done."""
    tmp = tmp_path_factory.mktemp("up")
    dest = project(tmp)
    with moat_up(dest, tmp / "state", tmp, ready="ready: 4/4") as (_, services):
        yield services


def call(up, caller: str, service: str, audience: str | None = None) -> dict:
    """Asks `caller`'s workload (directly on its instance port) to call `service`."""
    query = f"service={service}" + (f"&audience={urllib.request.quote(audience, safe='')}" if audience else "")
    with urllib.request.urlopen(f"http://127.0.0.1:{up[caller]['port']}/call?{query}", timeout=30) as resp:
        return json.load(resp)


def test_fetch_id_token_then_call_through_the_front_door(up):
    out = call(up, "caller", "backend")
    assert out["status"] == 200, out
    body = json.loads(out["body"])
    assert body["service"] == "backend"
    # The backend sees the verified token with its signature removed, as on Cloud Run.
    assert body["authorization"].endswith(".SIGNATURE_REMOVED_BY_GOOGLE")


def test_wrong_audience_is_a_401(up):
    out = call(up, "caller", "backend", audience="https://lonely-100000000001.us-central1.run.app")
    assert out["status"] == 401, out


def test_no_invoker_binding_is_a_403(up):
    out = call(up, "stranger", "backend")
    assert out["status"] == 403, out


def test_no_vpc_egress_to_an_internal_service_is_a_404(up):
    out = call(up, "lonely", "backend")
    assert out["status"] == 404, out
