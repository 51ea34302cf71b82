#!/usr/bin/python3
"""Independent check of a Broker-minted token (python3-cryptography, not Broker's code):
jwtverify.py JWKS_FILE TOKEN -> prints the claims JSON when the ES256 signature verifies with the
key named by kid and the header is exactly RFC 9068's; exits 1 otherwise."""
import base64, json, sys
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def main():
    jwks = json.load(open(sys.argv[1]))
    token = sys.argv[2].strip()
    h, p, s = token.split(".")
    header = json.loads(b64d(h))
    if header.get("alg") != "ES256" or header.get("typ") != "at+jwt" or "kid" not in header:
        sys.exit("bad header: %r" % header)
    key = next((k for k in jwks["keys"] if k.get("kid") == header["kid"]), None)
    if key is None or key.get("kty") != "EC" or key.get("crv") != "P-256":
        sys.exit("kid %s not in JWKS" % header["kid"])
    pub = ec.EllipticCurvePublicNumbers(int.from_bytes(b64d(key["x"]), "big"),
                                        int.from_bytes(b64d(key["y"]), "big"), ec.SECP256R1()).public_key()
    sig = b64d(s)
    if len(sig) != 64:
        sys.exit("signature is not raw r||s")
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    pub.verify(der, (h + "." + p).encode(), ec.ECDSA(hashes.SHA256()))
    print(json.dumps(json.loads(b64d(p)), sort_keys=True))


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except Exception as e:  # an invalid signature raises InvalidSignature
        sys.exit("verification failed: %s" % type(e).__name__)
