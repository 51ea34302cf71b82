#!/usr/bin/python3
"""Every platform issuer Broker has a preset for, served from one local HTTPS server (tests only).

    platform_issuer.py init DIR                 test CA, one server cert naming every platform host,
                                                signing keys per platform, DIR/k8s-bearer.token
    platform_issuer.py serve DIR [--port P] [--k8s-bearer FILE]
    platform_issuer.py hosts DIR                the platform host names, one a line
    platform_issuer.py url PROFILE...           each profile's issuer URL ("iss"), one a line
    platform_issuer.py mint DIR PROFILE [--aud AUD] [--alg ALG] [--key NAME] [--kid KID]
                                        [--claims JSON] [--iss URL] [--now T] [--ttl S]

`serve` routes by the Host header (virtual hosts), so with Broker's BROKER_FETCH_CONNECT_TO
("HOST:443:127.0.0.1:PORT,...") the broker fetches the real platform URLs from this server and
still verifies TLS against the real host names (issue it DIR/ca.pem as "ca_file"). Each platform
gets its own discovery layout and JWKS path, as published:

    github.com       https://token.actions.githubusercontent.com        jwks /.well-known/jwks
    enterprise       https://token.actions.githubusercontent.com/acme-corp  (same keys)
    GHES             https://github.acme.example/_services/token        jwks .../.well-known/jwks
    gitlab.com       https://gitlab.com                                 jwks /oauth/discovery/keys
    self-managed     https://gitlab.acme.example                        jwks /oauth/discovery/keys
    google           https://accounts.google.com        jwks https://www.googleapis.com/oauth2/v3/certs
    aws-eks          https://oidc.eks.eu-west-1.amazonaws.com/id/<ID>   jwks <iss>/keys
    aws-outbound     https://<uuid>.tokens.sts.global.api.aws           jwks /.well-known/jwks.json
                     (an RS256 and an ES384 key)
    kubernetes       https://kubernetes.default.svc.cluster.local       jwks /openid/v1/jwks
                     (RS256 and ES256 keys; with --k8s-bearer, discovery and JWKS answer 401 unless
                     the request carries "Authorization: Bearer <that file's contents>")

`mint` prints a token with the platform's exact claim set (values match trust-policies/examples/);
--claims is merged into it recursively (null deletes a claim), so a test changes one claim only.
--key signs with another key of DIR/keys (e.g. another platform's), --kid overrides the header kid.

Control endpoints (Host localhost or 127.0.0.1 only):
    GET  /_control/stats                {"requests": {"HOST PATH": n}, "auth": {"ok"|"missing"|"wrong": n}}
    POST /_control/k8s-bearer           body: the bearer the kubernetes host requires (empty: none)
    POST /_control/publish?platform=P&keys=a,b   the key names P's JWKS serves
    POST /_control/mint?profile=P[&aud=&alg=&key=&kid=&iss=&now=&ttl=]   body: the --claims JSON;
                                        answers the token, as `mint` prints it (keys stay loaded)

Python 3 standard library + python3-cryptography; key, certificate and JWS helpers from issuer.py.
"""
import argparse
import base64
import hashlib
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import issuer  # noqa: E402  (tests/tools/issuer.py: b64u, make_cert, public_jwk, sign, ...)

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: E402

GH = "https://token.actions.githubusercontent.com"
EKS_ID = "EXAMPLED539D4633E53DE1B71EXAMPLE"
EKS = "https://oidc.eks.eu-west-1.amazonaws.com/id/" + EKS_ID
AWS = "https://8c5f0a3e-4b8e-4f0a-9d3c-2f1e6a7b9c01.tokens.sts.global.api.aws"
K8S = "https://kubernetes.default.svc.cluster.local"

# Signing keys: name -> (type, how the platform shapes its kid).
KEYS = {
    "github": ("rsa", "uuid"), "ghes": ("rsa", "uuid"),
    "gitlab": ("rsa", "thumbprint"), "gitlab-sm": ("rsa", "thumbprint"),
    "google": ("rsa", "sha1hex"), "eks": ("rsa", "sha1hex"),
    "aws-rs256": ("rsa", "uuid"), "aws-es384": ("p384", "uuid"),
    "k8s-rs256": ("rsa", "thumbprint"), "k8s-es256": ("p256", "thumbprint"),
    "k8s-next": ("rsa", "thumbprint"),  # not published until a test rotates to it
}


def github_discovery(iss):
    # As https://token.actions.githubusercontent.com/.well-known/openid-configuration publishes it.
    return {"issuer": iss, "jwks_uri": iss + "/.well-known/jwks",
            "subject_types_supported": ["public", "pairwise"],
            "response_types_supported": ["id_token"],
            "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref", "sha", "repository",
                                 "repository_id", "repository_owner", "repository_owner_id", "enterprise",
                                 "enterprise_id", "run_id", "run_number", "run_attempt", "actor", "actor_id",
                                 "workflow", "workflow_ref", "workflow_sha", "head_ref", "base_ref", "event_name",
                                 "ref_type", "ref_protected", "environment", "environment_node_id",
                                 "job_workflow_ref", "job_workflow_sha", "repository_visibility",
                                 "runner_environment", "check_run_id"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid"]}


def gitlab_discovery(iss):
    # Doorkeeper's OpenID Connect discovery, as gitlab.com and self-managed instances serve it.
    return {"issuer": iss, "authorization_endpoint": iss + "/oauth/authorize",
            "token_endpoint": iss + "/oauth/token", "revocation_endpoint": iss + "/oauth/revoke",
            "introspection_endpoint": iss + "/oauth/introspect", "userinfo_endpoint": iss + "/oauth/userinfo",
            "jwks_uri": iss + "/oauth/discovery/keys",
            "scopes_supported": ["api", "read_api", "read_user", "create_runner", "k8s_proxy", "read_repository",
                                 "write_repository", "read_registry", "write_registry", "sudo", "admin_mode",
                                 "openid", "profile", "email"],
            "response_types_supported": ["code"], "response_modes_supported": ["query", "fragment", "form_post"],
            "grant_types_supported": ["authorization_code", "password", "client_credentials", "device_code",
                                      "refresh_token"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"],
            "claim_types_supported": ["normal"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "sub_legacy", "name", "nickname",
                                 "preferred_username", "email", "email_verified", "website", "profile", "picture",
                                 "groups", "groups_direct", "https://gitlab.org/claims/groups/owner",
                                 "https://gitlab.org/claims/groups/maintainer",
                                 "https://gitlab.org/claims/groups/developer"]}


def google_discovery(iss):
    return {"issuer": iss, "authorization_endpoint": "https://accounts.google.com/o/oauth2/v2/auth",
            "device_authorization_endpoint": "https://oauth2.googleapis.com/device/code",
            "token_endpoint": "https://oauth2.googleapis.com/token",
            "userinfo_endpoint": "https://openidconnect.googleapis.com/v1/userinfo",
            "revocation_endpoint": "https://oauth2.googleapis.com/revoke",
            "jwks_uri": "https://www.googleapis.com/oauth2/v3/certs",
            "response_types_supported": ["code", "token", "id_token", "code token", "code id_token",
                                         "token id_token", "code token id_token", "none"],
            "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "claims_supported": ["aud", "email", "email_verified", "exp", "family_name", "given_name", "iat",
                                 "iss", "name", "picture", "sub"],
            "code_challenge_methods_supported": ["plain", "S256"],
            "grant_types_supported": ["authorization_code", "refresh_token",
                                      "urn:ietf:params:oauth:grant-type:device_code",
                                      "urn:ietf:params:oauth:grant-type:jwt-bearer"]}


def eks_discovery(iss):
    # EKS: the cluster's OIDC endpoint, JWKS at <iss>/keys.
    return {"issuer": iss, "jwks_uri": iss + "/keys",
            "authorization_endpoint": "urn:kubernetes:programmatic_authorization",
            "response_types_supported": ["id_token"], "subject_types_supported": ["public"],
            "claims_supported": ["sub", "iss"], "id_token_signing_alg_values_supported": ["RS256"]}


def aws_outbound_discovery(iss):
    return {"issuer": iss, "jwks_uri": iss + "/.well-known/jwks.json",
            "response_types_supported": ["id_token"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES384"]}


def k8s_discovery(iss):
    # kube-apiserver's ServiceAccountIssuerDiscovery document (jwks_uri: the API server's own URL).
    return {"issuer": iss, "jwks_uri": iss + "/openid/v1/jwks", "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256", "ES256"]}


# Issuers: iss, its JWKS URL, the discovery document, the keys its JWKS serves.
PLATFORMS = {
    "github-actions": (GH, GH + "/.well-known/jwks", github_discovery, ["github"]),
    "github-enterprise": (GH + "/acme-corp", GH + "/acme-corp/.well-known/jwks", github_discovery, ["github"]),
    "github-server": ("https://github.acme.example/_services/token",
                      "https://github.acme.example/_services/token/.well-known/jwks", github_discovery, ["ghes"]),
    "gitlab": ("https://gitlab.com", "https://gitlab.com/oauth/discovery/keys", gitlab_discovery, ["gitlab"]),
    "gitlab-self-managed": ("https://gitlab.acme.example", "https://gitlab.acme.example/oauth/discovery/keys",
                            gitlab_discovery, ["gitlab-sm"]),
    "google": ("https://accounts.google.com", "https://www.googleapis.com/oauth2/v3/certs", google_discovery,
               ["google"]),
    "aws-eks": (EKS, EKS + "/keys", eks_discovery, ["eks"]),
    "aws-outbound": (AWS, AWS + "/.well-known/jwks.json", aws_outbound_discovery, ["aws-rs256", "aws-es384"]),
    "kubernetes": (K8S, K8S + "/openid/v1/jwks", k8s_discovery, ["k8s-rs256", "k8s-es256"]),
}
AUTH_HOSTS = {"kubernetes.default.svc.cluster.local"}  # hosts that may require a bearer token


def host_of(url):
    return urllib.parse.urlsplit(url).hostname


def all_hosts():
    hosts = []
    for iss, jwks, _, _ in PLATFORMS.values():
        for h in (host_of(iss), host_of(jwks)):
            if h not in hosts:
                hosts.append(h)
    return hosts


# ---------------------------------------------------------------- init

def kid_for(key, style, name):
    pub = key.public_key()
    spki = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if style == "uuid":
        return str(uuid.uuid5(uuid.NAMESPACE_URL, issuer.b64u(spki)))
    if style == "sha1hex":
        return hashlib.sha1(spki).hexdigest()
    # RFC 7638 thumbprint: Kubernetes and GitLab name keys this way
    jwk = issuer.public_jwk(key, "x")
    req = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}[jwk["kty"]]
    canon = json.dumps({k: jwk[k] for k in req}, separators=(",", ":"), sort_keys=True)
    return issuer.b64u(hashlib.sha256(canon.encode()).digest())


def cmd_init(args):
    d = os.path.abspath(args.dir)
    os.makedirs(os.path.join(d, "keys"), exist_ok=True)
    pem, pk8 = serialization.Encoding.PEM, (serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = issuer.make_cert("Broker platform test CA %s" % uuid.uuid4().hex[:8], ca_key.public_key(), None, ca_key,
                          True)
    srv_key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(h) for h in all_hosts()] + [x509.DNSName("localhost"),
                                                     x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    srv = issuer.make_cert("platform issuers", srv_key.public_key(), ca.subject, ca_key, False, sans, days=825)
    issuer.write_private(os.path.join(d, "ca.key"), ca_key.private_bytes(pem, *pk8))
    issuer.write_private(os.path.join(d, "server.key"), srv_key.private_bytes(pem, *pk8))
    with open(os.path.join(d, "ca.pem"), "wb") as f:
        f.write(ca.public_bytes(pem))
    with open(os.path.join(d, "server.pem"), "wb") as f:
        f.write(srv.public_bytes(pem))
    kids = {}
    for name, (kind, style) in KEYS.items():
        if kind == "rsa":
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            key = ec.generate_private_key(ec.SECP384R1() if kind == "p384" else ec.SECP256R1())
        issuer.write_private(os.path.join(d, "keys", name + ".pem"), key.private_bytes(pem, *pk8))
        kids[name] = kid_for(key, style, name)
    issuer.write_atomic(os.path.join(d, "kids.json"), json.dumps(kids, indent=1) + "\n")
    issuer.write_private(os.path.join(d, "k8s-bearer.token"), (issuer.b64u(os.urandom(32)) + "\n").encode())
    issuer.write_atomic(os.path.join(d, "state.json"), json.dumps({"published": {}, "k8s_bearer": ""}) + "\n")
    print(d)
    return 0


# ---------------------------------------------------------------- serve

def load_json(path, default):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


class State:
    def __init__(self, d):
        self.dir = d
        self.lock = threading.Lock()
        self.kids = load_json(os.path.join(d, "kids.json"), {})
        self.jwks = {}  # key name -> public JWK
        self.priv = {}  # key name -> private key (loading an RSA key takes a while)
        self.requests = {}
        self.auth = {"ok": 0, "missing": 0, "wrong": 0}
        self.log = open(os.path.join(d, "platform_issuer.log"), "a", buffering=1)
        st = load_json(os.path.join(d, "state.json"), {})
        self.published = st.get("published", {})
        self.k8s_bearer = st.get("k8s_bearer", "")
        # (host, path) -> (platform, "discovery"|"jwks")
        self.routes = {}
        for name, (iss, jwks, _, _) in PLATFORMS.items():
            u = urllib.parse.urlsplit(iss)
            self.routes[(u.hostname, u.path.rstrip("/") + "/.well-known/openid-configuration")] = (name, "discovery")
            j = urllib.parse.urlsplit(jwks)
            self.routes[(j.hostname, j.path)] = (name, "jwks")

    def jwk(self, name):
        with self.lock:
            if name not in self.jwks:
                key = issuer.load_private(os.path.join(self.dir, "keys", name + ".pem"))
                j = issuer.public_jwk(key, self.kids[name])
                if name in ("github", "ghes"):
                    # GitHub publishes each key's certificate too (x5c, x5t); verifiers must not need them
                    cert = issuer.make_cert("actions-token-signing", key.public_key(), None, key, False,
                                            [x509.DNSName("token.actions.githubusercontent.com")])
                    der = cert.public_bytes(serialization.Encoding.DER)
                    j["x5c"] = [base64.b64encode(der).decode()]
                    j["x5t"] = issuer.b64u(hashlib.sha1(der).digest())
                self.jwks[name] = j
            return self.jwks[name]

    def private(self, name):
        if name not in KEYS:
            raise ValueError("unknown key %s" % name)
        with self.lock:
            if name not in self.priv:
                self.priv[name] = issuer.load_private(os.path.join(self.dir, "keys", name + ".pem"))
            return self.priv[name]

    def keys_of(self, platform):
        with self.lock:
            names = self.published.get(platform)
        return names if names is not None else PLATFORMS[platform][3]

    def save(self):
        issuer.write_atomic(os.path.join(self.dir, "state.json"),
                            json.dumps({"published": self.published, "k8s_bearer": self.k8s_bearer}) + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "platform-issuer"
    sys_version = ""
    timeout = 30

    @property
    def st(self):
        return self.server.state

    def log_message(self, fmt, *args):
        host = self.headers.get("Host", "-") if getattr(self, "headers", None) else "-"
        self.st.log.write("%s %s %s\n" % (time.strftime("%H:%M:%S"), host, fmt % args))

    def send_json(self, code, obj, extra=None):
        body = (json.dumps(obj) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def host(self):
        h = (self.headers.get("Host") or "").strip().lower()
        if h.startswith("["):
            return h.split("]")[0] + "]"
        return h.rsplit(":", 1)[0] if ":" in h else h

    def authorized(self, host):
        """Kubernetes API servers serve discovery and keys to authenticated callers only."""
        if host not in AUTH_HOSTS:
            return True
        with self.st.lock:
            want = self.st.k8s_bearer
        got = self.headers.get("Authorization")
        outcome = "ok"
        if got is None:
            outcome = "missing"
        elif got != "Bearer " + want:
            outcome = "wrong"
        with self.st.lock:
            self.st.auth[outcome] += 1
        return outcome == "ok" or not want

    def do_GET(self):
        host, path = self.host(), urllib.parse.urlsplit(self.path).path
        if host in ("localhost", "127.0.0.1") and path == "/_control/stats":
            with self.st.lock:
                return self.send_json(200, {"requests": dict(self.st.requests), "auth": dict(self.st.auth)})
        route = self.st.routes.get((host, path))
        with self.st.lock:
            k = "%s %s" % (host, path)
            self.st.requests[k] = self.st.requests.get(k, 0) + 1
        if route is None:
            return self.send_json(404, {"error": "not_found"})
        if not self.authorized(host):
            return self.send_json(401, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                        "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
        platform, kind = route
        iss, _, discovery, _ = PLATFORMS[platform]
        if kind == "discovery":
            return self.send_json(200, discovery(iss))
        return self.send_json(200, {"keys": [self.st.jwk(n) for n in self.st.keys_of(platform)]})

    def do_HEAD(self):
        self.do_GET()

    def do_POST(self):
        host, u = self.host(), urllib.parse.urlsplit(self.path)
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(n, 65536)).decode() if n else ""
        if host not in ("localhost", "127.0.0.1"):
            return self.send_json(404, {"error": "not_found"})
        q = dict(urllib.parse.parse_qsl(u.query))
        if u.path == "/_control/k8s-bearer":
            with self.st.lock:
                self.st.k8s_bearer = body.strip()
                self.st.save()
            return self.send_json(200, {"k8s_bearer_required": bool(body.strip())})
        if u.path == "/_control/mint":
            try:
                tok = mint_token(self.st.kids, self.st.private, q["profile"], q.get("aud", "broker"), q.get("alg"),
                                 q.get("key"), q.get("kid"), q.get("iss"), json.loads(body) if body else None,
                                 int(q["now"]) if "now" in q else None, int(q.get("ttl", "300")))
            except (KeyError, ValueError) as e:
                return self.send_json(400, {"error": "bad mint request: %s" % e})
            data = (tok + "\n").encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/jwt")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            return self.wfile.write(data)
        if u.path == "/_control/publish":
            names = [k for k in q.get("keys", "").split(",") if k]
            if q.get("platform") not in PLATFORMS or any(k not in KEYS for k in names):
                return self.send_json(400, {"error": "unknown platform or key"})
            with self.st.lock:
                self.st.published[q["platform"]] = names
                self.st.save()
            return self.send_json(200, {"platform": q["platform"], "keys": names})
        return self.send_json(404, {"error": "not_found"})


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def handle_error(self, request, client_address):
        self.state.log.write("error from %s: %s\n" % (client_address[0], sys.exc_info()[1]))


def cmd_serve(args):
    d = os.path.abspath(args.dir)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(os.path.join(d, "server.pem"), os.path.join(d, "server.key"))
    srv = Server(("127.0.0.1", args.port), Handler)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    srv.state = State(d)
    if args.k8s_bearer:
        with open(args.k8s_bearer) as f:
            srv.state.k8s_bearer = f.read().strip()
        srv.state.save()
    port = srv.server_address[1]
    issuer.write_atomic(os.path.join(d, "pid"), "%d\n" % os.getpid())
    issuer.write_atomic(os.path.join(d, "port"), "%d\n" % port)

    def on_term(signum, frame):
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    srv.state.log.write("serving %s on 127.0.0.1:%d\n" % (" ".join(all_hosts()), port))
    try:
        srv.serve_forever(poll_interval=0.2)
    finally:
        srv.server_close()
        for name in ("pid", "port"):
            try:
                os.unlink(os.path.join(d, name))
            except OSError:
                pass
    return 0


# ---------------------------------------------------------------- mint

def sha_of(seed):
    return hashlib.sha1(seed.encode()).hexdigest()


def github_claims(iss, aud, now, ttl, enterprise=False):
    # The claim set of a real GitHub Actions ID token (fixtures/real-oidc/github-actions, 2025), for the
    # repositories trust-policies/examples/github-*.identity.json bind.
    if enterprise:
        owner, owner_id, repo_id, ref, ref_type, prot = "acme-corp", "7654321", "223344556", "refs/tags/v1.4.0", \
            "tag", "true"
    else:
        owner, owner_id, repo_id, ref, ref_type, prot = "acme", "987654", "123456789", "refs/heads/main", \
            "branch", "false"
    repo = owner + "/app"
    sha = sha_of(repo + ref)
    wf = "%s/.github/workflows/deploy.yml@%s" % (repo, ref)
    c = {"jti": str(uuid.uuid4()), "sub": "repo:%s:ref:%s" % (repo, ref), "aud": aud, "ref": ref,
         "sha": sha, "repository": repo, "repository_owner": owner, "repository_owner_id": owner_id,
         "run_id": "14144996512", "run_number": "42", "run_attempt": "1", "repository_visibility": "private",
         "repository_id": repo_id, "actor_id": "583231", "actor": "octocat", "workflow": "Deploy",
         "head_ref": "", "base_ref": "", "event_name": "push", "ref_protected": prot, "ref_type": ref_type,
         "workflow_ref": wf, "workflow_sha": sha, "job_workflow_ref": wf, "job_workflow_sha": sha,
         "runner_environment": "github-hosted", "iss": iss, "nbf": now - 300, "exp": now + ttl, "iat": now}
    if enterprise:
        c["enterprise"] = "acme-corp"
        c["enterprise_id"] = "4321"
    return c


def gitlab_claims(iss, aud, now, ttl):
    # GitLab CI id_tokens (Gitlab::Ci::JwtV2): the project of trust-policies/examples/gitlab.identity.json.
    host = host_of(iss)
    sha = sha_of("acme/app main")
    return {"namespace_id": "1234567", "namespace_path": "acme", "project_id": "42424242",
            "project_path": "acme/app", "user_id": "3141592", "user_login": "deployer",
            "user_email": "deployer@acme.example", "user_access_level": "maintainer",
            "job_project_id": "42424242", "job_project_path": "acme/app", "job_namespace_id": "1234567",
            "job_namespace_path": "acme", "pipeline_id": "1520000001", "pipeline_source": "push",
            "job_id": "8800000001", "ref": "main", "ref_type": "branch", "ref_path": "refs/heads/main",
            "ref_protected": "true", "runner_id": 12270859, "runner_environment": "gitlab-hosted", "sha": sha,
            "project_visibility": "private", "ci_config_ref_uri": "%s/acme/app//.gitlab-ci.yml@refs/heads/main" % host,
            "ci_config_sha": sha, "jti": str(uuid.uuid4()), "iss": iss, "iat": now, "nbf": now - 5,
            "exp": now + ttl, "sub": "project_path:acme/app:ref_type:branch:ref:main", "aud": aud}


def google_claims(iss, aud, now, ttl):
    # Compute Engine metadata identity?audience=AUD&format=full: no nbf and no jti; email_verified is a
    # JSON boolean and project_number/instance_creation_timestamp are numbers.
    sa = "104776112345678901234"
    return {"aud": aud, "azp": sa, "email": "worker@acme-prod.iam.gserviceaccount.com", "email_verified": True,
            "exp": now + min(ttl, 3600), "iat": now,
            "google": {"compute_engine": {"instance_creation_timestamp": now - 86400,
                                          "instance_id": "4837596117237451782", "instance_name": "worker-1",
                                          "project_id": "acme-prod", "project_number": 512345678901,
                                          "zone": "europe-west1-b"}},
            "iss": iss, "sub": sa}


def k8s_claims(iss, aud, now, ttl, ns, sa, sa_uid, pod, node):
    # A projected service-account token (Kubernetes 1.30+: jti, node info).
    return {"aud": [aud], "exp": now + ttl, "iat": now, "iss": iss, "jti": str(uuid.uuid4()),
            "kubernetes.io": {"namespace": ns,
                              "node": {"name": node, "uid": str(uuid.uuid5(uuid.NAMESPACE_DNS, node))},
                              "pod": {"name": pod, "uid": str(uuid.uuid5(uuid.NAMESPACE_DNS, pod))},
                              "serviceaccount": {"name": sa, "uid": sa_uid}},
            "nbf": now, "sub": "system:serviceaccount:%s:%s" % (ns, sa)}


def aws_outbound_claims(iss, aud, now, ttl):
    # sts:GetWebIdentityToken: AWS claims nested under "https://sts.amazonaws.com/"; no nbf.
    return {"iss": iss, "aud": aud, "sub": "arn:aws:iam::123456789012:role/DataProcessingRole", "iat": now,
            "exp": now + ttl, "jti": str(uuid.uuid4()),
            "https://sts.amazonaws.com/": {
                "aws_account": "123456789012", "source_region": "eu-west-1", "org_id": "o-abc1234567",
                "ou_path": "o-abc1234567/r-ab12/ou-ab12-11111111/",
                "principal_tags": {"environment": "production", "team": "data-engineering"},
                "lambda_source_function_arn": "arn:aws:lambda:eu-west-1:123456789012:function:process-data"}}


PROFILES = {
    "github-actions": lambda i, a, n, t: github_claims(i, a, n, t),
    "github-server": lambda i, a, n, t: github_claims(i, a, n, t),
    "github-enterprise": lambda i, a, n, t: github_claims(i, a, n, t, enterprise=True),
    "gitlab": gitlab_claims,
    "gitlab-self-managed": gitlab_claims,
    "google": google_claims,
    "aws-eks": lambda i, a, n, t: k8s_claims(i, a, n, t, "payments", "payments-api",
                                             "3c1f2a7e-8d4b-4e0a-9b6c-5f2d1e0a7b93",
                                             "payments-api-7c9d8f6b5-x2kqz",
                                             "ip-10-0-1-23.eu-west-1.compute.internal"),
    "aws-outbound": aws_outbound_claims,
    "kubernetes": lambda i, a, n, t: k8s_claims(i, a, n, t, "batch", "report-runner",
                                                "9a0e4c1d-2b7f-4f3e-8c5a-6d1b0e2f4a87",
                                                "report-runner-29384756-abcde", "worker-3"),
}


def merge(dst, patch):
    for k, v in patch.items():
        if v is None:
            dst.pop(k, None)
        elif isinstance(v, dict) and isinstance(dst.get(k), dict):
            merge(dst[k], v)
        else:
            dst[k] = v
    return dst


def alg_of(key):
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    return {256: "ES256", 384: "ES384", 521: "ES512"}[key.curve.key_size]


def mint_token(kids, load_key, profile, aud, alg=None, key=None, kid=None, iss=None, claims=None, now=None,
               ttl=300):
    """The signed token; load_key(name) returns DIR/keys/NAME.pem's private key."""
    iss = iss or PLATFORMS[profile][0]
    name = key
    if name is None:  # the platform's key for alg (default: its first key)
        names = PLATFORMS[profile][3]
        name = next((n for n in names if alg and alg_of(load_key(n)) == alg), names[0])
    k = load_key(name)
    alg = alg or alg_of(k)
    now = int(now if now is not None else time.time())
    c = PROFILES[profile](iss, aud, now, ttl)
    if claims:
        merge(c, claims)
    header = {"alg": alg, "kid": kid or kids[name], "typ": "JWT"}
    if profile.startswith("github"):
        header["x5t"] = issuer.b64u(hashlib.sha1(header["kid"].encode()).digest())
    if profile in ("aws-eks", "kubernetes"):
        header.pop("typ")  # kube-apiserver writes {"alg", "kid"} only
    h = json.dumps(header, separators=(",", ":")).encode()
    b = json.dumps(c, separators=(",", ":")).encode()
    signing_input = (issuer.b64u(h) + "." + issuer.b64u(b)).encode()
    return signing_input.decode() + "." + issuer.b64u(issuer.sign(alg, k, signing_input))


def cmd_mint(args):
    d = os.path.abspath(args.dir)
    print(mint_token(load_json(os.path.join(d, "kids.json"), {}),
                     lambda n: issuer.load_private(os.path.join(d, "keys", n + ".pem")), args.profile, args.aud,
                     args.alg, args.key, args.kid, args.iss, json.loads(args.claims) if args.claims else None,
                     args.now, args.ttl))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("init")
    p.add_argument("dir")
    p.set_defaults(fn=cmd_init)
    p = sub.add_parser("serve")
    p.add_argument("dir")
    p.add_argument("--port", type=int, default=0, help="0: any free port (written to DIR/port)")
    p.add_argument("--k8s-bearer", help="require this file's contents as the kubernetes host's bearer token")
    p.set_defaults(fn=cmd_serve)
    p = sub.add_parser("hosts")
    p.add_argument("dir", nargs="?")
    p.set_defaults(fn=lambda a: print("\n".join(all_hosts())) or 0)
    p = sub.add_parser("url")
    p.add_argument("profile", nargs="+", choices=sorted(PLATFORMS))
    p.set_defaults(fn=lambda a: print("\n".join(PLATFORMS[n][0] for n in a.profile)) or 0)
    p = sub.add_parser("mint")
    p.add_argument("dir")
    p.add_argument("profile", choices=sorted(PROFILES))
    p.add_argument("--aud", default="broker")
    p.add_argument("--alg", help="default: the key's (RS256, ES256, ES384)")
    p.add_argument("--key", help="sign with DIR/keys/NAME.pem (default: the platform's key for --alg)")
    p.add_argument("--kid", help="header kid (default: the signing key's)")
    p.add_argument("--iss", help="default: the profile's issuer")
    p.add_argument("--claims", help="JSON object merged recursively over the claims (null removes)")
    p.add_argument("--now", type=int)
    p.add_argument("--ttl", type=int, default=300)
    p.set_defaults(fn=cmd_mint)
    args = ap.parse_args()
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
