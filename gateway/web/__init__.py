"""The operator's console over HTTP: the read-only JSON API, its bearer tokens, /metrics and the
health endpoints, served by uvicorn in a thread of the gateway process (docs/GATEWAY.md).

The top layer of the gateway: it may import every layer below (ingest, audit, mcr, store...);
nothing in the gateway imports it. FastAPI, uvicorn and prometheus-client come with the
``gateway`` extra; tokens.py needs none of them (`signet token` runs on the base install).
"""
