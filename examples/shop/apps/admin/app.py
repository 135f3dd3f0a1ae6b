"""The back office: internal ingress, default URL disabled, reachable only through the internal
load balancer admin-ilb from the VPC, invoked by the shop admins group.

Stdlib only. Listens on 127.0.0.1:$PORT rather than 0.0.0.0 (see apps/api/app.py for why).
"""

import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        data = b"shop admin\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
