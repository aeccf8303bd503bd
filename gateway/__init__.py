"""Signet gateway: verifies signed records from MQTT, stores them, acks them, rates machines.

Subpackages, each importing only those below it (pyproject.toml [tool.importlinter]):
ingest -> mcr -> store -> log -> trust -> verify -> config. It never imports signet_tools.
"""
