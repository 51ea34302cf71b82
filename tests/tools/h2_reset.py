#!/usr/bin/env python3
"""Send token-exchange requests over raw HTTP/2 (prior knowledge) and cancel each one at once.

Usage: h2_reset.py HOST PORT BODY_FILE [STREAMS] [CONNECTIONS]

Each request's HEADERS, DATA and RST_STREAM(CANCEL) go out in one write, so the broker reads the
reset in the same loop iteration that queued the request: the request's memory is freed before
its turn to be verified or signed. Half the connections also send a second burst after a short
pause (the reset then lands while the request waits for its audit row). Prints how many frames
of each type came back; the caller checks that the broker is still alive and healthy.
"""
import socket
import struct
import sys
import time


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


def lit(index, value):
    """HPACK literal without indexing, indexed name (4-bit prefix), raw (non-Huffman) value."""
    v = value.encode()
    if index < 15:
        head = bytes([index])
    else:
        head = bytes([15, index - 15])
    assert len(v) < 127
    return head + bytes([len(v)]) + v


def request(stream, authority, body):
    block = (b"\x83"  # :method POST
             + b"\x86"  # :scheme http
             + lit(4, "/v1/token")  # :path
             + lit(1, authority)  # :authority
             + lit(31, "application/x-www-form-urlencoded")  # content-type
             + lit(28, str(len(body))))  # content-length
    return (frame(0x1, 0x4, stream, block)  # HEADERS, END_HEADERS
            + frame(0x0, 0x1, stream, body)  # DATA, END_STREAM
            + frame(0x3, 0x0, stream, struct.pack(">I", 0x8)))  # RST_STREAM CANCEL


def drain(sock, seen, seconds):
    sock.settimeout(seconds)
    buf = b""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return False
            buf += data
            while len(buf) >= 9:
                n = int.from_bytes(buf[:3], "big")
                if len(buf) < 9 + n:
                    break
                seen[buf[3]] = seen.get(buf[3], 0) + 1
                buf = buf[9 + n:]
    except socket.timeout:
        return True


def main():
    host, port, body_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    streams = int(sys.argv[4]) if len(sys.argv) > 4 else 50
    conns = int(sys.argv[5]) if len(sys.argv) > 5 else 4
    body = open(body_file, "rb").read()
    authority = "%s:%d" % (host, port)
    seen = {}
    for c in range(conns):
        s = socket.create_connection((host, port))
        out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(0x4, 0, 0)
        out += b"".join(request(1 + 2 * i, authority, body) for i in range(streams))
        s.sendall(out)
        if c % 2 == 1:  # a second burst, reset a moment after its requests
            time.sleep(0.05)
            base = 1 + 2 * streams
            s.sendall(b"".join(request(base + 2 * i, authority, body)[:-13] for i in range(streams)))
            time.sleep(0.002)
            s.sendall(b"".join(frame(0x3, 0, base + 2 * i, struct.pack(">I", 0x8)) for i in range(streams)))
        drain(s, seen, 0.5)
        s.close()
    names = {0: "DATA", 1: "HEADERS", 3: "RST_STREAM", 4: "SETTINGS", 6: "PING", 7: "GOAWAY", 8: "WINDOW_UPDATE"}
    print(" ".join("%s=%d" % (names.get(k, str(k)), v) for k, v in sorted(seen.items())))


if __name__ == "__main__":
    main()
