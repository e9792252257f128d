"""An OAuth 2.0 token endpoint for the single-node Kafka's OAUTHBEARER listener: the client credentials grant
(RFC 6749 4.4) for one client, RS256 JWTs, and the JWKS the broker validates them with. Loopback only.

    main() --port PORT --key FILE    (the stack starts it with PYTHONPATH=hack; `/token`, `/jwks`, `/ready`)
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .process import Service

NAME = "oidc"
CLIENT = ("sluice", "sluice-oauth-secret")  # the one client the grant knows: id, secret
AUDIENCE = "kafka"  # what the broker expects in `aud`
TOKEN_SECONDS = 300
KEY_ID = "sluice-stack"


def make_service(root: Path, port: int) -> Service:
    """The token endpoint on `port` (not started); its signing key lives in `root/oidc/` across restarts."""
    data = root / "data" / NAME
    data.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{port}"
    # Not `-m sluice_stack.oidc`: the package imports this module first, and runpy warns about that.
    argv = [sys.executable, "-c", "from sluice_stack.oidc import main; main()"]
    argv += ["--port", str(port), "--key", str(data / "key.pem")]
    return Service(
        name=NAME,
        argv=argv,
        log_path=str(root / "logs" / f"{NAME}.log"),
        cwd=str(Path(__file__).resolve().parent.parent),  # hack/: where `sluice_stack` imports from
        endpoints={"token": f"{base}/token", "jwks": f"{base}/jwks", "issuer": base},
    )


def is_ready(service: Service) -> bool:
    with urllib.request.urlopen(service.endpoints["jwks"], timeout=2) as answer:
        return bool(answer.status == 200)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _load_key(path: Path) -> rsa.RSAPrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.write_bytes(pem)
    return key


class Issuer:
    """Signs tokens and publishes the public key."""

    def __init__(self, key: rsa.RSAPrivateKey, issuer: str) -> None:
        self.key, self.issuer = key, issuer
        numbers = key.public_key().public_numbers()
        self.jwks = {"keys": [{
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": KEY_ID,
            "n": _b64(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
            "e": _b64(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
        }]}  # fmt: skip

    def token(self, subject: str, scope: str) -> str:
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "kid": KEY_ID}
        claims = {"iss": self.issuer, "sub": subject, "aud": AUDIENCE, "iat": now, "nbf": now,
                  "exp": now + TOKEN_SECONDS, "jti": uuid.uuid4().hex, "scope": scope}  # fmt: skip
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}".encode()
        signature = self.key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input.decode()}.{_b64(signature)}"


def _client_of(headers: Message, form: dict[str, list[str]]) -> tuple[str, str]:
    """The client's id and secret: HTTP Basic (client_secret_basic), else the form (client_secret_post)."""
    authorization = headers.get("Authorization") or ""
    if authorization.startswith("Basic "):
        user, _, secret = base64.b64decode(authorization[6:]).decode().partition(":")
        return urllib.parse.unquote_plus(user), urllib.parse.unquote_plus(secret)
    return form.get("client_id", [""])[0], form.get("client_secret", [""])[0]


def serve(port: int, key_path: Path) -> None:
    issuer = Issuer(_load_key(key_path), f"http://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: Mapping[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path in ("/jwks", "/ready"):
                self._answer(200, issuer.jwks)
            else:
                self._answer(404, {"error": "not_found"})

        def do_POST(self) -> None:
            if self.path != "/token":
                self._answer(404, {"error": "not_found"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            form = urllib.parse.parse_qs(self.rfile.read(length).decode())
            if form.get("grant_type", [""])[0] != "client_credentials":
                self._answer(400, {"error": "unsupported_grant_type"})
                return
            if _client_of(self.headers, form) != CLIENT:
                self._answer(401, {"error": "invalid_client"})
                return
            scope = form.get("scope", [""])[0]
            self._answer(200, {"access_token": issuer.token(CLIENT[0], scope), "token_type": "Bearer",
                               "expires_in": TOKEN_SECONDS, "scope": scope})  # fmt: skip

        def log_message(self, format: str, *args: object) -> None:
            print(f"{self.address_string()} {format % args}", flush=True)

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(prog="sluice_stack.oidc", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key", type=Path, required=True, help="the RSA signing key (made if missing)")
    args = parser.parse_args()
    serve(args.port, args.key)


if __name__ == "__main__":
    main()
