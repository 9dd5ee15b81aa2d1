#!/usr/bin/env python3
"""A small HTTP server for kiln's pull and container tests.

Serves DIR on 127.0.0.1 at a free port, which it prints on stdout as the
first line. It honours "Range: bytes=N-" (206 Partial Content), so a broken
download can resume, and logs "METHOD PATH RANGE" per request to LOG. A
fault file FILE.truncate-at holding N makes it announce FILE's full length
but send only its first N bytes and then close the connection: a truncated
download. FILE.endless makes it answer FILE with no Content-Length and
then zeros without end, and FILE.trickle with FILE's length and then two
bytes a second: a server that would fill the disk, and one that would keep
a client waiting for ever. PUT stores the request body as that file, creating its
directories (201), as uploads by `kiln container` do.

Usage: http_server.py DIR LOG
"""
import http.server
import os
import sys
import time


class Handler(http.server.BaseHTTPRequestHandler):
    # HTTP/1.1 answers the "Expect: 100-continue" of curl's large uploads.
    protocol_version = "HTTP/1.1"

    def target(self):
        """The file a request names, logged; None outside DIR."""
        root = self.server.root
        path = os.path.normpath(os.path.join(root, self.path.split("?")[0].lstrip("/")))
        with open(self.server.log, "a") as out:
            out.write(f"{self.command} {self.path} {self.headers.get('Range', '-')}\n")
        return path if path.startswith(root + os.sep) else None

    def do_GET(self):
        path = self.target()
        range_header = self.headers.get("Range", "-")
        if path is None or not os.path.isfile(path):
            self.send_error(404, "Not Found")
            return
        if os.path.exists(path + ".endless"):
            self.send_endless()
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
        if os.path.exists(path + ".trickle"):
            self.send_slowly(data[start:])
            return
        self.wfile.write(data[start:max(start, cut)])
        if cut < len(data):
            self.wfile.flush()
            self.close_connection = True

    def send_endless(self):
        """A body without a length that never ends, until the client goes."""
        self.send_response(200)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        block = bytes(64 * 1024)
        try:
            while True:
                self.wfile.write(block)
        except OSError:
            pass

    def send_slowly(self, data):
        """Two bytes a second, until the client goes."""
        self.close_connection = True
        try:
            for at in range(0, len(data), 2):
                self.wfile.write(data[at:at + 2])
                self.wfile.flush()
                time.sleep(1)
        except OSError:
            pass

    def do_PUT(self):
        path = self.target()
        if path is None:
            self.send_error(403, "Forbidden")
            return
        length = int(self.headers.get("Content-Length", "0"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(self.rfile.read(length))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.root = os.path.realpath(sys.argv[1])
    server.log = sys.argv[2]
    open(server.log, "a").close()
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
