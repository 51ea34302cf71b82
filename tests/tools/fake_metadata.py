#!/usr/bin/env python3
"""A tiny stand-in for the ambient-token sources `broker exchange` talks to (tests only).

    fake_metadata.py ISSUER_DIR --iss URL --port-file F --gh-bearer SECRET [--broker URL] [--log F]

    GET  /gh/token?...&audience=AUD        GitHub Actions' ID token request URL: needs
                                           "Authorization: Bearer SECRET"; answers {"value": JWT}
    GET  /computeMetadata/v1/instance/service-accounts/default/identity?audience=AUD&format=full
                                           GCP metadata: needs "Metadata-Flavor: Google"; answers the JWT
    POST /flaky/v1/token                   503, 503, then 429 (Retry-After: 1), then forwards the
                                           request to --broker and relays the answer
    POST /huge/v1/token                    200 with a body larger than 64 KiB

Tokens are minted with tests/tools/issuer.py (--preset github-actions --aud AUD --iss URL).
Every request is appended to --log as "METHOD PATH" (audiences included, never tokens).
Python 3 standard library only.
"""
import argparse
import json
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
ARGS = None
FLAKY = {"n": 0}


def mint(aud):
    out = subprocess.run([sys.executable, os.path.join(HERE, "issuer.py"), "mint", ARGS.issuer_dir,
                          "--preset", "github-actions", "--aud", aud, "--iss", ARGS.iss],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):
        pass

    def send(self, status, body, ctype="application/json", headers=None):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def record(self):
        if ARGS.log:
            with open(ARGS.log, "a") as f:
                f.write("%s %s\n" % (self.command, self.path))

    def do_GET(self):
        self.record()
        u = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(u.query)
        aud = q.get("audience", [""])[0]
        if u.path == "/gh/token":
            if self.headers.get("Authorization") != "Bearer " + ARGS.gh_bearer:
                return self.send(401, '{"message": "bad bearer"}')
            if not aud:
                return self.send(400, '{"message": "no audience"}')
            return self.send(200, json.dumps({"count": 1, "value": mint(aud)}))
        if u.path == "/computeMetadata/v1/instance/service-accounts/default/identity":
            if self.headers.get("Metadata-Flavor") != "Google":
                return self.send(403, "Missing Metadata-Flavor:Google header.", "text/html")
            if not aud or q.get("format", [""])[0] != "full":
                return self.send(400, "non-empty audience and format=full required", "text/html")
            return self.send(200, mint(aud), "application/text")
        return self.send(404, "{}")

    def do_POST(self):
        self.record()
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        if self.path == "/huge/v1/token":
            return self.send(200, '{"access_token": "' + "a" * 70000 + '"}')
        if self.path != "/flaky/v1/token":
            return self.send(404, "{}")
        FLAKY["n"] += 1
        if FLAKY["n"] <= 2:
            return self.send(503, '{"error": "temporarily_unavailable"}')
        if FLAKY["n"] == 3:
            return self.send(429, '{"error": "slow_down"}', headers={"Retry-After": "1"})
        req = urllib.request.Request(ARGS.broker + "/v1/token", data=body, method="POST",
                                     headers={"Content-Type": self.headers.get("Content-Type", "")})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return self.send(r.status, r.read())
        except urllib.error.HTTPError as e:
            return self.send(e.code, e.read())


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("issuer_dir")
    p.add_argument("--iss", required=True)
    p.add_argument("--port-file", required=True)
    p.add_argument("--gh-bearer", required=True)
    p.add_argument("--broker", default="")
    p.add_argument("--log", default="")
    ARGS = p.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tmp = ARGS.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(tmp, ARGS.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
