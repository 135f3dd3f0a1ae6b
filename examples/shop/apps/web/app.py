"""The shop storefront: public through the shop-edge load balancer, and a caller of the API.

Stdlib only. On every page it calls the API the way a Cloud Run service does: an ID token for
the API's URL from its own metadata server ($GCE_METADATA_HOST), then the API's run.app host.
Locally the call is plain http:// and goes through $HTTP_PROXY, which moat points at this
service's egress proxy: the proxy hands calls for moat services to the front door, which sees
the call coming from web's VPC egress and decides it exactly as
`moat explain --service api --from service:web` does. The token's audience is the API's https:// URL, as on Cloud Run.

Listens on 127.0.0.1:$PORT rather than 0.0.0.0 (see apps/api/app.py for why).
"""

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API_URL = os.environ.get("API_URL") or os.environ["MOAT_URL_API"]


def id_token(audience: str) -> str:
    url = "http://{}/computeMetadata/v1/instance/service-accounts/default/identity?audience={}".format(
        os.environ["GCE_METADATA_HOST"], urllib.parse.quote(audience, safe="")
    )
    req = urllib.request.Request(url, headers={"Metadata-Flavor": "Google"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.read().decode()


def call(url: str) -> tuple[int, str]:
    """GET `url` (its http:// form) with an ID token whose audience is `url`."""
    target = "http://" + url.split("://", 1)[-1]
    req = urllib.request.Request(target, headers={"Authorization": "Bearer " + id_token(url)})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as e:
        return 0, str(e)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        status, body = call(API_URL)
        page = "shop web ({})\nweb -> api {}: {}\n{}\n".format(
            os.environ.get("K_REVISION"), API_URL, status, body.strip()[:400]
        )
        data = page.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
