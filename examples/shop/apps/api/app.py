"""The shop API: internal ingress, invoked only by the web storefront's service account.

Stdlib only. It shows who called it: the front door verified the caller's ID token and passed it
on with its signature removed (as Cloud Run does), so the claims are readable but the token
cannot be replayed. It reads no secrets yet: STRIPE_KEY and the db-password volume come from
the secret store, which moat does not have yet, and moat never fakes a secret.

Listens on 127.0.0.1:$PORT rather than the contract's 0.0.0.0: on a developer machine 0.0.0.0
would let the local network reach the workload without passing the front door, which Cloud
Run's network never allows.
"""

import base64
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


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
        c = claims(self.headers.get("Authorization", ""))
        body = json.dumps(
            {
                "service": os.environ.get("K_SERVICE"),
                "revision": os.environ.get("K_REVISION"),
                "caller": c.get("email"),
                "audience": c.get("aud"),
                "products": ["coffee", "tea"],
                "secrets": "not read: STRIPE_KEY and db-password come from the secret store, not built yet",
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
