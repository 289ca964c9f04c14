"""The operator dashboard page: consent charts, policy effects, releases, partners and scrapers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from consentry.consent import service as consent
from consentry.consent.service import ConsentContext
from consentry.web import charts
from consentry.web.dashboard import (
    ALL,
    RANGES,
    ConsentOverview,
    consent_overview,
    leaderboard,
    partner_revocations,
    recent_releases,
)
from consentry.web.pages import (
    SessionDep,
    ctx_of,
    database_of,
    error_context,
    render,
)
from consentry.web.snapshot import ConsentStateCache

router = APIRouter(include_in_schema=False)
SHORT_REGIONS = {"default": "Rest of world", "EEA": "EEA", "UK": "UK", "CH": "Switzerland"}


def _cache(request: Request) -> ConsentStateCache:
    cache: ConsentStateCache | None = getattr(request.app.state, "web_consent_cache", None)
    if cache is None:
        ctx = ctx_of(request)
        cache = ConsentStateCache(settings=ctx.catalog.keys, jurisdictions=ctx.jurisdictions)
        request.app.state.web_consent_cache = cache
    return cache


def _dashboard_data(request: Request, range_key: str) -> dict[str, Any]:
    ctx = ctx_of(request)
    threshold = request.app.state.settings.damages_threshold_posts
    with database_of(request).read() as session:
        overview = consent_overview(session, cache=_cache(request), ctx=ctx, range_key=range_key)
        policies = consent.load_policies(session)
        releases = recent_releases(session)
        partners = partner_revocations(session)
        board = leaderboard(session, threshold=threshold)
    return {
        "overview": overview,
        "policies": policies,
        "releases": releases,
        "partners": partners,
        "board": board,
    }


def _charts(overview: ConsentOverview, ctx: ConsentContext, range_key: str) -> list[dict[str, Any]]:
    names = [ALL, *overview.groups]
    styles = charts.styled(names)
    fmt = "%d %b" if range_key == "90d" else "%b %Y"
    panels = []
    for key in overview.rates:
        lines = overview.rates[key]
        series = [
            charts.Series(
                name=SHORT_REGIONS.get(name, name),
                values=lines[name],
                color=color,
                dash=dash,
                strong=name == ALL,
            )
            for name, color, dash in styles
        ]
        label = ctx.catalog.get(key).label
        panels.append(
            {
                "key": key,
                "label": label,
                "svg": charts.line_chart(
                    title=f"Share of active accounts allowing: {label}",
                    times=overview.times,
                    series=series,
                    label_format=fmt,
                ),
            }
        )
    return panels


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard(
    request: Request,
    session: SessionDep,
    range: Annotated[str, Query(pattern="^(90d|12m|5y)$")] = "12m",
) -> Response:
    """The operator's view: consent over time and now, policies, releases, partners, scrapers."""
    if not session.principal.is_admin:
        return render(
            request,
            "error.html",
            error_context(
                "The dashboard is for the platform's operators. Sign in with an admin token, or go to "
                "your own settings.",
                title="Operators only",
            )
            | {"signed_in": True, "csrf": session.csrf, "settings_link": True},
            status=403,
        )
    ctx = ctx_of(request)
    data = _dashboard_data(request, range)
    overview: ConsentOverview = data["overview"]
    legend = [
        (SHORT_REGIONS.get(name, name), charts.swatch(color, dash, strong=name == ALL))
        for name, color, dash in charts.styled([ALL, *overview.groups])
    ]
    context = {
        **data,
        "title": "Operator dashboard",
        "csrf": session.csrf,
        "signed_in": True,
        "range": range,
        "ranges": RANGES,
        "panels": _charts(overview, ctx, range),
        "legend": legend,
        "regions": SHORT_REGIONS,
        "bar": charts.bar,
        "labels": {s.key: s.label for s in ctx.catalog.settings},
        "now": overview.as_of,
    }
    return render(request, "dashboard.html", context)
