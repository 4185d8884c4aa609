"""Reading and writing URIs: local paths, s3:// (moto's in-process mock) and https:// (streamed, capped)."""

from __future__ import annotations

import datetime
import hashlib
import http.server
import ipaddress
import ssl
import threading
import urllib.parse

import pytest

from trellis2_worker import storage
from trellis2_worker.errors import InputError


def test_local_write_read_upload_download(tmp_path):
    target = tmp_path / "deep" / "report.json"
    storage.write_bytes(str(target), b'{"ok": true}')
    assert target.read_bytes() == b'{"ok": true}'
    assert storage.read_bytes(str(target)) == b'{"ok": true}'
    storage.upload_file(target, str(tmp_path / "copy" / "r.json"))
    assert (tmp_path / "copy" / "r.json").read_bytes() == b'{"ok": true}'
    assert storage.open_input(str(tmp_path)) == tmp_path
    with pytest.raises(InputError, match="no such"):
        storage.open_input(str(tmp_path / "missing.zip"))
    with pytest.raises(InputError, match="limit"):
        storage.download(str(target), tmp_path / "small", max_bytes=4)


def test_s3_round_trip_and_missing_object(tmp_path, monkeypatch):
    moto = pytest.importorskip("moto")
    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with moto.mock_aws():
        import boto3

        boto3.client("s3").create_bucket(Bucket="bucket")
        storage.write_bytes("s3://bucket/requests/r1/report.json", b"{}")
        assert storage.read_bytes("s3://bucket/requests/r1/report.json") == b"{}"
        src = tmp_path / "assets.zip"
        src.write_bytes(b"PK" + b"x" * 1000)
        storage.upload_file(src, "s3://bucket/in/assets.zip")
        local = storage.open_input("s3://bucket/in/assets.zip", tmp_path / "dl")
        assert local.read_bytes() == src.read_bytes() and local.name == "assets.zip"
        with pytest.raises(InputError, match="limit"):
            storage.download("s3://bucket/in/assets.zip", tmp_path / "x", max_bytes=100)
        with pytest.raises(InputError, match="cannot read"):
            storage.download("s3://bucket/in/nothing.zip", tmp_path / "y")


class _Handler(http.server.BaseHTTPRequestHandler):
    body = b"z" * 300_000

    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path == "/missing":
            self.send_error(404)
            return
        if self.path.startswith("/redirect?to="):
            self.send_response(302)
            self.send_header("Location", urllib.parse.unquote(self.path.split("=", 1)[1]))
            self.end_headers()
            return
        self.send_response(200)
        if self.path != "/no-length":  # a server that does not say how much it will send
            self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


def _self_signed(tmp_path):
    """A throw-away certificate for 127.0.0.1 and localhost, trusted through SSL_CERT_FILE."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture()
def server(tmp_path, monkeypatch):
    """An https server on loopback; loopback is allowed unless a test takes that back."""
    cert_file, key_file = _self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
    monkeypatch.setenv("TRELLIS2_ALLOW_LOOPBACK_URLS", "true")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_https_download_is_streamed_and_stopped_at_the_cap(tmp_path, server):
    path = storage.download(f"{server}/data.zip", tmp_path / "a.zip")
    assert path.stat().st_size == 300_000
    for url in (f"{server}/data.zip", f"{server}/no-length"):
        with pytest.raises(InputError, match="limit"):
            storage.download(url, tmp_path / "b.zip", max_bytes=100_000)
        assert not (tmp_path / "b.zip").exists() and not (tmp_path / "b.zip.part").exists()
    with pytest.raises(InputError, match="HTTP 404"):
        storage.download(f"{server}/missing", tmp_path / "c.zip")


def test_plain_http_is_refused(tmp_path):
    with pytest.raises(InputError, match="not https"):
        storage.download("http://example.invalid/a.zip", tmp_path / "a.zip")


def test_loopback_is_refused_after_resolving_the_name(tmp_path, server, monkeypatch):
    monkeypatch.delenv("TRELLIS2_ALLOW_LOOPBACK_URLS")
    port = server.rsplit(":", 1)[1]
    for url in (f"{server}/data.zip", f"https://localhost:{port}/data.zip"):
        with pytest.raises(InputError, match="resolves to .*loopback address, which the service does not fetch"):
            storage.download(url, tmp_path / "a.zip")
    assert not (tmp_path / "a.zip").exists()


@pytest.mark.parametrize("target, phrase", [
    ("http://127.0.0.1:1/x.zip", "not https"),  # https -> http
    ("https://169.254.169.254/latest/meta-data/", "cloud metadata address"),
    ("https://10.0.0.1/x.zip", "private or link-local address"),
])
def test_every_redirect_is_vetted(tmp_path, server, target, phrase):
    with pytest.raises(InputError, match=phrase):
        storage.download(f"{server}/redirect?to={urllib.parse.quote(target, safe='')}", tmp_path / "a.zip")


def test_too_many_redirects_are_refused(tmp_path, server):
    url = f"{server}/data.zip"
    for _ in range(6):
        url = f"{server}/redirect?to={urllib.parse.quote(url, safe='')}"
    with pytest.raises(InputError, match="redirects more than 5 times"):
        storage.download(url, tmp_path / "a.zip")


def test_a_download_must_be_the_bytes_prepare_inspected(tmp_path, server):
    body = _Handler.body
    pin = {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    assert storage.open_input(f"{server}/data.zip", tmp_path / "ok", expect=pin).read_bytes() == body
    other = {"bytes": len(body), "sha256": hashlib.sha256(b"the inspected bytes").hexdigest()}
    with pytest.raises(InputError, match="is not the archive inspected when the request was made") as err:
        storage.open_input(f"{server}/data.zip?X-Amz-Signature=secret", tmp_path / "no", expect=other)
    assert "secret" not in str(err.value)
    assert not list((tmp_path / "no").glob("*"))
    local = tmp_path / "ok" / "data.zip"
    with pytest.raises(InputError, match="not the archive inspected"):
        storage.open_input(str(local), expect={**pin, "bytes": 1})
