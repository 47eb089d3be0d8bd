#!/usr/bin/python3
"""Loopback HTTP server for tests/test_download.cpp.

Usage: http_fixture.py ROOT [LIFETIME_S]

Serves the files in ROOT on 127.0.0.1 at an ephemeral port and prints "PORT <n>" on stdout as
soon as it listens. Paths:
  /<name>            the file, or 404 when it does not exist
  /truncate/<name>   the file's headers with a Content-Length 1000 bytes too large, then half of
                     its body, then the connection is closed: a transfer cut short
The server exits by itself after LIFETIME_S seconds (default 120), so a crashed test cannot
leave it behind. Python standard library only.
"""

import http.server
import os
import sys
import threading


class Handler(http.server.BaseHTTPRequestHandler):
    root = "."

    def log_message(self, format, *args):  # keep the test output clean
        pass

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        truncate = path.startswith("/truncate/")
        if truncate:
            path = path[len("/truncate"):]
        name = path.lstrip("/")
        full = os.path.join(self.root, name)
        if "/" in name or name in ("", ".", "..") or not os.path.isfile(full):
            self.send_error(404, "Not Found")
            return
        with open(full, "rb") as f:
            body = f.read()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body) + (1000 if truncate else 0)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if truncate else body)
        self.wfile.flush()
        if truncate:
            self.close_connection = True


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    Handler.root = sys.argv[1]
    lifetime = float(sys.argv[2]) if len(sys.argv) == 3 else 120.0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    timer = threading.Timer(lifetime, server.shutdown)
    timer.daemon = True
    timer.start()
    print("PORT", server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
