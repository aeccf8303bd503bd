"""Benchmarks: each prints a ratio against a reference measured in the same run. mp_*.py are the
MicroPython-side scripts (run on the unix port, not imported by CPython).
"""
