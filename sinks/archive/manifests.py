"""The manifests of the partitions a worker owns, read once, written guarded.

A partition's manifest is read when its first record arrives; uploads that a
crashed run announced but never confirmed are settled then, by whether their
object exists. A member the group replaced may still be in such a round, so
announcements younger than a round's longest storage time are left to finish:
the batch is held until then (``PreviousRoundRunning``), and an object that
round publishes late is found, not orphaned. Every rewrite is conditional on
the version this worker last read or wrote, so a second writer (a member the
group already replaced, still finishing its roll) fails with WriteConflict
instead of silently undoing the other's ranges.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sinks.archive import layout
from sinks.archive.layout import Manifest
from sinks.archive.storage import Store
from sinks.batch import BackendUnavailable
from sinks.consumer import Position

log = logging.getLogger(__name__)

# The worker's retrying storage call: (what, blocking call, *args) -> result
Storage = Callable[..., Awaitable[Any]]


# Clocks of two workers may disagree by this much.
CLOCK_SKEW_S = 5.0


class PreviousRoundRunning(BackendUnavailable):
    """A partition's manifest announces uploads that may still be under way."""


class ManifestBook:
    """Cached manifests with the version each was read or written at."""

    def __init__(self, store: Store, storage: Storage, round_s: float) -> None:
        self.store = store
        self._storage = storage
        # The longest a round's storage work lasts, announcement included.
        self._round_s = round_s
        self._manifests: dict[Position, Manifest] = {}
        self._versions: dict[Position, str | None] = {}

    def __getitem__(self, position: Position) -> Manifest:
        return self._manifests[position]

    async def load(self, position: Position) -> Manifest:
        """The partition's manifest, read and settled on first use."""
        manifest = self._manifests.get(position)
        if manifest is not None:
            return manifest
        key = layout.manifest_key(*position)
        data, version = await self._storage(
            f"reading {key}", self.store.get_versioned, key
        )
        manifest = Manifest.from_bytes(position[0], position[1], data)
        if manifest.pending:
            age_s = time.time() - manifest.announced_unix_s
            wait_s = self._round_s + CLOCK_SKEW_S - age_s
            if wait_s > 0:
                raise PreviousRoundRunning(
                    f"{key}: uploads announced {age_s:.0f}s ago may still be "
                    f"under way; they are settled in {wait_s:.0f}s"
                )
        await self._settle(manifest)
        self._manifests[position] = manifest
        self._versions[position] = version
        return manifest

    async def write(self, position: Position) -> None:
        """Store the manifest unless someone else rewrote it since we did.

        A write whose answer was lost and is retried finds its own version
        and fails the same way; the restart that follows is safe.
        """
        key = layout.manifest_key(*position)
        data = self._manifests[position].to_bytes()
        self._versions[position] = await self._storage(
            f"writing {key}", self.store.put_if, key, data, self._versions[position]
        )

    def forget(self, position: Position) -> None:
        self._manifests.pop(position, None)
        self._versions.pop(position, None)

    async def _settle(self, manifest: Manifest) -> None:
        for folder, spans in list(manifest.pending.items()):
            for first, last in list(spans):
                name = layout.object_name(
                    manifest.topic, manifest.partition, first, last
                )
                key = f"{folder}/{name}"
                found = await self._storage(f"checking {key}", self.store.exists, key)
                manifest.settle(folder, first, last, uploaded=found)
                if found:
                    log.info("%s was uploaded by a run stopped before confirming", key)
