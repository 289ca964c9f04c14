"""HTTP routes of the platform-wide signals: ``/robots.txt`` and ``/.well-known/tdmrep.json`` (no auth)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse

from consentry.api_deps import SettingsDep
from consentry.signals.robots import robots_txt, tdmrep

router = APIRouter(tags=["signals"])
CACHE = "public, max-age=3600"


@router.get("/robots.txt", response_class=PlainTextResponse)
def robots(settings: SettingsDep) -> PlainTextResponse:
    """Robots rules: known AI crawlers disallowed, public content allowed, a Content-Signal line.

    ``robots_ai_scope`` (``all`` or ``training``) is read from the settings when they have it.
    """
    scope: Any = getattr(settings, "robots_ai_scope", "all")
    return PlainTextResponse(robots_txt(scope=scope), headers={"Cache-Control": CACHE})


@router.get("/.well-known/tdmrep.json")
def tdm_reservation(settings: SettingsDep) -> JSONResponse:
    """TDM Reservation Protocol rules (W3C TDMRep); ``tdm_policy_url`` from the settings when set."""
    policy: Any = getattr(settings, "tdm_policy_url", None)
    return JSONResponse(tdmrep(policy_url=policy or None), headers={"Cache-Control": CACHE})
