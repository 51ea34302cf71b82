#!/usr/bin/env bash
# mkcert.sh DIR: a TLS certificate for the broker's own listener, for tests and the demo.
#   DIR/tls.pem + DIR/tls.key: ECDSA P-256, SAN 127.0.0.1 and localhost, signed by DIR/ca.pem.
# The CA is the test issuer's (tests/tools/issuer.py init DIR); when DIR has none, a fresh CA
# (DIR/ca.pem + ca.key) is made here, so clients verify the broker with --cacert DIR/ca.pem.
set -euo pipefail
dir=${1:?usage: mkcert.sh DIR}
mkdir -p "$dir"
cd "$dir"
umask 077

if [ ! -f ca.pem ] || [ ! -f ca.key ]; then
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=Broker test CA" -keyout ca.key -out ca.pem \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
  chmod 644 ca.pem
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout "$tmp/tls.key" -out "$tmp/tls.csr" 2>/dev/null
cat >"$tmp/ext" <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
EOF
openssl x509 -req -in "$tmp/tls.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 -sha256 \
  -extfile "$tmp/ext" -out "$tmp/tls.pem" 2>/dev/null
rm -f ca.srl
mv "$tmp/tls.key" tls.key
mv "$tmp/tls.pem" tls.pem
chmod 600 tls.key
chmod 644 tls.pem
openssl verify -CAfile ca.pem tls.pem >/dev/null
