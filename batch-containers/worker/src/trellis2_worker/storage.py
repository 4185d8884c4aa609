"""Where the worker's inputs and outputs live: a local path, `s3://bucket/key` (boto3) or `https://` (read only).

Every function takes a URI string. Local paths may be relative. Downloads are streamed to disk and stopped at
`max_bytes` (the archive limit the Java side enforces), so a lying server cannot fill the disk. A user's https URL
is fetched under the same address policy as Java's SafeHttp (net.py), and a download given Prepare's record
(`expect`: bytes and sha256) must be exactly the bytes Prepare inspected.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.parse
from pathlib import Path

from trellis2_worker import net
from trellis2_worker.errors import InputError

# archive_rules.json's archive limit, as the Java zip inspection has it (read as a file: storage sits below ingest)
MAX_DOWNLOAD_BYTES = json.loads((Path(__file__).parent / "ingest" / "archive_rules.json").read_text())["max_archive_bytes"]
_CHUNK = 1 << 20


def is_s3(uri: str) -> bool:
    return str(uri).startswith("s3://")


def is_http(uri: str) -> bool:
    return str(uri).startswith(("https://", "http://"))


def split_s3(uri: str) -> tuple[str, str]:
    parsed = urllib.parse.urlparse(uri)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if not bucket or not key:
        raise InputError(f"not an s3://bucket/key URI: {uri}")
    return bucket, key


def _s3_client():
    import boto3  # imported late: slow to import, and only S3 URIs need it

    # AWS_ENDPOINT_URL is honoured by boto3 itself (moto server, MinIO, LocalStack).
    return boto3.client("s3")


def _copy_limited(src, dst, max_bytes: int, what: str, digest=None) -> int:
    total = 0
    while True:
        chunk = src.read(_CHUNK)
        if not chunk:
            return total
        total += len(chunk)
        if total > max_bytes:
            raise InputError(f"{what} is larger than the {max_bytes // (1024 * 1024)} MB limit")
        if digest is not None:
            digest.update(chunk)
        dst.write(chunk)


def _shown(uri: str) -> str:
    """Scheme, host and path only: query strings often hold signatures."""
    if not is_http(uri):
        return uri
    parts = urllib.parse.urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


def check_pinned(size: int, sha256: str, expect: dict | None, uri: str) -> None:
    """Refuses bytes other than the ones Prepare inspected (its record's `bytes` and `sha256`)."""
    if not expect:
        return
    if ("bytes" in expect and expect["bytes"] != size) or ("sha256" in expect and expect["sha256"] != sha256):
        raise InputError(f"{_shown(uri)} is not the archive inspected when the request was made ({size:,} bytes, "
                         f"sha256 {sha256[:12]}..., expected {expect.get('bytes', '?'):,} bytes, sha256 "
                         f"{str(expect.get('sha256', '?'))[:12]}...); it changed after submission")


def download(uri: str, path: str | os.PathLike, max_bytes: int = MAX_DOWNLOAD_BYTES,
             expect: dict | None = None) -> Path:
    """Copies the object at `uri` to the local file `path` (parents made), refusing more than `max_bytes`, and,
    given Prepare's record `expect` ({"bytes", "sha256"}), anything but the bytes it inspected."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    digest = hashlib.sha256()
    try:
        if is_s3(uri):
            bucket, key = split_s3(uri)
            client = _s3_client()
            try:
                head = client.head_object(Bucket=bucket, Key=key)
            except Exception as exc:  # noqa: BLE001 - botocore raises many kinds; all mean "cannot read it"
                raise InputError(f"cannot read {uri}: {exc}") from exc
            if head.get("ContentLength", 0) > max_bytes:
                raise InputError(f"{uri} is larger than the {max_bytes // (1024 * 1024)} MB limit")
            body = client.get_object(Bucket=bucket, Key=key)["Body"]
            with open(tmp, "wb") as out:
                size = _copy_limited(body, out, max_bytes, uri, digest)
        elif is_http(uri):
            with net.SafeHttp.from_environment().get(uri) as response, open(tmp, "wb") as out:
                length = response.headers.get("Content-Length")
                if length and length.isdigit() and int(length) > max_bytes:
                    raise InputError(f"{_shown(uri)} is larger than the {max_bytes // (1024 * 1024)} MB limit")
                size = _copy_limited(response, out, max_bytes, _shown(uri), digest)
        else:
            src = Path(uri)
            if not src.is_file():
                raise InputError(f"no such file: {uri}")
            if src.stat().st_size > max_bytes:
                raise InputError(f"{uri} is larger than the {max_bytes // (1024 * 1024)} MB limit")
            with open(src, "rb") as f, open(tmp, "wb") as out:
                size = _copy_limited(f, out, max_bytes, uri, digest)
        check_pinned(size, digest.hexdigest(), expect, uri)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def open_input(uri: str, workdir: str | os.PathLike | None = None, max_bytes: int = MAX_DOWNLOAD_BYTES,
               expect: dict | None = None) -> Path:
    """A local path holding the input: the path itself when local (file or directory), else a download into
    `workdir` (a fresh temporary directory when not given; the caller removes it). Given Prepare's record `expect`,
    the bytes must be the inspected ones (a local file is hashed where it lies)."""
    if not (is_s3(uri) or is_http(uri)):
        local = Path(uri)
        if not local.exists():
            raise InputError(f"no such file or directory: {uri}")
        if expect and local.is_file():
            digest = hashlib.sha256()
            with open(local, "rb") as f:
                while chunk := f.read(_CHUNK):
                    digest.update(chunk)
            check_pinned(local.stat().st_size, digest.hexdigest(), expect, uri)
        return local
    workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="trellis2-input-"))
    name = Path(urllib.parse.urlparse(uri).path).name or "input"
    return download(uri, workdir / name, max_bytes=max_bytes, expect=expect)


def write_bytes(uri: str, data: bytes) -> None:
    """Writes `data` to a local path (parents made, written atomically) or to s3://."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        _s3_client().put_object(Bucket=bucket, Key=key, Body=data)
        return
    if is_http(uri):
        raise ValueError(f"cannot write to a URL: {uri}")
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def read_bytes(uri: str, max_bytes: int = MAX_DOWNLOAD_BYTES) -> bytes:
    with tempfile.TemporaryDirectory(prefix="trellis2-read-") as tmp:
        return download(uri, Path(tmp) / "data", max_bytes=max_bytes).read_bytes()


def upload_file(path: str | os.PathLike, uri: str) -> None:
    """Copies the local file `path` to `uri` (s3:// uses multipart upload for large files)."""
    path = Path(path)
    if is_s3(uri):
        bucket, key = split_s3(uri)
        _s3_client().upload_file(str(path), bucket, key)
        return
    if is_http(uri):
        raise ValueError(f"cannot write to a URL: {uri}")
    dst = Path(uri)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    shutil.copyfile(path, tmp)
    os.replace(tmp, dst)
