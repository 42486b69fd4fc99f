"""TLS on both listeners, with a self-signed certificate the test generates (for
127.0.0.1 and localhost): gRPC stubs, grpcurl and REST over HTTPS; plaintext is refused."""

from __future__ import annotations

import datetime
import shutil
import ssl
import subprocess
import sys
import uuid
from pathlib import Path

import grpc
import pytest

from edgewise.graph.v1 import query_service_pb2 as q
from edgewise.graph.v1 import query_service_pb2_grpc
from tests.edge.conftest import edge_settings, running
from tests.edge.test_rest import call, error_info

pytestmark = pytest.mark.e2e

GRPCURL = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which("grpcurl")


def self_signed(directory: Path) -> tuple[Path, Path]:
    """cert.pem and key.pem for CN=localhost, SAN 127.0.0.1 and localhost, valid one day."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:  # no cryptography package: the openssl command line
        openssl = shutil.which("openssl") or pytest.skip("neither cryptography nor openssl to make a certificate")
        subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "1", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                        "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=30)
        return cert, key
    import ipaddress

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(private.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([
                       x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(private, hashes.SHA256()))
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return cert, key


@pytest.fixture(scope="module")
def tls_edge(edge_stack, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tls")
    cert, key = self_signed(workdir)
    direct = edge_stack.direct
    settings = edge_settings([direct.command_addr], [direct.query_addr], tls_cert=str(cert), tls_key=str(key))
    with running(settings, workdir / "envoy") as gateway:
        yield gateway, cert


def test_grpc_over_tls(tls_edge):
    gateway, cert = tls_edge
    assert gateway.endpoints.tls
    credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    with grpc.secure_channel(gateway.endpoints.grpc, credentials) as channel:
        stub = query_service_pb2_grpc.GraphQueryServiceStub(channel)
        resp = stub.GetSchema(q.GetSchemaRequest(graph=f"graphs/tls-{uuid.uuid4().hex[:6]}"), timeout=10)
        assert resp.schema.version == 0  # no schema yet: an empty one, through TLS
    with grpc.insecure_channel(gateway.endpoints.grpc) as plain:
        with pytest.raises(grpc.RpcError) as err:
            query_service_pb2_grpc.GraphQueryServiceStub(plain).GetSchema(
                q.GetSchemaRequest(graph="graphs/tls"), timeout=3)
        assert err.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def test_grpcurl_over_tls(tls_edge):
    gateway, cert = tls_edge
    assert GRPCURL, "grpcurl is not installed in the virtualenv"
    out = subprocess.run([GRPCURL, "-cacert", str(cert), "-max-time", "10", gateway.endpoints.grpc, "list"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "edgewise.graph.v1.GraphQueryService" in out.stdout.split()


def test_rest_over_https(tls_edge):
    gateway, cert = tls_edge
    assert gateway.endpoints.rest_url.startswith("https://")
    context = ssl.create_default_context(cafile=str(cert))
    status, body = call(f"{gateway.endpoints.rest_url}/v1/graphs/tls-rest/nodes/nobody", context=context)
    assert status == 404 and error_info(body)["reason"] == "NODE_NOT_FOUND"
