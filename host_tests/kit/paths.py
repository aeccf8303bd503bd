"""Where things are in the repository, for tests that read docs, configs or firmware tests."""

from __future__ import annotations

from pathlib import Path

HOST_TESTS = Path(__file__).resolve().parent.parent
REPO = HOST_TESTS.parent
FIRMWARE_TESTS = HOST_TESTS / "firmware" / "fwtests"
