"""Reading and writing URIs: local paths, s3:// (moto's in-process mock) and https:// (streamed, capped)."""

from __future__ import annotations

import http.server
import threading

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
        self.send_response(200)
        if self.path != "/no-length":  # a server that does not say how much it will send
            self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server(monkeypatch):
    monkeypatch.setenv("TRELLIS2_ALLOW_HTTP", "1")  # plain http only for this local test server
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_http_download_is_streamed_and_stopped_at_the_cap(tmp_path, server):
    path = storage.download(f"{server}/data.zip", tmp_path / "a.zip")
    assert path.stat().st_size == 300_000
    for url in (f"{server}/data.zip", f"{server}/no-length"):
        with pytest.raises(InputError, match="limit"):
            storage.download(url, tmp_path / "b.zip", max_bytes=100_000)
        assert not (tmp_path / "b.zip").exists() and not (tmp_path / "b.zip.part").exists()
    with pytest.raises(InputError, match="cannot download"):
        storage.download(f"{server}/missing", tmp_path / "c.zip")


def test_plain_http_is_refused_by_default(tmp_path, monkeypatch):
    monkeypatch.delenv("TRELLIS2_ALLOW_HTTP", raising=False)
    with pytest.raises(InputError, match="https"):
        storage.download("http://example.invalid/a.zip", tmp_path / "a.zip")
