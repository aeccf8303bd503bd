"""A file layer that loses power: fault injection for the device's persistence.

:class:`CutFiles` is :class:`signet.fsio.Files` with a power switch. Every write
boundary is numbered from 1 in the order it happens: each ``append``, each temp
file write and each rename inside ``write_atomic``, each ``remove``. With
``cut_at=k`` the k-th boundary does not happen and :class:`PowerCut` is raised
instead; with ``torn=t`` as well, a write boundary first puts the first ``t``
bytes of its data on disk (a torn write). After a cut the object is dead: every
further call raises :class:`PowerCut`, as nothing runs after power is gone.
"Rebooting" is making fresh objects on the same directory.

Typical use (a whole-agent test does the same with the agent in ``run``)::

    log = record_boundaries(lambda files: run(files), root)   # dry run, no cut
    for cut_at, torn in cut_points(log):
        fresh directory ...
        try:
            run(CutFiles(root, cut_at, torn))
        except PowerCut:
            pass
        reboot_and_check(Files(root, sync=False))

Only write boundaries are counted: reads cannot lose data. Completed calls are
taken as durable, which :class:`~signet.fsio.Files` makes true with
``sync=True`` (fsync); the test layer runs with ``sync=False`` for speed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from signet.fsio import Files


class PowerCut(BaseException):
    """Power was cut at a write boundary.

    A BaseException, so code under test that catches ``Exception`` (an agent's
    main loop) cannot swallow it and carry on as if power were still there.
    """


@dataclass(frozen=True)
class Boundary:
    """One write boundary: kind is "append", "tmp" (write_atomic's temp file),
    "rename" or "remove"; size is the bytes a write hands over (0 otherwise)."""

    kind: str
    name: str
    size: int

    @property
    def writes(self) -> bool:
        return self.kind in ("append", "tmp")


class CutFiles(Files):
    def __init__(self, root: str, cut_at: int | None = None, torn: int | None = None) -> None:
        super().__init__(root, sync=False)
        self.cut_at = cut_at
        self.torn = torn
        self.boundaries = 0
        self.log: list[Boundary] = []
        self.dead = False

    def _boundary(self, kind: str, path: str, size: int) -> bool:
        """Count a boundary; True if power goes now."""
        if self.dead:
            raise PowerCut("already off")
        self.boundaries += 1
        self.log.append(Boundary(kind, path.rsplit("/", 1)[-1], size))
        if self.boundaries == self.cut_at:
            self.dead = True
            return True
        return False

    def _write(self, path: str, data: bytes, mode: str) -> None:
        kind = "append" if mode == "ab" else "tmp"
        if self._boundary(kind, path, len(data)):
            if self.torn:
                with open(path, mode) as f:
                    f.write(bytes(data)[: self.torn])
            raise PowerCut(f"{kind} {path} cut after {self.torn or 0} of {len(data)} bytes")
        super()._write(path, data, mode)

    def _rename(self, src: str, dst: str) -> None:
        if self._boundary("rename", dst, 0):
            raise PowerCut(f"rename to {dst} cut")
        super()._rename(src, dst)

    def _remove(self, path: str) -> None:
        if self._boundary("remove", path, 0):
            raise PowerCut(f"remove {path} cut")
        super()._remove(path)

    def read(self, name: str) -> bytes | None:
        self._alive()
        return super().read(name)

    def open_read(self, name: str):
        self._alive()
        return super().open_read(name)

    def _alive(self) -> None:
        if self.dead:
            raise PowerCut("already off")


def torn_sizes(size: int) -> list[int]:
    """Cut points inside a write of size bytes: one byte in, half way, one byte short."""
    return sorted({t for t in (1, size // 2, size - 1) if 0 < t < size})


def cut_points(log: list[Boundary]) -> Iterator[tuple[int, int | None]]:
    """(cut_at, torn) for every boundary of a recorded run: a clean cut at each,
    plus torn variants at each write."""
    for k, boundary in enumerate(log, 1):
        yield k, None
        if boundary.writes:
            for t in torn_sizes(boundary.size):
                yield k, t


def record_boundaries(run: Callable[[CutFiles], object], root: str) -> list[Boundary]:
    """Run once without a cut and return its write boundaries, in order."""
    files = CutFiles(root)
    run(files)
    return files.log
