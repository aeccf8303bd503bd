"""The kernel's I2C bus (/dev/i2c-N, i2c-dev) with machine.I2C's methods, so the ATECC608
driver (firmware/lib/signet/atecc608.py) runs on a Raspberry Pi unchanged.

Each transfer selects the target with ioctl(I2C_SLAVE, addr) (only when it changes), then
one write(2) or read(2): a plain I2C message with START and STOP, as machine.I2C sends. A
target that does not acknowledge makes the kernel fail the call with EREMOTEIO (the Pi's
bcm2835 driver) or ENXIO (others): that OSError propagates as machine.I2C's does, and the
driver reads it as a NACK (an ATECC608 NACKs while asleep or busy).

Timing: the driver's wake pulse is a write to address 0x00, which holds SDA low long
enough (>= 60 us) only at <= 133 kHz; the Pi's default bus speed is 100 kHz
(dtparam=i2c_arm_baudrate=100000 in /boot/firmware/config.txt). Enable the bus with
`raspi-config nonint do_i2c 0`; the agent's user needs the i2c group.

smbus2 is not used: the SMBus protocol adds a command byte to every read and caps blocks at
32 bytes, while the chip's responses are raw reads of up to 67 bytes.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Callable
from types import TracebackType

I2C_SLAVE = 0x0703  # <linux/i2c-dev.h>: the 7-bit address of the next read/write


class I2CBusError(OSError):
    """The bus itself failed (addressing, short transfer): an OSError like a NACK,
    whose str() is one sentence naming the bus, without the "[Errno N]" prefix."""

    def __str__(self) -> str:
        return str(self.strerror)


class LinuxI2C:
    """machine.I2C's writeto / readfrom_into / readfrom over /dev/i2c-N.

    The open/ioctl/read/write/close functions are parameters so tests can stand in for the
    kernel at the file-descriptor boundary (no /dev/i2c exists off a Pi)."""

    def __init__(
        self,
        path: str,
        *,
        open_fd: Callable[[str, int], int] = os.open,
        ioctl: Callable[[int, int, int], object] = fcntl.ioctl,
        read: Callable[[int, int], bytes] = os.read,
        write: Callable[[int, bytes], int] = os.write,
        close: Callable[[int], None] = os.close,
    ) -> None:
        self.path = path
        self._ioctl, self._read, self._write, self._close = ioctl, read, write, close
        # A failed open raises the OS's own error (FileNotFoundError, PermissionError):
        # the caller (tools/pi/keys.py) names the config field and the fix.
        self._fd: int | None = open_fd(path, os.O_RDWR)
        self._addr: int | None = None

    def _select(self, addr: int) -> int:
        if self._fd is None:
            raise I2CBusError(errno.EBADF, f"{self.path}: the I2C bus is closed")
        if addr != self._addr:
            try:
                self._ioctl(self._fd, I2C_SLAVE, addr)
            except OSError as exc:
                why = (
                    "a kernel driver owns that address"
                    if exc.errno == errno.EBUSY
                    else exc.strerror or str(exc)
                )
                raise I2CBusError(
                    exc.errno, f"{self.path}: cannot address 0x{addr:02x} ({why})"
                ) from None
            self._addr = addr
        return self._fd

    def writeto(self, addr: int, buf: bytes | bytearray | memoryview, stop: bool = True) -> int:
        fd = self._select(addr)
        data = bytes(buf)
        written = self._write(fd, data)  # a NACK: OSError EREMOTEIO / ENXIO
        if written != len(data):
            raise I2CBusError(errno.EIO, f"{self.path}: short write to 0x{addr:02x}")
        return written

    def readfrom_into(self, addr: int, buf: bytearray | memoryview, stop: bool = True) -> None:
        fd = self._select(addr)
        data = self._read(fd, len(buf))  # a NACK: OSError EREMOTEIO / ENXIO
        if len(data) != len(buf):
            raise I2CBusError(errno.EIO, f"{self.path}: short read from 0x{addr:02x}")
        buf[:] = data

    def readfrom(self, addr: int, n: int, stop: bool = True) -> bytes:
        out = bytearray(n)
        self.readfrom_into(addr, out)
        return bytes(out)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            self._close(fd)

    def __enter__(self) -> LinuxI2C:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
