"""A local OpenID issuer for tests, the bench and development: a loopback HTTP server (a thread) publishing its
discovery document and JWKS, and signing Kubernetes-style service-account tokens with RS256.

    with FederationIssuer() as issuer:
        token = issuer.service_account_token("ns", "name", audience="https://portal.example")
        issuer.rotate()  # a new signing key; the old one is no longer published

The portal fetches it over plain http only with ``OAUTH_ALLOW_LOOPBACK_HTTP``. ``fetches`` counts the requests
the server answered (to see the portal's cache at work).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm


class FederationIssuer:
    def __init__(self, host: str = "127.0.0.1", path: str = "") -> None:
        self._server = ThreadingHTTPServer((host, 0), self._handler())
        self._server.daemon_threads = True
        self.issuer = f"http://{host}:{self._server.server_address[1]}{path}"
        self._path = path
        self.fetches = 0
        self._keys: list[tuple[str, rsa.RSAPrivateKey]] = []
        self.rotate()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # --- keys -----------------------------------------------------------------------------------------------
    def rotate(self) -> str:
        """A new signing key replaces the published one (the old key is no longer in the JWKS); its kid."""
        kid = uuid.uuid4().hex[:16]
        self._keys = [(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048))]
        return kid

    @property
    def kid(self) -> str:
        return self._keys[0][0]

    def jwks(self) -> dict:
        keys = []
        for kid, private in self._keys:
            jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": keys}

    def configuration(self) -> dict:
        return {"issuer": self.issuer, "jwks_uri": self.issuer + "/openid/v1/jwks",
                "response_types_supported": ["id_token"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"]}

    # --- tokens ---------------------------------------------------------------------------------------------
    def sign(self, claims: dict, *, kid: str | None = None) -> str:
        kid = kid or self.kid
        private = dict(self._keys).get(kid)
        return jwt.encode(claims, private, algorithm="RS256", headers={"kid": kid})

    def service_account_token(self, namespace: str, name: str, *, audience: str, lifetime: int = 600,
                              issued_at: float | None = None, jti: str | None = None, **extra) -> str:
        """A projected service-account token as a Kubernetes cluster issues it."""
        now = int(issued_at if issued_at is not None else time.time())
        claims = {
            "iss": self.issuer, "sub": f"system:serviceaccount:{namespace}:{name}", "aud": [audience],
            "exp": now + lifetime, "iat": now, "nbf": now, "jti": jti or str(uuid.uuid4()),
            "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": str(uuid.uuid4())},
                              "pod": {"name": f"{name}-0", "uid": str(uuid.uuid4())}},
            **extra,
        }
        return self.sign(claims)

    # --- server ---------------------------------------------------------------------------------------------
    def _handler(self):
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                issuer.fetches += 1
                path = self.path[len(issuer._path):] if self.path.startswith(issuer._path) else self.path
                if path == "/.well-known/openid-configuration":
                    body = issuer.configuration()
                elif path == "/openid/v1/jwks":
                    body = issuer.jwks()
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        return Handler

    def start(self) -> FederationIssuer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FederationIssuer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
