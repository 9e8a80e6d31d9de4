"""The pilot as a single-file zipapp, served to pilot starters (`GET /v1/pilot.pyz`)."""

from __future__ import annotations

from flask import Flask

from skypanda.handlers.services import Services


def routes(app: Flask, svc: Services) -> None:
    """Register the zipapp route (to be written)."""
