"""The order worker: internal ingress, pushed to by Pub/Sub (the pubsub-push service account).

Stdlib only: acknowledges each push with a 204. Its database password is the env var
DB_PASSWORD, from secret `db-password` pinned to version 1 (services/orders.json): read once,
when the instance starts, and fixed for the instance's life, whatever happens to the secret
afterwards. If it cannot be read (the version disabled, the grant removed), the instance does
not start. GET /secret-fingerprint shows a SHA-256 prefix of the value it started with (never
the value) next to what `latest` is now in Secret Manager, read through the API at
$MOAT_SECRETMANAGER_ENDPOINT (Google's endpoint on Cloud Run).

Listens on 127.0.0.1:$PORT rather than 0.0.0.0 (see apps/api/app.py for why).
"""

import base64
import hashlib
import json
import os
import sys
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET_MANAGER = os.environ.get("MOAT_SECRETMANAGER_ENDPOINT", "https://secretmanager.googleapis.com")


def fingerprint(data: bytes) -> str:
    """Enough of a SHA-256 to tell versions apart; never the value."""
    return hashlib.sha256(data).hexdigest()[:12]


def metadata(path: str) -> str:
    req = urllib.request.Request(
        "http://{}/computeMetadata/v1/{}".format(os.environ["GCE_METADATA_HOST"], path),
        headers={"Metadata-Flavor": "Google"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.read().decode()


def latest(secret: str) -> dict:
    """The version `latest` is now and its fingerprint, read as this service's account."""
    try:
        token = json.loads(metadata("instance/service-accounts/default/token"))["access_token"]
        url = "{}/v1/projects/{}/secrets/{}/versions/latest:access".format(
            SECRET_MANAGER, metadata("project/project-id"), secret
        )
        req = urllib.request.Request(url, headers={"Authorization": "Bearer " + token})
        with urllib.request.urlopen(req, timeout=5) as resp:
            body = json.loads(resp.read())
        data = base64.b64decode(body["payload"]["data"])
        return {"version": body["name"].rsplit("/", 1)[-1], "sha256": fingerprint(data)}
    except urllib.error.HTTPError as e:
        return {"error": "{} {}".format(e.code, e.reason)}
    except (urllib.error.URLError, OSError, KeyError, ValueError) as e:
        return {"error": str(e)}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        print(f"orders: push of {length} bytes", file=sys.stderr)
        self.send_response(204)
        self.end_headers()

    def do_GET(self):
        if self.path == "/secret-fingerprint":
            value = os.environ.get("DB_PASSWORD")
            out = {
                "env": "DB_PASSWORD",
                "secret": "db-password",
                "read": "once, when this instance started",
                "sha256": fingerprint(value.encode()) if value is not None else None,
                "latest": latest("db-password"),
            }
            data = json.dumps(out).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        else:
            data = b"orders worker: POST Pub/Sub push messages to /\n"
            self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
