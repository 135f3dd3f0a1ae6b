"""The status page: ingress `all`, invoked by the shop admins and the API's service account.

Stdlib only. `/` answers the caller; `/api` tries to call the API the way web does (an ID token
from its own metadata server, through $HTTP_PROXY). It fails with a 404: this service has no VPC
egress, so its calls leave from the internet, and the API's ingress is internal
(`moat explain examples/shop --service api --from service:status`).

Listens on 127.0.0.1:$PORT rather than 0.0.0.0 (see apps/api/app.py for why).
"""

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def id_token(audience: str) -> str:
    url = "http://{}/computeMetadata/v1/instance/service-accounts/default/identity?audience={}".format(
        os.environ["GCE_METADATA_HOST"], urllib.parse.quote(audience, safe="")
    )
    req = urllib.request.Request(url, headers={"Metadata-Flavor": "Google"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.read().decode()


def call(url: str) -> int:
    target = "http://" + url.split("://", 1)[-1]
    req = urllib.request.Request(target, headers={"Authorization": "Bearer " + id_token(url)})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/api":
            api = os.environ["MOAT_URL_API"]
            result = {"call": "status -> api", "url": api, "status": call(api)}
        else:
            result = {"service": os.environ.get("K_SERVICE"), "status": "all systems normal"}
        data = (json.dumps(result) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
