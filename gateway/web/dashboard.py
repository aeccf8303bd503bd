"""The dashboard: the console's web pages, served from the package, and the yield endpoint.

The pages are static files (gateway/web/static/: HTML, CSS, JavaScript, an SVG icon) that hold
no data: the browser fetches every figure from the JSON API with the bearer token the user
typed in (kept in the tab's sessionStorage), so no token, no data, exactly as for the API.
Nothing is fetched from elsewhere: the Content-Security-Policy allows this origin only, so a
page that tried (a CDN font, a script) would fail in the browser test.

Two endpoints of the API are the dashboard's: /api/v1/report/summary (the fleet's report
without its per-day series, for the fleet table) and /api/v1/devices/{device}/yield, the yield
view's arithmetic (yields.py) on the report's figures with the advertised yield from
``[http.advertised_yield]`` beside it.
"""

# No `from __future__ import annotations`: FastAPI reads the handler's annotations.
import json
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import Depends, FastAPI, Query
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict

from signet_gateway.mcr import report
from signet_gateway.store.model import DeviceLookupError
from signet_gateway.store.sqlite import Store

from . import views, yields
from .reader import Reader

__all__ = ["STATIC", "mount"]

STATIC: Final = Path(__file__).parent / "static"
DAY = r"^\d{4}-\d{2}-\d{2}$"

# The pages load only from this origin: scripts, styles, images and fetches. Style attributes
# are not allowed either (the pages use classes and SVG presentation attributes).
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
    " connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self';"
    " frame-ancestors 'none'"
)
PAGE_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class YieldRange(_Strict):
    low: float
    high: float
    basis: str


class Yield(_Strict):
    label: str
    device: str
    name: str | None
    period: dict[str, str]
    currency: str | None
    exponent: int | None
    capital: str | None
    capital_minor: int | None
    revenue_minor: int | None
    days: int | None
    mean_daily_minor: float | None
    volatility: float | None
    annualized_yield: float | None
    range: YieldRange | None
    uptime_ratio: float | None
    advertised_yield: float | None
    currencies: list[str]


def report_summary(
    conn: sqlite3.Connection, *, day_from: str | None, day_to: str | None
) -> dict[str, Any]:
    """The fleet's MCR report (`signet report --format json`, every machine) without its
    per-day series and outage lists: every figure the fleet table shows, exactly as the
    report has it, at a size that does not grow with the length of the history."""
    try:
        period = report.Period.parse(day_from, day_to)
        doc = report.build_report(conn, period=period, missing=Store.over(conn).missing)
    except report.ReportError as exc:
        message = str(exc).replace("--from", "from").replace("--to", "to")
        raise views.BadRequest(message) from None
    for machine in doc["devices"]:
        for currency in machine["revenue"]["currencies"]:
            del currency["daily"]
        del machine["uptime"]["daily"], machine["uptime"]["outages"]
    return doc


def advertised_percent(
    conn: sqlite3.Connection, advertised: Mapping[str, float], machine: str
) -> float | None:
    """The operator's advertised yield for a machine: the entry of [http.advertised_yield]
    whose key (id, prefix or name of any of its keys) names it; None if none does."""
    store = Store.over(conn)
    for wanted, percent in advertised.items():
        try:
            d = store.resolve_device(wanted)
        except DeviceLookupError:
            continue  # a name not enrolled (yet): nothing to show for it
        if (d.machine or d.kid) == machine:
            return percent
    return None


def mount(
    app: FastAPI,
    reader: Reader,
    authorized: Callable[..., str],
    advertised: Mapping[str, float],
    api: dict[str, Any],
) -> None:
    """Add the pages and the yield endpoint to the console's app (api.py's create_app)."""

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/")

    @app.get("/ui", include_in_schema=False)
    @app.get("/ui/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    app.mount("/ui/assets", StaticFiles(directory=STATIC, html=False), name="assets")

    @app.get(
        "/api/v1/report/summary",
        tags=["mcr"],
        summary="The MCR report of every machine without its daily series and outage lists",
        dependencies=[Depends(authorized)],
        responses={
            **api["responses"],
            400: {"description": "A period the report cannot take"},
        },
    )
    def summary(
        day_from: Annotated[str | None, Query(alias="from", pattern=DAY)] = None,
        day_to: Annotated[str | None, Query(alias="to", pattern=DAY)] = None,
    ) -> dict[str, Any]:
        return report_summary(reader.conn(), day_from=day_from, day_to=day_to)

    @app.get(
        "/api/v1/devices/{device}/yield",
        tags=["mcr"],
        summary="Realized annualized revenue yield on a capital amount (Signet's arithmetic)",
        response_model=Yield,
        dependencies=[Depends(authorized)],
        responses={
            **api["responses"],
            400: {"description": "A capital, currency or period the arithmetic cannot take"},
            404: {"description": "No such device, or no stored record of it in the period"},
        },
    )
    def device_yield(
        device: Annotated[str, PathParam(min_length=1, max_length=200)],
        capital: Annotated[
            str | None,
            Query(
                min_length=1,
                max_length=40,
                description="the capital in major units of the currency (5000, 5000.50);"
                " without it, the figures without the yield",
            ),
        ] = None,
        currency: Annotated[
            str | None,
            Query(pattern=r"^[A-Z]{3}$", description="ISO 4217 (default: primary currency)"),
        ] = None,
        day_from: Annotated[str | None, Query(alias="from", pattern=DAY)] = None,
        day_to: Annotated[str | None, Query(alias="to", pattern=DAY)] = None,
    ) -> dict[str, Any]:
        conn = reader.conn()
        doc = json.loads(views.report_json(conn, device=device, day_from=day_from, day_to=day_to))
        if not doc["devices"]:
            raise views.NotFound(f"{device}: no stored record in the period")
        machine = doc["devices"][0]
        try:
            return yields.realized_yield(
                machine,
                capital=capital,
                currency=currency,
                advertised_percent=advertised_percent(conn, advertised, machine["device"]),
            )
        except yields.YieldError as exc:
            raise views.BadRequest(str(exc)) from None
