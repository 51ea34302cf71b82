#!/usr/bin/python3
"""A stand-in Kubernetes API server for Broker's TokenReview tests.

    fake_k8s.py CERTDIR --bearer-file F --port-file F [--log F]

CERTDIR is a directory made by `tests/tools/issuer.py init` (server.pem, server.key, signed by its
ca.pem). HTTPS only. It serves

    POST /apis/authentication.k8s.io/v1/tokenreviews
        Authorization must be "Bearer <contents of --bearer-file>" (re-read per request, trailing
        newline dropped), else 401 with a Kubernetes Status object. The answer is a TokenReview:
        authenticated unless the token's sub or jti is "deleted"; status.audiences is the
        intersection of spec.audiences and the token's aud, as an audience-aware API server answers.
        The token's signature is not checked (the broker has verified it before asking).

and the test controls (no authentication):

    POST /_control/delete?sub=S | ?jti=J     the pod / service account is gone
    POST /_control/restore                   nothing is deleted any more
    POST /_control/outage?on=1|0             503 on reviews
    POST /_control/delay?ms=N                sleep before answering reviews
    POST /_control/unaware?on=1|0            answer without status.audiences (not audience-aware)
    GET  /_control/stats                     {"reviews": n, "unauthorized": n, "authenticated": n,
                                              "rejected": n, "last": {"audiences": [...], "sub": ...}}

Python 3 standard library only.
"""
import argparse
import base64
import http.server
import json
import os
import signal
import ssl
import sys
import threading
import time
import urllib.parse

REVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"


def write_atomic(path, text):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def token_claims(tok):
    try:
        p = tok.split(".")[1]
        p += "=" * (-len(p) % 4)
        c = json.loads(base64.urlsafe_b64decode(p))
        return c if isinstance(c, dict) else {}
    except (IndexError, ValueError):
        return {}


class State:
    def __init__(self, bearer_file, log):
        self.lock = threading.Lock()
        self.bearer_file = bearer_file
        self.deleted_subs = set()
        self.deleted_jtis = set()
        self.outage = False
        self.unaware = False
        self.delay_ms = 0
        self.stats = {"reviews": 0, "unauthorized": 0, "authenticated": 0, "rejected": 0, "last": None}
        self.log = open(log, "a", buffering=1) if log else None

    def bearer(self):
        try:
            with open(self.bearer_file) as f:
                return f.read().rstrip("\r\n")
        except OSError:
            return None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-kube-apiserver"
    sys_version = ""
    timeout = 30

    @property
    def st(self):
        return self.server.state

    def log_message(self, fmt, *args):
        if self.st.log:
            self.st.log.write("%s %s\n" % (time.strftime("%H:%M:%S"), fmt % args))

    def send_json(self, code, obj):
        body = (json.dumps(obj) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if 0 < n <= 1 << 20 else b""

    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        if u.path == "/_control/stats":
            with self.st.lock:
                return self.send_json(200, self.st.stats)
        return self.send_json(404, {"kind": "Status", "code": 404})

    def do_POST(self):
        u = urllib.parse.urlsplit(self.path)
        body = self.read_body()
        if u.path == REVIEW_PATH:
            return self.review(body)
        q = dict(urllib.parse.parse_qsl(u.query))
        with self.st.lock:
            if u.path == "/_control/delete":
                if "sub" in q:
                    self.st.deleted_subs.add(q["sub"])
                if "jti" in q:
                    self.st.deleted_jtis.add(q["jti"])
            elif u.path == "/_control/restore":
                self.st.deleted_subs.clear()
                self.st.deleted_jtis.clear()
            elif u.path == "/_control/outage":
                self.st.outage = q.get("on") == "1"
            elif u.path == "/_control/unaware":
                self.st.unaware = q.get("on") == "1"
            elif u.path == "/_control/delay":
                self.st.delay_ms = int(q.get("ms", "0"))
            else:
                return self.send_json(404, {"kind": "Status", "code": 404})
        return self.send_json(200, {"ok": True})

    def review(self, body):
        st = self.st
        want = st.bearer()
        got = self.headers.get("Authorization", "")
        with st.lock:
            st.stats["reviews"] += 1
            outage, delay, unaware = st.outage, st.delay_ms, st.unaware
        if delay:
            time.sleep(delay / 1000.0)
        if want is None or got != "Bearer " + want:
            with st.lock:
                st.stats["unauthorized"] += 1
            return self.send_json(401, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                        "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
        if outage:
            return self.send_json(503, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 503})
        try:
            req = json.loads(body)
            assert req["apiVersion"] == "authentication.k8s.io/v1" and req["kind"] == "TokenReview"
            tok = req["spec"]["token"]
            assert isinstance(tok, str) and tok
            spec_aud = req["spec"].get("audiences") or ["https://kubernetes.default.svc"]
        except (ValueError, KeyError, TypeError, AssertionError):
            return self.send_json(400, {"kind": "Status", "status": "Failure", "code": 400})
        claims = token_claims(tok)
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        matched = [a for a in spec_aud if a in auds]
        with st.lock:
            gone = claims.get("sub") in st.deleted_subs or claims.get("jti") in st.deleted_jtis
            st.stats["last"] = {"audiences": spec_aud, "sub": claims.get("sub")}
        status = {}
        if gone:
            status["error"] = "[invalid bearer token, service account token has been invalidated]"
        elif not matched:
            status["error"] = "[invalid bearer token, token audiences do not match]"
        else:
            sub = claims.get("sub", "")
            status = {"authenticated": True, "user": {"username": sub, "uid": "0000",
                                                      "groups": ["system:serviceaccounts"]}}
            if not unaware:
                status["audiences"] = matched
        with st.lock:
            st.stats["authenticated" if status.get("authenticated") else "rejected"] += 1
        # authenticated is omitted when false, as the API server does (omitempty)
        self.send_json(201, {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
                             "metadata": {"creationTimestamp": None},
                             "spec": {"token": "", "audiences": spec_aud}, "status": status})


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        if self.state.log:
            self.state.log.write("error from %s: %s\n" % (client_address[0], sys.exc_info()[1]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("certdir")
    ap.add_argument("--bearer-file", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log")
    args = ap.parse_args()
    d = os.path.abspath(args.certdir)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(os.path.join(d, "server.pem"), os.path.join(d, "server.key"))
    srv = Server(("127.0.0.1", args.port), Handler)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    srv.state = State(args.bearer_file, args.log)
    write_atomic(args.port_file, "%d\n" % srv.server_address[1])

    def on_term(signum, frame):
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    srv.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
