"""Signet host tools: the `signet` command and what it runs beside the gateway.

cli -> bench | fleet -> pi | device | records -> runners (pyproject.toml [tool.importlinter]).
May import the device package `signet` and `signet_gateway`; neither imports this package.
"""
