"""A local stand-in for a GKE cluster: the GKE API's cluster description and the Kubernetes
API's batch/v1 Job routes, over HTTP or HTTPS, recording every request with its headers.

There is no Kubernetes API server or GKE API here. `FakeApiServer` answers the calls the GKE
launcher makes the way the real servers do:

    GET    /v1/projects/P/locations/L/clusters/C          the cluster (GKE API), or its error
    POST   /apis/batch/v1/namespaces/NS/jobs              create: echoes the Job with uid and
                                                          status; 409 when the name is taken
    GET    /apis/batch/v1/namespaces/NS/jobs?labelSelector=k=v,...   JobList, label-filtered
    DELETE /apis/batch/v1/namespaces/NS/jobs/NAME         Status; 404 when gone

`Tls` makes a self-signed CA and a server certificate for 127.0.0.1 it signed (what GKE's
control plane presents: an IP address and a cluster CA), so a client built from the cluster's
description must trust that CA to get through. (tests/support.json_server and
tests/gcp/recording_server answer neither TLS nor record headers, hence this one.)
"""

from __future__ import annotations

import base64
import copy
import datetime
import ipaddress
import json
import re
import ssl
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_JOBS = re.compile(r"^/apis/batch/v1/namespaces/([^/]+)/jobs(?:/([^/]+))?$")
_CLUSTER = re.compile(r"^/v1/(projects/[^/]+/locations/[^/]+/clusters/[^/]+)$")


_CA_USAGE = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
    encipher_only=False, decipher_only=False,
)  # fmt: skip


@dataclass(frozen=True)
class Tls:
    """A CA (PEM, and its file) and a server certificate for 127.0.0.1 it signed."""

    ca_pem: bytes
    ca_path: Path
    cert_path: Path
    key_path: Path

    @classmethod
    def make(cls, where: Path) -> Tls:
        now = datetime.datetime.now(datetime.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake cluster CA")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_CA_USAGE, critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        ca_pem = ca.public_bytes(serialization.Encoding.PEM)
        paths = where / "ca.pem", where / "server.pem", where / "server.key"
        paths[0].write_bytes(ca_pem)
        paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        paths[2].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cls(ca_pem, *paths)

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert_path, self.key_path)
        return ctx


def status_body(code: int, reason: str, message: str = "") -> dict[str, Any]:
    """A Kubernetes Status (failure)."""
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
            "reason": reason, "message": message}  # fmt: skip


def google_error(code: int, status: str, message: str) -> dict[str, Any]:
    """A Google API error body."""
    return {"error": {"code": code, "status": status, "message": message}}


class FakeApiServer:
    """Records requests (with headers); keeps Jobs by (namespace, name) and cluster
    descriptions by name (a number instead: answer that HTTP error)."""

    def __init__(self, tls: Tls | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.clusters: dict[str, dict[str, Any] | int] = {}
        self.fail_next: int | None = None
        self.tls = tls
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                url = urlparse(self.path)
                size = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(size)) if size else None
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                with server.lock:
                    server.requests.append(  # a copy: the server keeps and amends `body`
                        {"method": self.command, "path": url.path, "query": query,
                         "headers": dict(self.headers.items()), "body": copy.deepcopy(body)}
                    )  # fmt: skip
                    code, reply = server.answer(self.command, url.path, query, body)
                self._reply(code, reply)

            do_GET = do_POST = do_DELETE = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self._httpd.socket = tls.server_context().wrap_socket(
                self._httpd.socket, server_side=True
            )
        self.port = self._httpd.server_address[1]
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"{'https' if tls else 'http'}://{self.address}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def describe(self, name: str, **changes: Any) -> dict[str, Any]:
        """Serve cluster `name` as GKE describes it: this server as its endpoint, its CA."""
        assert self.tls is not None, "a cluster's endpoint is HTTPS"
        description: dict[str, Any] = {
            "name": name.rsplit("/", 1)[1],
            "endpoint": self.address,
            "masterAuth": {"clusterCaCertificate": base64.b64encode(self.tls.ca_pem).decode()},
            "status": "RUNNING",
            **changes,
        }
        self.clusters[name] = description
        return description

    def seen(self, method: str, prefix: str) -> list[dict[str, Any]]:
        """Recorded requests with this method whose path starts with `prefix`."""
        with self.lock:
            return [
                r for r in self.requests if r["method"] == method and r["path"].startswith(prefix)
            ]

    def answer(
        self, method: str, path: str, query: dict[str, str], body: Any
    ) -> tuple[int, dict[str, Any]]:
        if self.fail_next is not None:
            code, self.fail_next = self.fail_next, None
            return code, status_body(code, "InternalError")
        if (m := _CLUSTER.match(path)) is not None and method == "GET":
            found = self.clusters.get(m[1])
            if found is None:
                return 404, google_error(404, "NOT_FOUND", f"Not found: {m[1]}.")
            if isinstance(found, int):
                why = f"Required 'container.clusters.get' permission for '{m[1]}'."
                return found, google_error(found, "PERMISSION_DENIED", why)
            return 200, found
        m = _JOBS.match(path)
        if m is None:
            return 404, status_body(404, "NotFound", path)
        ns, name = m.groups()
        if method == "POST" and name is None:
            key = (ns, body["metadata"]["name"])
            if key in self.jobs:
                return 409, status_body(409, "AlreadyExists")
            body["metadata"].update(namespace=ns, uid=str(uuid.uuid4()), resourceVersion="1")
            body["status"] = {"active": 1}
            self.jobs[key] = body
            return 201, body
        if method == "GET" and name is None:
            want = dict(kv.split("=", 1) for kv in query.get("labelSelector", "").split(",") if kv)
            items = [
                j
                for (jns, _), j in self.jobs.items()
                if jns == ns and all(j["metadata"]["labels"].get(k) == v for k, v in want.items())
            ]
            return 200, {"kind": "JobList", "apiVersion": "batch/v1", "metadata": {},
                         "items": items}  # fmt: skip
        if method == "DELETE" and name is not None:
            if self.jobs.pop((ns, name), None) is None:
                return 404, status_body(404, "NotFound", name)
            return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}
        return 405, status_body(405, "MethodNotAllowed")

    def finish(self, ns: str, name: str, condition: str) -> None:
        """The Job's pod ended: Complete or Failed, as the Job controller would record it."""
        status: dict[str, Any] = {"conditions": [{"type": condition, "status": "True"}]}
        status["succeeded" if condition == "Complete" else "failed"] = 1
        self.jobs[(ns, name)]["status"] = status
