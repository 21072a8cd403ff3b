#!/usr/bin/env python3
"""A Standard Webhooks receiver and signer for Herald's webhook tests, written from the specification
(https://www.standardwebhooks.com) with Python's own hmac, hashlib and base64: an implementation that
shares no code with Herald's, so the tests check the scheme rather than mirror it.

    webhook_receiver.py PORT

serves on 127.0.0.1:PORT (0: a free port of the system's choosing), and prints `listening on N` once
it listens — a caller reads the port from there rather than reserving one beforehand, which races any
other listener on the machine. It serves many tests at once, each under a name of its own:

    POST /_secret/NAME        body: the whsec_ secret callbacks to NAME are verified with
    POST /_down/NAME          body: "1" answer 503 to NAME's callbacks (down), "0" accept them (up)
    POST /hook/NAME           a callback: verified, recorded, answered 204 (401 when the signature or
                              the timestamp is wrong, 503 while down)
    GET  /_log/NAME           every callback NAME received as JSON lines: {"id", "timestamp",
                              "verified", "status", "body"} (the answer it got in "status")
    POST /_sign/NAME?id=ID&timestamp=TS   body: a message; answers its webhook-signature

Only the standard library: CI needs no package for it.
"""

import base64
import hashlib
import hmac
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

TOLERANCE = 5 * 60
LOCK = threading.Lock()
SECRETS = {}
DOWN = {}
LOGS = {}


def key_of(secret):
    if not secret.startswith("whsec_"):
        raise ValueError("not a whsec_ secret")
    return base64.b64decode(secret[len("whsec_"):])


def sign(secret, msg_id, timestamp, body):
    mac = hmac.new(key_of(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def verify(secret, msg_id, timestamp, signatures, body):
    if not msg_id or not timestamp or not signatures:
        return False
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(time.time() - ts) > TOLERANCE:
        return False
    expected = sign(secret, msg_id, ts, body).split(",", 1)[1]
    for candidate in signatures.split(" "):
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return True
    return False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body=b"", content_type="text/plain"):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self):
        url = urlparse(self.path)
        if url.path.startswith("/_log/"):
            name = url.path[len("/_log/"):]
            with LOCK:
                lines = "".join(json.dumps(entry) + "\n" for entry in LOGS.get(name, []))
            return self.answer(200, lines.encode(), "application/x-ndjson")
        if url.path == "/health":
            return self.answer(200, b"ok")
        self.answer(404)

    def do_POST(self):
        url = urlparse(self.path)
        body = self.body()
        parts = url.path.strip("/").split("/", 1)
        if len(parts) != 2:
            return self.answer(404)
        kind, name = parts
        if kind == "_secret":
            with LOCK:
                SECRETS[name] = body.decode().strip()
            return self.answer(204)
        if kind == "_down":
            with LOCK:
                DOWN[name] = body.strip() == b"1"
            return self.answer(204)
        if kind == "_sign":
            query = parse_qs(url.query)
            with LOCK:
                secret = SECRETS[name]
            signature = sign(secret, query["id"][0], int(query["timestamp"][0]), body)
            return self.answer(200, signature.encode())
        if kind == "hook":
            with LOCK:
                secret = SECRETS.get(name)
                down = DOWN.get(name, False)
            ok = secret is not None and verify(
                secret,
                self.headers.get("webhook-id"),
                self.headers.get("webhook-timestamp"),
                self.headers.get("webhook-signature"),
                body,
            )
            status = 503 if down else (204 if ok else 401)
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
            entry = {
                "id": self.headers.get("webhook-id"),
                "timestamp": self.headers.get("webhook-timestamp"),
                "verified": ok,
                "status": status,
                "body": parsed,
            }
            with LOCK:
                LOGS.setdefault(name, []).append(entry)
            return self.answer(status)
        self.answer(404)


def main():
    port = int(sys.argv[1])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
