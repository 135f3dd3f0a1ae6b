"""The shop API: internal ingress, invoked only by the web storefront's service account.

Stdlib only. It shows who called it: the front door verified the caller's ID token and passed it
on with its signature removed (as Cloud Run does), so the claims are readable but the token
cannot be replayed.

Its `api-key` secret is mounted as a file at /secrets/api-key (services/api.yaml). On Cloud Run
that is the path; under moat it is the same path under $MOAT_MOUNT_ROOT, the instance's private
mount directory, so `MOUNT_ROOT + "/secrets/api-key"` works in both places. The file follows
the secret: a new version replaces it, a disabled one removes it, and it is read on every
request. GET /secret-fingerprint shows a SHA-256 prefix of what the file holds (never the
value) next to what `latest` is in Secret Manager, read through the API at
$MOAT_SECRETMANAGER_ENDPOINT (Google's endpoint on Cloud Run).

Listens on 127.0.0.1:$PORT rather than the contract's 0.0.0.0: on a developer machine 0.0.0.0
would let the local network reach the workload without passing the front door, which Cloud
Run's network never allows.
"""

import base64
import hashlib
import json
import os
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Unset on Cloud Run, where volumes are mounted at their own paths.
MOUNT_ROOT = os.environ.get("MOAT_MOUNT_ROOT", "")
API_KEY_FILE = MOUNT_ROOT + "/secrets/api-key"
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


def api_key_fingerprint() -> dict:
    """What the mounted file holds now, read afresh (a rotation replaces it)."""
    out = {"secret": "api-key", "file": "/secrets/api-key"}
    try:
        with open(API_KEY_FILE, "rb") as f:
            out["sha256"] = fingerprint(f.read())
    except OSError as e:
        out["error"] = e.strerror
    out["latest"] = latest("api-key")
    if "sha256" in out and out["latest"].get("sha256") == out["sha256"]:
        out["version"] = out["latest"]["version"]
    return out


def claims(header: str) -> dict:
    """The payload of `Bearer HEADER.PAYLOAD.SIGNATURE_REMOVED_BY_GOOGLE`, unverified: the front
    door verified it."""
    try:
        payload = header.split(" ", 1)[1].split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/secret-fingerprint":
            self.reply(api_key_fingerprint())
            return
        c = claims(self.headers.get("Authorization", ""))
        self.reply(
            {
                "service": os.environ.get("K_SERVICE"),
                "revision": os.environ.get("K_REVISION"),
                "caller": c.get("email"),
                "audience": c.get("aud"),
                "products": ["coffee", "tea"],
            }
        )

    def reply(self, out: dict):
        body = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
