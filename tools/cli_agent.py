"""`signet agent ...`: run the device agent on CPython (a Raspberry Pi); `signet bench agent`."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    """Add this group's commands to `sub` and its benchmarks to `bench`."""
