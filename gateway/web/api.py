"""The console's HTTP application (FastAPI): the read-only JSON API, /metrics and the health
endpoints. Its OpenAPI document is served at /openapi.json.

Every ``/api/v1`` endpoint, and /metrics unless ``[http] metrics_token = false``, needs
``Authorization: Bearer <token>`` with a token in force (tokens.py): otherwise 401 and no
data. /healthz and /readyz answer anyone (systemd, a load balancer). Request handlers are
plain functions: FastAPI runs them in its thread pool, each thread with its own read-only
connection (reader.py). No interactive docs page: it would fetch its scripts from a CDN.
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations, which
# name types local to create_app.
import copy
import sqlite3
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Final, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry

from signet_gateway.mcr.report import REPORT_SCHEMA
from signet_gateway.store.model import StoreError

from . import dashboard, models, tokens, views
from .metrics import CONTENT_TYPE, exposition
from .reader import Reader

__all__ = ["create_app"]

INT64_MAX: Final = 2**63 - 1  # SQLite's integers: a larger parameter is a 422, not a 500
DAY = r"^\d{4}-\d{2}-\d{2}$"

Readiness = Callable[[], tuple[bool, list[str]]]

UNAUTHORIZED: Final = {401: {"description": "No bearer token, or one not in force"}}
NOT_FOUND: Final = {404: {"description": "No such device, or a name or prefix naming several"}}


def create_app(
    reader: Reader,
    readiness: Readiness,
    registry: CollectorRegistry,
    *,
    metrics_token: bool = True,
    advertised_yield: Mapping[str, float] | None = None,
    device_status: Callable[[], Mapping[str, tuple[bool, int]]] = dict,
) -> FastAPI:
    app = FastAPI(
        title="Signet gateway console",
        version="1",
        description="Read-only API of a Signet gateway: its fleet, records, refusals, the MCR"
        " report and the peaq export (docs/GATEWAY.md, docs/MCR.md). Bearer tokens come from"
        " `signet token create`.",
        docs_url=None,
        redoc_url=None,
    )
    bearer = HTTPBearer(
        auto_error=False, description="A token from `signet token create --name NAME`"
    )

    def authorized(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> str:
        name = None
        if credentials is not None:
            name = tokens.check(reader.conn(), credentials.credentials)
        if name is None:
            raise HTTPException(
                401,
                "a bearer token in force is required (signet token create)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return name

    @app.exception_handler(views.NotFound)
    def _not_found(request: Request, exc: views.NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(views.BadRequest)
    def _bad_request(request: Request, exc: views.BadRequest) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(sqlite3.Error)
    @app.exception_handler(StoreError)
    def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # The database cannot be read now (locked for too long, a disk error): try again.
        return JSONResponse(
            {"detail": f"the gateway database cannot be read now: {exc}"}, status_code=503
        )

    # -- health (no token) -----------------------------------------------------------------

    @app.get("/healthz", tags=["health"], summary="The process is up", response_model=models.Health)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        summary="Ready: broker connected, store writable, verifiers running",
        response_model=models.Ready,
        responses={503: {"description": "Not ready; problems says why", "model": models.Ready}},
    )
    def readyz() -> JSONResponse:
        ready, problems = readiness()
        return JSONResponse(
            {"ready": ready, "problems": problems}, status_code=200 if ready else 503
        )

    # -- metrics ------------------------------------------------------------------------------

    metrics_deps = [Depends(authorized)] if metrics_token else []

    @app.get(
        "/metrics",
        tags=["metrics"],
        summary="Prometheus text format",
        dependencies=metrics_deps,
        response_class=Response,
        responses=UNAUTHORIZED if metrics_token else None,
    )
    def metrics() -> Response:
        return Response(exposition(registry), media_type=CONTENT_TYPE)

    # -- the API --------------------------------------------------------------------------------

    api: dict[str, Any] = {
        "dependencies": [Depends(authorized)],
        "responses": {**UNAUTHORIZED, 503: {"description": "The database cannot be read now"}},
    }
    Device = Annotated[
        str,
        Path(
            min_length=1,
            max_length=200,
            description="device id, a unique prefix of at least 8 hex digits, or a device name",
        ),
    ]
    Limit = Annotated[int, Query(ge=1, le=1000, description="at most this many items")]
    DayFrom = Annotated[
        str | None,
        Query(alias="from", pattern=DAY, description="first UTC day, YYYY-MM-DD"),
    ]
    DayTo = Annotated[str | None, Query(alias="to", pattern=DAY, description="last UTC day")]
    DeviceQuery = Annotated[
        str | None,
        Query(min_length=1, max_length=200, description="one device (default: every device)"),
    ]

    @app.get(
        "/api/v1/fleet",
        tags=["fleet"],
        summary="Every enrolled key and its counters",
        response_model=models.Fleet,
        **api,
    )
    def fleet() -> dict[str, Any]:
        return views.fleet(reader.conn(), device_status())

    @app.get(
        "/api/v1/devices/{device}",
        tags=["fleet"],
        summary="One key: enrollment, sequence state, integrity counters",
        response_model=models.DeviceDetail,
        **{**api, "responses": {**api["responses"], **NOT_FOUND}},
    )
    def device(device: Device) -> dict[str, Any]:
        return views.device(reader.conn(), device, device_status())

    @app.get(
        "/api/v1/devices/{device}/records",
        tags=["records"],
        summary="A key's stored records and its refused input, with verdicts and raw bytes",
        response_model=models.Records,
        **{**api, "responses": {**api["responses"], **NOT_FOUND}},
    )
    def records(
        device: Device,
        after_n: Annotated[int, Query(ge=0, le=INT64_MAX, description="stored: n above")] = 0,
        refused_before_id: Annotated[
            int | None, Query(ge=1, le=INT64_MAX, description="refused: ids below")
        ] = None,
        limit: Limit = 100,
    ) -> dict[str, Any]:
        return views.records(
            reader.conn(),
            device,
            after_n=after_n,
            limit=limit,
            refused_before_id=refused_before_id,
        )

    @app.get(
        "/api/v1/refusals",
        tags=["records"],
        summary="Refusals across the fleet: counts by reason, quarantined items with topic",
        response_model=models.Refusals,
        **api,
    )
    def refusals(
        reason: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
        before_id: Annotated[int | None, Query(ge=1, le=INT64_MAX)] = None,
        limit: Limit = 100,
    ) -> dict[str, Any]:
        return views.refusals(reader.conn(), reason=reason, limit=limit, before_id=before_id)

    @app.get(
        "/api/v1/report",
        tags=["mcr"],
        summary="The MCR report: the JSON of `signet report --format json`",
        response_class=Response,
        **{
            **api,
            "responses": {
                **api["responses"],
                **NOT_FOUND,
                200: {"content": {"application/json": {}}},
                400: {"description": "A period the report cannot take"},
            },
        },
    )
    def report(
        device: DeviceQuery = None, day_from: DayFrom = None, day_to: DayTo = None
    ) -> Response:
        text = views.report_json(reader.conn(), device=device, day_from=day_from, day_to=day_to)
        return Response(text, media_type="application/json")

    @app.get(
        "/api/v1/export/peaq",
        tags=["mcr"],
        summary="peaq MachineEvents: the JSON of `signet export peaq`",
        response_class=Response,
        **{
            **api,
            "responses": {
                **api["responses"],
                **NOT_FOUND,
                200: {"content": {"application/json": {}}},
                400: {"description": "A period the export cannot take"},
            },
        },
    )
    def export_peaq(
        device: DeviceQuery = None,
        day_from: DayFrom = None,
        day_to: DayTo = None,
        metadata: Literal["hex", "json"] = "hex",
    ) -> Response:
        text = views.peaq_export(
            reader.conn(), device=device, day_from=day_from, day_to=day_to, metadata=metadata
        )
        return Response(text, media_type="application/json")

    # The dashboard's pages and its yield endpoint (dashboard.py).
    dashboard.mount(app, reader, authorized, advertised_yield or {}, api)
    _document_report(app)
    return app


def _document_report(app: FastAPI) -> None:
    """Put the report's own JSON Schema (gateway/mcr/report.py) into the OpenAPI document as
    the /api/v1/report answer, its $defs as components (OpenAPI resolves $ref from the
    document's root)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = generate()
        schema = copy.deepcopy(REPORT_SCHEMA)
        defs = schema.pop("$defs", {})
        schema.pop("$schema", None)
        schema.pop("$id", None)

        def relink(node: Any) -> Any:
            if isinstance(node, dict):
                return {
                    k: (
                        v.replace("#/$defs/", "#/components/schemas/Report_")
                        if k == "$ref" and isinstance(v, str)
                        else relink(v)
                    )
                    for k, v in node.items()
                }
            if isinstance(node, list):
                return [relink(v) for v in node]
            return node

        components = doc.setdefault("components", {}).setdefault("schemas", {})
        components["Report"] = relink(schema)
        for name, definition in defs.items():
            components[f"Report_{name}"] = relink(definition)
        answer = doc["paths"]["/api/v1/report"]["get"]["responses"]["200"]
        answer["content"] = {
            "application/json": {"schema": {"$ref": "#/components/schemas/Report"}}
        }
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
