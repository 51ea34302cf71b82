#!/usr/bin/python3
"""A local OIDC issuer for Broker's tests and `make demo`.

    issuer.py init DIR                      test CA, server cert, signing keys k1/k2, state.json
    issuer.py serve DIR --port P [--issuer URL]
    issuer.py mint DIR [--kid K] [--alg RS256] [--claims JSON] [--preset github-actions] ...

`serve` speaks HTTPS only (the broker refuses anything else) and re-reads DIR/state.json on every
request, so a test changes behaviour by editing it or through the /_control endpoints:

    POST /_control/rotate                   activate the next key (generated when missing), publish it
    POST /_control/outage?on=1|0            503 on discovery and JWKS
    POST /_control/delay?ms=N               sleep before answering discovery and JWKS
    POST /_control/publish?kids=k1,k2       the kids served in the JWKS
    POST /_control/override?tenant=T&issuer=..&jwks_uri=..&jwks_pad=N&status=N&redirect=1
                            &location=URL&jwks_keys=N&cache_control=V&require_bearer=TOK&header_pad=N
                                            per-tenant lies for hostile tests (issuer mismatch,
                                            http jwks_uri, oversized JWKS, errors, redirects to this
                                            host or to URL, N copies of the first published key
                                            (kids KID-0..), the JWKS's Cache-Control (default
                                            no-store; "none": no header), 401 on discovery and JWKS
                                            without "Authorization: Bearer TOK", an N-byte header);
                                            no parameters besides tenant clears them
    GET  /_control/stats                    {"discovery": n, "jwks": n, "paths": {path: n},
                                             "authorized": {path: requests with Authorization}}

Tenants: besides the root issuer (https://127.0.0.1:P), every path prefix /t/NAME is an issuer of
its own (https://127.0.0.1:P/t/NAME) with the same keys, so tests can register many independent
issuers against one server.

Python 3 standard library + python3-cryptography only.
"""
import argparse
import base64
import datetime
import hashlib
import hmac
import http.server
import ipaddress
import json
import os
import signal
import ssl
import sys
import threading
import time
import urllib.parse
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_STATE = {"active": "k1", "published": ["k1"], "outage": False, "delay_ms": 0}


# ---------------------------------------------------------------- files and state

def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def write_private(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def write_atomic(path, text):
    tmp = "%s.tmp.%d.%d" % (path, os.getpid(), threading.get_ident())
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def read_state(d):
    try:
        with open(os.path.join(d, "state.json")) as f:
            st = json.load(f)
    except (OSError, ValueError):
        st = {}
    for k, v in DEFAULT_STATE.items():
        st.setdefault(k, v)
    st.setdefault("overrides", {})
    return st


def write_state(d, st):
    write_atomic(os.path.join(d, "state.json"), json.dumps(st, indent=1, sort_keys=True) + "\n")


def key_path(d, kid):
    if not kid or "/" in kid or kid.startswith("."):
        raise ValueError("bad kid %r" % kid)
    return os.path.join(d, "keys", kid + ".pem")


def load_private(path):
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def new_rsa(d, kid):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write_private(key_path(d, kid), key.private_bytes(serialization.Encoding.PEM,
                                                     serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    return key


def public_jwk(key, kid):
    pub = key.public_key()
    if isinstance(pub, rsa.RSAPublicKey):
        nums = pub.public_numbers()
        n = nums.n.to_bytes((nums.n.bit_length() + 7) // 8, "big")
        e = nums.e.to_bytes((nums.e.bit_length() + 7) // 8, "big")
        return {"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": b64u(n), "e": b64u(e)}
    if isinstance(pub, ec.EllipticCurvePublicKey):
        size = (pub.curve.key_size + 7) // 8
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[pub.curve.name]
        alg = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}[crv]
        nums = pub.public_numbers()
        return {"kty": "EC", "kid": kid, "alg": alg, "use": "sig", "crv": crv,
                "x": b64u(nums.x.to_bytes(size, "big")), "y": b64u(nums.y.to_bytes(size, "big"))}
    if isinstance(pub, ed25519.Ed25519PublicKey):
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "kid": kid, "alg": "EdDSA", "use": "sig", "crv": "Ed25519", "x": b64u(raw)}
    raise ValueError("unsupported key type")


# ---------------------------------------------------------------- init

def make_cert(subject_cn, pub, issuer_name, issuer_key, ca, sans=None, days=3650):
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)])
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name or name)
         .public_key(pub).serial_number(x509.random_serial_number())
         .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False))
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                          key_encipherment=False, data_encipherment=False,
                                          key_agreement=False, key_cert_sign=True, crl_sign=True,
                                          encipher_only=False, decipher_only=False), critical=True)
    else:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                          key_encipherment=False, data_encipherment=False,
                                          key_agreement=False, key_cert_sign=False, crl_sign=False,
                                          encipher_only=False, decipher_only=False), critical=True)
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                            critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def cmd_init(args):
    d = os.path.abspath(args.dir)
    os.makedirs(os.path.join(d, "keys"), exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = make_cert("Broker test CA %s" % uuid.uuid4().hex[:8], ca_key.public_key(), None, ca_key, True)
    srv_key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    srv = make_cert("localhost", srv_key.public_key(), ca.subject, ca_key, False, sans, days=825)
    pem = serialization.Encoding.PEM
    pk8 = (serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write_private(os.path.join(d, "ca.key"), ca_key.private_bytes(pem, *pk8))
    with open(os.path.join(d, "ca.pem"), "wb") as f:
        f.write(ca.public_bytes(pem))
    write_private(os.path.join(d, "server.key"), srv_key.private_bytes(pem, *pk8))
    with open(os.path.join(d, "server.pem"), "wb") as f:
        f.write(srv.public_bytes(pem))
    for kid in ("k1", "k2"):
        new_rsa(d, kid)
    write_state(d, dict(DEFAULT_STATE))
    print(d)


# ---------------------------------------------------------------- serve

class Issuer:
    """Shared server state: the directory, stats and a lock for state.json writes."""

    def __init__(self, d, base):
        self.dir = d
        self.base = base
        self.lock = threading.Lock()
        self.stats = {"discovery": 0, "jwks": 0, "paths": {}, "authorized": {}}
        self.log = open(os.path.join(d, "issuer.log"), "a", buffering=1)
        self.jwk_cache = {}  # kid -> (mtime, jwk): parsing an RSA key per request is slow

    def count(self, kind, path, authorized=False):
        with self.lock:
            self.stats[kind] += 1
            self.stats["paths"][path] = self.stats["paths"].get(path, 0) + 1
            if authorized:
                self.stats["authorized"][path] = self.stats["authorized"].get(path, 0) + 1

    def jwk(self, kid):
        p = key_path(self.dir, kid)
        mtime = os.stat(p).st_mtime_ns
        with self.lock:
            hit = self.jwk_cache.get(kid)
        if hit and hit[0] == mtime:
            return hit[1]
        j = public_jwk(load_private(p), kid)
        with self.lock:
            self.jwk_cache[kid] = (mtime, j)
        return j

    def update_state(self, fn):
        with self.lock:
            st = read_state(self.dir)
            fn(st)
            write_state(self.dir, st)
            return st


def next_kid(d, st):
    """The kid after the active one: kN -> kN+1 (generating the key when it does not exist)."""
    nums = []
    for name in os.listdir(os.path.join(d, "keys")):
        if name.startswith("k") and name.endswith(".pem") and name[1:-4].isdigit():
            nums.append(int(name[1:-4]))
    act = st.get("active", "k1")
    cur = int(act[1:]) if act.startswith("k") and act[1:].isdigit() else max(nums or [0])
    kid = "k%d" % (cur + 1)
    if not os.path.exists(key_path(d, kid)):
        new_rsa(d, kid)
    return kid


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "broker-test-issuer"
    sys_version = ""
    timeout = 30

    @property
    def iss(self):
        return self.server.issuer

    def log_message(self, fmt, *args):
        self.iss.log.write("%s %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), fmt % args))

    def send_json(self, code, obj, extra=None, cache_control="no-store"):
        body = (json.dumps(obj) + "\n").encode() if not isinstance(obj, bytes) else obj
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if cache_control != "none":
            self.send_header("Cache-Control", cache_control)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def split_tenant(self, path):
        """'/t/NAME/rest' -> ('NAME', '/rest'); '/rest' -> ('', '/rest')."""
        if path.startswith("/t/"):
            name, _, rest = path[3:].partition("/")
            return name, "/" + rest
        return "", path

    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        if u.path == "/_control/stats":
            with self.iss.lock:
                return self.send_json(200, json.loads(json.dumps(self.iss.stats)))
        if u.path == "/_control/state":
            return self.send_json(200, read_state(self.iss.dir))
        tenant, rest = self.split_tenant(u.path)
        if rest == "/.well-known/openid-configuration":
            kind = "discovery"
        elif rest == "/jwks":
            kind = "jwks"
        else:
            return self.send_json(404, {"error": "not_found"})
        auth = self.headers.get("Authorization")
        self.iss.count(kind, u.path, auth is not None)
        st = read_state(self.iss.dir)
        if st.get("delay_ms"):
            time.sleep(int(st["delay_ms"]) / 1000.0)
        if st.get("outage"):
            return self.send_json(503, {"error": "outage"})
        ov = st["overrides"].get(tenant, {})
        if ov.get("require_bearer") and not hmac.compare_digest(
                (auth or "").encode(), ("Bearer " + ov["require_bearer"]).encode()):
            return self.send_json(401, {"error": "unauthorized"}, {"WWW-Authenticate": "Bearer"})
        if ov.get("status"):
            return self.send_json(int(ov["status"]), {"error": "override"})
        base = self.iss.base + ("/t/" + tenant if tenant else "")
        if ov.get("location"):
            return self.send_json(302, {}, {"Location": ov["location"]})
        if ov.get("redirect"):
            return self.send_json(302, {}, {"Location": self.iss.base + "/t/redirected" + rest})
        if kind == "discovery":
            doc = {"issuer": ov.get("issuer", base),
                   "jwks_uri": ov.get("jwks_uri", base + "/jwks"),
                   "subject_types_supported": ["public", "pairwise"],
                   "response_types_supported": ["id_token"],
                   "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref",
                                        "repository", "repository_id", "actor", "workflow"],
                   "id_token_signing_alg_values_supported": ["RS256"],
                   "scopes_supported": ["openid"]}
            return self.send_json(200, doc)
        keys = []
        for kid in st.get("published", []):
            try:
                keys.append(self.iss.jwk(kid))
            except (OSError, ValueError):
                pass
        if ov.get("jwks_keys") and keys:
            keys = [dict(keys[0], kid="%s-%d" % (keys[0]["kid"], i)) for i in range(int(ov["jwks_keys"]))]
        doc = {"keys": keys}
        if ov.get("jwks_pad"):
            doc["padding"] = "x" * int(ov["jwks_pad"])
        extra = {"X-Pad": "p" * int(ov["header_pad"])} if ov.get("header_pad") else None
        return self.send_json(200, doc, extra, ov.get("cache_control", "no-store"))

    def do_HEAD(self):
        self.do_GET()

    def do_POST(self):
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(min(n, 65536))
        d = self.iss.dir
        if u.path == "/_control/rotate":
            def fn(st):
                kid = next_kid(d, st)
                st["active"] = kid
                if kid not in st["published"]:
                    st["published"].append(kid)
        elif u.path == "/_control/outage":
            def fn(st):
                st["outage"] = q.get("on", "1") not in ("0", "false", "off")
        elif u.path == "/_control/delay":
            def fn(st):
                st["delay_ms"] = max(0, int(q.get("ms", "0")))
        elif u.path == "/_control/publish":
            kids = [k for k in q.get("kids", "").split(",") if k]
            for kid in kids:
                if not os.path.exists(key_path(d, kid)):
                    return self.send_json(400, {"error": "unknown kid %s" % kid})

            def fn(st):
                st["published"] = kids
        elif u.path == "/_control/override":
            tenant = q.pop("tenant", "")

            def fn(st):
                if q:
                    st["overrides"][tenant] = q
                else:
                    st["overrides"].pop(tenant, None)
        else:
            return self.send_json(404, {"error": "not_found"})
        try:
            st = self.iss.update_state(fn)
        except ValueError as e:
            return self.send_json(400, {"error": str(e)})
        self.log_message("control %s %s", u.path, json.dumps(q))
        return self.send_json(200, st)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True       # a delayed answer never holds up shutdown
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # Failed handshakes (a client that does not trust our CA) are expected in tests: one line.
        self.issuer.log.write("error from %s: %s\n" % (client_address[0], sys.exc_info()[1]))


def cmd_serve(args):
    d = os.path.abspath(args.dir)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(os.path.join(d, "server.pem"), os.path.join(d, "server.key"))
    srv = Server(("127.0.0.1", args.port), Handler)
    port = srv.server_address[1]
    base = args.issuer or "https://127.0.0.1:%d" % port
    # The handshake runs lazily in the handler thread, so a client that connects and stalls
    # cannot block accept().
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    srv.issuer = Issuer(d, base)
    srv.issuer.update_state(lambda st: st.update({"issuer": base}))
    write_atomic(os.path.join(d, "issuer.pid"), "%d\n" % os.getpid())
    write_atomic(os.path.join(d, "issuer.port"), "%d\n" % port)

    def on_term(signum, frame):
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    srv.issuer.log.write("serving %s on 127.0.0.1:%d pid %d\n" % (base, port, os.getpid()))
    try:
        srv.serve_forever(poll_interval=0.2)
    finally:
        srv.server_close()
        for name in ("issuer.pid", "issuer.port"):
            try:
                os.unlink(os.path.join(d, name))
            except OSError:
                pass
        srv.issuer.log.write("stopped\n")
    return 0


# ---------------------------------------------------------------- mint

def github_actions_claims(iss, aud, now, ttl):
    # Mirrors the claim set of real GitHub Actions ID tokens (fixtures/real-oidc/github-actions).
    sha = hashlib.sha1(str(now).encode()).hexdigest()
    return {
        "jti": str(uuid.uuid4()),
        "sub": "repo:acme/demo:ref:refs/heads/main",
        "aud": aud,
        "ref": "refs/heads/main",
        "ref_protected": "true",
        "sha": sha,
        "repository": "acme/demo",
        "repository_owner": "acme",
        "repository_owner_id": "1234567",
        "repository_visibility": "private",
        "repository_id": "123456789",
        "run_id": "14144996512",
        "run_number": "42",
        "run_attempt": "1",
        "runner_environment": "github-hosted",
        "actor": "octocat",
        "actor_id": "583231",
        "workflow": "Deploy",
        "workflow_ref": "acme/demo/.github/workflows/deploy.yml@refs/heads/main",
        "workflow_sha": sha,
        "head_ref": "",
        "base_ref": "",
        "event_name": "push",
        "ref_type": "branch",
        "job_workflow_ref": "acme/demo/.github/workflows/deploy.yml@refs/heads/main",
        "job_workflow_sha": sha,
        "iss": iss,
        "nbf": now - 300,
        "exp": now + ttl,
        "iat": now,
    }


HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}


def sign(alg, key, data):
    if alg == "none":
        return b""
    h = HASHES.get(alg[2:])
    if alg.startswith("RS") and h:
        return key.sign(data, padding.PKCS1v15(), h())
    if alg.startswith("PS") and h:
        return key.sign(data, padding.PSS(mgf=padding.MGF1(h()), salt_length=h.digest_size), h())
    if alg.startswith("ES") and h:
        der = key.sign(data, ec.ECDSA(h()))
        r, s = utils.decode_dss_signature(der)
        size = (key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if alg == "EdDSA":
        return key.sign(data)
    raise SystemExit("unsupported alg %s" % alg)


def cmd_mint(args):
    d = os.path.abspath(args.dir)
    st = read_state(d)
    kid = args.kid or st.get("active", "k1")
    try:
        key = load_private(args.key) if args.key else load_private(key_path(d, kid))
    except (OSError, ValueError) as e:
        raise SystemExit("issuer.py mint: cannot load the signing key: %s" % e)
    now = int(args.now if args.now is not None else time.time())
    iss = args.iss or st.get("issuer") or "https://127.0.0.1"
    alg = "HS256" if args.sign_with_hmac_of_pubkey else args.alg

    if args.raw_header is not None:
        header_bytes = args.raw_header.encode()
    else:
        header_bytes = json.dumps({"alg": alg, "kid": kid, "typ": "JWT"}, separators=(",", ":")).encode()
    if args.raw_claims is not None:
        claims_bytes = args.raw_claims.encode()
    else:
        if args.preset == "github-actions":
            claims = github_actions_claims(iss, args.aud, now, args.ttl)
        else:
            claims = {"iss": iss, "sub": args.sub, "aud": args.aud, "iat": now, "nbf": now,
                      "exp": now + args.ttl, "jti": str(uuid.uuid4())}
        if args.sub and args.preset:
            claims["sub"] = args.sub
        if args.claims:
            claims.update(json.loads(args.claims))
        for name in args.drop or []:
            claims.pop(name, None)
        claims_bytes = json.dumps(claims, separators=(",", ":")).encode()

    signing_input = (b64u(header_bytes) + "." + b64u(claims_bytes)).encode()
    if args.sign_with_hmac_of_pubkey:
        # The classic algorithm-confusion attack: HMAC keyed with the issuer's public PEM text.
        pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        sig = hmac.new(pem, signing_input, hashlib.sha256).digest()
    else:
        sig = sign(alg, key, signing_input)
    print(signing_input.decode() + "." + b64u(sig))
    return 0


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("init", help="create CA, server cert, signing keys and state")
    p.add_argument("dir")
    p.set_defaults(fn=cmd_init)
    p = sub.add_parser("serve", help="serve discovery and JWKS over HTTPS")
    p.add_argument("dir")
    p.add_argument("--port", type=int, default=0, help="0: any free port (written to DIR/issuer.port)")
    p.add_argument("--issuer", help="issuer URL (default https://127.0.0.1:PORT)")
    p.set_defaults(fn=cmd_serve)
    p = sub.add_parser("mint", help="print a signed token")
    p.add_argument("dir")
    p.add_argument("--kid", help="signing key (default: the active one)")
    p.add_argument("--key", help="sign with this PEM private key file instead of DIR/keys/KID.pem")
    p.add_argument("--alg", default="RS256", help="RS256..512, PS256..512, ES256..512, EdDSA, none")
    p.add_argument("--claims", help="JSON object merged over the claims")
    p.add_argument("--drop", action="append", help="remove this claim (repeatable)")
    p.add_argument("--ttl", type=int, default=300)
    p.add_argument("--now", type=int, help="Unix time used as iat (default: now)")
    p.add_argument("--iss", help="default: the URL the server last served as")
    p.add_argument("--aud", default="broker")
    p.add_argument("--sub", default=None)
    p.add_argument("--preset", choices=["github-actions"])
    p.add_argument("--raw-header", help="sign this header text exactly as given")
    p.add_argument("--raw-claims", help="sign this claims text exactly as given")
    p.add_argument("--sign-with-hmac-of-pubkey", action="store_true",
                   help="HS256 keyed with the public key's PEM text")
    p.set_defaults(fn=cmd_mint)
    args = ap.parse_args()
    if args.cmd == "mint" and args.sub is None and not args.preset:
        args.sub = "test-subject"
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
