"""Where archive objects go: a local folder or an S3-compatible bucket.

Both stores take keys with ``/`` separators relative to the archive root.
Writes are atomic for readers: the local store renames a finished temporary
file into place, S3 publishes an object only when its (multipart) upload
completes. ``put_if`` writes only over the version the caller read (S3
``If-Match`` / ``If-None-Match``; a lock file and a content hash locally),
so two writers of one manifest cannot silently overwrite each other. Calls
block; the sink runs them in a thread.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from llmobs.errors import ConfigError, RetriableStageError, StageError

log = logging.getLogger(__name__)


class WriteConflict(StageError):
    """A conditional write found another version than the one it was based on."""


class Store(Protocol):
    """The few object operations the archive needs."""

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes | None: ...

    def get_versioned(self, key: str) -> tuple[bytes | None, str | None]:
        """The object and a token of its version; (None, None) when absent."""

    def put_if(self, key: str, data: bytes, version: str | None) -> str:
        """Write unless the object changed since ``version`` (None: absent).

        Returns the new version; WriteConflict when the object changed.
        """

    def exists(self, key: str) -> bool: ...

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

    def get_versioned(self, key: str) -> tuple[bytes | None, str | None]:
        data = self.get(key)
        return data, None if data is None else _digest(data)

    def put_if(self, key: str, data: bytes, version: str | None) -> str:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        # Every writer of the key takes the lock; a reader needs none, since
        # put() replaces the file whole.
        with open(path.parent / f".lock-{path.name}", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.get(key)
            found = None if current is None else _digest(current)
            if found != version:
                raise WriteConflict(f"{key} changed since version {version}")
            self.put(key, data)
        return _digest(data)

    def exists(self, key: str) -> bool:
        return (self.root / key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        # Walk only the folders that can hold keys starting with ``prefix``:
        # its folder part, then the entries its last part can still match.
        folder, _, _name = prefix.rpartition("/")
        base = self.root / folder if folder else self.root
        keys = [
            key
            for key in _walk(base, f"{folder}/" if folder else "", prefix)
            if key.startswith(prefix)
        ]
        return sorted(keys)

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)

    def describe(self) -> str:
        return str(self.root)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _walk(folder: Path, key_prefix: str, prefix: str) -> Iterator[str]:
    """Keys of the files under ``folder`` that may start with ``prefix``."""
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        # Temporary files and lock files are never objects.
        if entry.name.startswith("."):
            continue
        key = key_prefix + entry.name
        if entry.is_dir(follow_symlinks=False):
            below = key + "/"
            if below.startswith(prefix) or prefix.startswith(below):
                yield from _walk(Path(entry.path), below, prefix)
        elif entry.is_file():
            yield key


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
        self._conditional = True

    def put(self, key: str, data: bytes) -> None:
        with _translated(f"upload s3://{self.bucket}/{self.prefix}{key}"):
            self._client.upload_fileobj(
                io.BytesIO(data),
                self.bucket,
                self.prefix + key,
                Config=self._transfer,
            )

    def get(self, key: str) -> bytes | None:
        return self.get_versioned(key)[0]

    def get_versioned(self, key: str) -> tuple[bytes | None, str | None]:
        from botocore.exceptions import ClientError

        try:
            with _translated(f"download s3://{self.bucket}/{self.prefix}{key}"):
                response = self._client.get_object(
                    Bucket=self.bucket, Key=self.prefix + key
                )
                return bytes(response["Body"].read()), str(response["ETag"])
        except StageError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and _code(cause) in ("NoSuchKey", "404"):
                return None, None
            raise

    def put_if(self, key: str, data: bytes, version: str | None) -> str:
        from botocore.exceptions import ClientError

        where = f"s3://{self.bucket}/{self.prefix}{key}"
        condition = {"IfNoneMatch": "*"} if version is None else {"IfMatch": version}
        if not self._conditional:
            condition = {}
        try:
            with _translated(f"conditional upload {where}"):
                response = self._client.put_object(
                    Bucket=self.bucket, Key=self.prefix + key, Body=data, **condition
                )
                return str(response["ETag"])
        except StageError as exc:
            cause = exc.__cause__
            if not isinstance(cause, ClientError):
                raise
            if _code(cause) in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise WriteConflict(f"{where} changed since version {version}") from exc
            if _code(cause) != "NotImplemented" or not condition:
                raise
        # A store without conditional writes: last writer wins, as on any
        # store before they existed. Said once.
        log.warning("%s does not take conditional writes; writing plainly", where)
        self._conditional = False
        return self.put_if(key, data, version)

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            with _translated(f"head s3://{self.bucket}/{self.prefix}{key}"):
                self._client.head_object(Bucket=self.bucket, Key=self.prefix + key)
        except StageError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and _code(cause) in (
                "NoSuchKey",
                "NotFound",
                "404",
            ):
                return False
            raise
        return True

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
