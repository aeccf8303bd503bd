# The device's file layer: a flat directory of small files.
#
# Every mutation is ONE call (append, write_atomic, remove) so a test layer
# can cut power between or inside calls (host_tests/powercut.py overrides the
# three primitives _write, _rename and _remove). Nothing above this module
# opens a file for writing.

import os

_TMP = ".tmp"


class Files:
    """Small-file I/O in one directory; bytes_written counts what reaches the FS.

    sync=True makes every write durable before the call returns: on CPython
    (a Pi's ext4) that needs fsync of the file and of the directory after a
    rename; on MicroPython close() commits on littlefs, and os.sync() (where
    a port has it) flushes block-device caches.
    """

    def __init__(self, root, sync=True):
        self.root = root.rstrip("/") or "/"
        self._prefix = self.root + "/"  # a path is then one concatenation, not two
        self.sync = sync
        self.bytes_written = 0
        try:
            os.mkdir(self.root)
        except OSError:  # exists (EEXIST); anything worse shows on first use
            pass

    def path(self, name):
        return self._prefix + name

    # -- reads -------------------------------------------------------------

    def read(self, name):
        """Whole file, or None if missing."""
        try:
            with open(self.path(name), "rb") as f:
                return f.read()
        except OSError:
            return None

    def size(self, name):
        try:
            return os.stat(self.path(name))[6]
        except OSError:
            return -1

    def listdir(self):
        return os.listdir(self.root)

    def open_read(self, name):
        return open(self.path(name), "rb")

    # -- mutations: one call each ------------------------------------------

    def append(self, name, data):
        self._write(self.path(name), data, "ab")

    def write_atomic(self, name, data):
        # Needs a rename that replaces its target atomically: littlefs (ESP32,
        # rp2) and POSIX file systems do; FAT does not and is not supported.
        # A cut before the rename leaves the old file and a stale .tmp.
        path = self.path(name)
        self._write(path + _TMP, data, "wb")
        self._rename(path + _TMP, path)

    def remove(self, name):
        if self.size(name) >= 0:  # missing is fine: a prune may be redone
            self._remove(self.path(name))

    # -- primitives (the power-cut test layer overrides these) --------------

    def _write(self, path, data, mode):
        with open(path, mode) as f:
            f.write(data)
            if self.sync and hasattr(os, "fsync"):
                f.flush()
                os.fsync(f.fileno())
        self.bytes_written += len(data)
        if self.sync and hasattr(os, "sync") and not hasattr(os, "fsync"):
            os.sync()

    def _rename(self, src, dst):
        os.rename(src, dst)
        self._sync_dir()

    def _remove(self, path):
        os.remove(path)
        self._sync_dir()

    def _sync_dir(self):
        # A rename or unlink on ext4 is durable only once the directory is.
        if self.sync and hasattr(os, "fsync") and hasattr(os, "O_RDONLY"):
            fd = os.open(self.root, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
