#!/usr/bin/env python3
"""A small HTTP server for kiln's pull tests.

Serves DIR on 127.0.0.1 at a free port, which it prints on stdout as the
first line. It honours "Range: bytes=N-" (206 Partial Content), so a broken
download can resume, and logs "PATH RANGE" per request to LOG. A fault file
FILE.truncate-at holding N makes it announce FILE's full length but send
only its first N bytes and then close the connection: a truncated download.

Usage: http_server.py DIR LOG
"""
import http.server
import os
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        root, log = self.server.root, self.server.log
        path = os.path.normpath(os.path.join(root, self.path.split("?")[0].lstrip("/")))
        range_header = self.headers.get("Range", "-")
        with open(log, "a") as out:
            out.write(f"{self.path} {range_header}\n")
        if not path.startswith(root) or not os.path.isfile(path):
            self.send_error(404, "Not Found")
            return
        with open(path, "rb") as f:
            data = f.read()
        start = 0
        if range_header.startswith("bytes=") and range_header.endswith("-"):
            start = int(range_header[len("bytes="):-1])
            if start >= len(data):
                self.send_error(416, "Range Not Satisfiable")
                return
        cut = len(data)
        if os.path.exists(path + ".truncate-at"):
            with open(path + ".truncate-at") as f:
                cut = int(f.read().strip())
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.wfile.write(data[start:max(start, cut)])
        if cut < len(data):
            self.wfile.flush()
            self.close_connection = True

    def log_message(self, *args):
        pass


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.root = os.path.realpath(sys.argv[1])
    server.log = sys.argv[2]
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
