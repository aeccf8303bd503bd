"""LinuxI2C (tools/pi/i2c_linux.py) and the ATECC608 driver over it.

No /dev/i2c-N exists off a Pi, so these tests stand in for the kernel at the
file-descriptor boundary: the open/ioctl/read/write/close functions LinuxI2C calls are
replaced by a fake i2c-dev that plays each transfer on the emulated ATECC608 and fails a
NACKed one with EREMOTEIO, as the Pi's bcm2835 I2C driver does.
"""

from __future__ import annotations

import errno
import os

import pytest

from kit.atecc608_emu import EmulatedATECC608, trust_and_go
from signet.atecc608 import ATECC608, ATECCError
from signet.se_signer import SecureElementSigner, self_test
from signet_tools.pi.i2c_linux import I2C_SLAVE, LinuxI2C


class FakeI2cDev:
    """The kernel side of /dev/i2c-1: one fd, I2C_SLAVE then plain read/write."""

    FD = 7

    def __init__(self, chip: EmulatedATECC608, nack_errno: int = errno.EREMOTEIO) -> None:
        self.chip = chip
        self.nack_errno = nack_errno
        self.addr: int | None = None
        self.ioctls: list[tuple[int, int]] = []
        self.closed = False
        self.busy_addresses: set[int] = set()

    def open_fd(self, path: str, flags: int) -> int:
        assert path == "/dev/i2c-1" and flags & os.O_RDWR
        return self.FD

    def ioctl(self, fd: int, request: int, arg: int) -> int:
        assert fd == self.FD
        if arg in self.busy_addresses:
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
        self.ioctls.append((request, arg))
        self.addr = arg
        return 0

    def write(self, fd: int, data: bytes) -> int:
        assert fd == self.FD and self.addr is not None
        try:
            self.chip.writeto(self.addr, data)
        except OSError:
            raise OSError(self.nack_errno, os.strerror(self.nack_errno)) from None
        return len(data)

    def read(self, fd: int, n: int) -> bytes:
        assert fd == self.FD and self.addr is not None
        try:
            return self.chip.readfrom(self.addr, n)
        except OSError:
            raise OSError(self.nack_errno, os.strerror(self.nack_errno)) from None

    def close(self, fd: int) -> None:
        self.closed = True

    def bus(self) -> LinuxI2C:
        return LinuxI2C(
            "/dev/i2c-1",
            open_fd=self.open_fd,
            ioctl=self.ioctl,
            read=self.read,
            write=self.write,
            close=self.close,
        )


@pytest.mark.parametrize("nack", [errno.EREMOTEIO, errno.ENXIO])
def test_the_driver_signs_over_linux_i2c(nack: int) -> None:
    made = trust_and_go(address=0x35)
    kernel = FakeI2cDev(made.chip, nack)
    with kernel.bus() as bus:
        drv = ATECC608(bus, 0x35, sleep_us=made.chip.sleep_us)
        assert drv.info()[2] == 0x60
        signer = SecureElementSigner(drv, 0)
        self_test(drv, 0, signer.public_key)
        assert len(signer.sign_digest(bytes(32))) == 64
    assert kernel.closed
    # I2C_SLAVE is set only when the address changes: the wake pulse (0x00), then the chip.
    assert all(req == I2C_SLAVE for req, _ in kernel.ioctls)
    assert {a for _, a in kernel.ioctls} == {0x00, 0x35}
    assert len(kernel.ioctls) < 2 * len(made.chip.commands) + 4


def test_a_nack_is_an_oserror_as_from_machine_i2c() -> None:
    kernel = FakeI2cDev(trust_and_go(address=0x35).chip)
    bus = kernel.bus()
    with pytest.raises(OSError) as caught:
        bus.readfrom(0x35, 4)  # asleep: NACK
    assert caught.value.errno == errno.EREMOTEIO


def test_no_chip_on_the_bus_is_the_drivers_no_response_sentence() -> None:
    chip = trust_and_go(address=0x60).chip
    chip.missing = True
    drv = ATECC608(FakeI2cDev(chip).bus(), 0x60, sleep_us=chip.sleep_us)
    with pytest.raises(ATECCError, match=r"^ATECC608 at 0x60: no response \(not wired"):
        drv.serial()


def test_open_failures_are_the_oss_own_errors() -> None:
    # tools/pi/keys.py tells a missing bus from a permission problem by these types.
    def missing(path: str, flags: int) -> int:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory")

    def denied(path: str, flags: int) -> int:
        raise PermissionError(errno.EACCES, "Permission denied")

    with pytest.raises(FileNotFoundError):
        LinuxI2C("/dev/i2c-1", open_fd=missing)
    with pytest.raises(PermissionError):
        LinuxI2C("/dev/i2c-1", open_fd=denied)


def test_an_address_owned_by_a_kernel_driver_is_named() -> None:
    kernel = FakeI2cDev(trust_and_go(address=0x60).chip)
    kernel.busy_addresses.add(0x60)
    with pytest.raises(OSError, match=r"cannot address 0x60 \(a kernel driver owns that address\)"):
        kernel.bus().readfrom(0x60, 1)


def test_short_transfers_and_a_closed_bus_are_errors() -> None:
    kernel = FakeI2cDev(trust_and_go(address=0x60).chip)
    bus = LinuxI2C(
        "/dev/i2c-1",
        open_fd=kernel.open_fd,
        ioctl=kernel.ioctl,
        read=lambda fd, n: b"\x04",
        write=lambda fd, data: len(data) - 1,
        close=kernel.close,
    )
    with pytest.raises(OSError, match="short read from 0x60"):
        bus.readfrom(0x60, 4)
    with pytest.raises(OSError, match="short write to 0x60"):
        bus.writeto(0x60, b"\x02")
    bus.close()
    with pytest.raises(OSError, match="closed"):
        bus.writeto(0x60, b"\x02")
