"""Paths of the repository and its deploy/ folder."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


DEPLOY = REPO / "deploy"

