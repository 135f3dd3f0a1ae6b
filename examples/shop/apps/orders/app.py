"""The order worker: internal ingress, pushed to by Pub/Sub (the pubsub-push service account).

Stdlib only: acknowledges each push with a 204. Its database password comes from the secret
store, which moat does not have yet; DB_PASSWORD is left unset rather than faked.

Listens on 127.0.0.1:$PORT rather than 0.0.0.0 (see apps/api/app.py for why).
"""

import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        print(f"orders: push of {length} bytes", file=sys.stderr)
        self.send_response(204)
        self.end_headers()

    def do_GET(self):
        data = b"orders worker: POST Pub/Sub push messages to /\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
