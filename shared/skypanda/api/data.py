"""Job data: outputs uploaded by pilots into the blob store (stage-out)."""

from __future__ import annotations

from flask import Flask

from skypanda.handlers.services import Services


def routes(app: Flask, svc: Services) -> None:
    """Register the data routes (to be written)."""
