"""Where archive objects go: a local folder or an S3-compatible bucket.

Both stores take keys with ``/`` separators relative to the archive root.
Writes are atomic for readers: the local store renames a finished temporary
file into place, S3 publishes an object only when its (multipart) upload
completes. Calls block; the sink runs them in a thread.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from llmobs.errors import ConfigError, RetriableStageError, StageError

log = logging.getLogger(__name__)


class Store(Protocol):
    """The few object operations the archive needs."""

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes | None: ...

    def list(self, prefix: str = "") -> list[str]: ...

    def delete(self, key: str) -> None: ...

    def describe(self) -> str: ...


class LocalStore:
    """Objects as files under a root folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes | None:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            return None

    def list(self, prefix: str = "") -> list[str]:
        base = self.root / prefix if prefix.endswith("/") else self.root
        if not base.exists():
            return []
        keys = []
        for path in base.rglob("*"):
            if path.is_file() and not path.name.startswith(".tmp-"):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)

    def describe(self) -> str:
        return str(self.root)


class S3Store:
    """Objects in an S3 bucket under a prefix, through boto3."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        multipart_chunk_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url
        self._client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}),
        )
        self._transfer = TransferConfig(
            multipart_threshold=multipart_chunk_bytes,
            multipart_chunksize=multipart_chunk_bytes,
        )

    def put(self, key: str, data: bytes) -> None:
        with _translated(f"upload s3://{self.bucket}/{self.prefix}{key}"):
            self._client.upload_fileobj(
                io.BytesIO(data),
                self.bucket,
                self.prefix + key,
                Config=self._transfer,
            )

    def get(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            with _translated(f"download s3://{self.bucket}/{self.prefix}{key}"):
                response = self._client.get_object(
                    Bucket=self.bucket, Key=self.prefix + key
                )
                return bytes(response["Body"].read())
        except StageError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and _code(cause) in (
                "NoSuchKey",
                "404",
            ):
                return None
            raise

    def list(self, prefix: str = "") -> list[str]:
        keys = []
        with _translated(f"list s3://{self.bucket}/{self.prefix}{prefix}"):
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + prefix
            )
            for page in pages:
                for entry in page.get("Contents", ()):
                    keys.append(entry["Key"][len(self.prefix) :])
        return sorted(keys)

    def delete(self, key: str) -> None:
        with _translated(f"delete s3://{self.bucket}/{self.prefix}{key}"):
            self._client.delete_object(Bucket=self.bucket, Key=self.prefix + key)

    def describe(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"s3://{self.bucket}/{self.prefix}{where}"


class _translated:
    """Turns boto3/botocore errors into StageError (retriable when transient)."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, _tb: Any) -> None:
        if exc is None:
            return
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, ClientError):
            code = _code(exc)
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status >= 500 or code in ("SlowDown", "RequestTimeout", "Throttling"):
                raise RetriableStageError(f"{self.what}: {code}") from exc
            raise StageError(f"{self.what}: {code}") from exc
        if isinstance(exc, (BotoCoreError, OSError)):
            raise RetriableStageError(
                f"{self.what}: {type(exc).__name__}: {exc}"
            ) from exc


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def open_store(
    url: str,
    *,
    endpoint_url: str | None = None,
    region: str = "us-east-1",
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    multipart_chunk_bytes: int = 8 * 1024 * 1024,
) -> Store:
    """The store an ``archive_url`` names: a folder, file:// or s3://."""
    parts = urlsplit(url)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ConfigError(f"archive_url {url!r} names no bucket")
        return S3Store(
            parts.netloc,
            parts.path,
            endpoint_url=endpoint_url,
            region=region,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            multipart_chunk_bytes=multipart_chunk_bytes,
        )
    if parts.scheme == "file":
        return LocalStore(Path(parts.path))
    if parts.scheme:
        raise ConfigError(f"archive_url scheme {parts.scheme!r} is not supported")
    return LocalStore(Path(url))
