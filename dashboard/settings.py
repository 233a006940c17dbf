"""The dashboard's settings: the one place in the package that reads environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_DB = "data/reco.db"
DEFAULT_DRIFT_THRESHOLD = 0.05
DEFAULT_OVERLAP_THRESHOLD = 0.5
DEFAULT_REFRESH_S = 3.0
DEFAULT_API_URL = "http://127.0.0.1:6066"


@dataclass(frozen=True)
class Settings:
    """What the dashboard reads and how it marks drift.

    ``drift_threshold`` is the relative change of the item factors per checkpoint
    above which the model counts as drifting; ``overlap_threshold`` the mean top-10
    overlap of the user panel below which it does.
    """

    db: str = DEFAULT_DB  # RECO_DB as given: one store, a comma-separated list or a folder
    drift_threshold: float = DEFAULT_DRIFT_THRESHOLD
    overlap_threshold: float = DEFAULT_OVERLAP_THRESHOLD
    refresh_s: float = DEFAULT_REFRESH_S  # how often live panels reload, seconds
    api_url: str = DEFAULT_API_URL  # the engine's live API, asked first by the Recommend page
    api_token: str = field(default="", repr=False)  # its bearer token, if it requires one
    problems: tuple[str, ...] = field(default=(), compare=False)
    # The stores RECO_DB names, resolved by the page (components.settings); a
    # page about one store reads ``db``, the one picked among them.
    stores: tuple[str, ...] = ()


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read the settings from the environment; a bad value falls back to its default.

    Each fallback is described in ``problems`` so the app can say what to fix.
    """
    environ = os.environ if environ is None else environ
    problems: list[str] = []

    def number(name: str, default: float, low: float, high: float) -> float:
        raw = environ.get(name, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        if not low <= value <= high:
            problems.append(
                f"{name}={raw!r} is not a number between {low:g} and {high:g}; using {default:g}"
            )
            return default
        return value

    api_url = environ.get("RECO_API_URL", "").strip().rstrip("/") or DEFAULT_API_URL
    if not api_url.startswith(("http://", "https://")):
        problems.append(
            f"RECO_API_URL={api_url!r} is not an http:// address; using {DEFAULT_API_URL}"
        )
        api_url = DEFAULT_API_URL

    return Settings(
        db=environ.get("RECO_DB", "").strip() or DEFAULT_DB,
        drift_threshold=number("RECO_DRIFT_THRESHOLD", DEFAULT_DRIFT_THRESHOLD, 0.0, 10.0),
        overlap_threshold=number("RECO_OVERLAP_THRESHOLD", DEFAULT_OVERLAP_THRESHOLD, 0.0, 1.0),
        refresh_s=number("RECO_DASHBOARD_REFRESH_S", DEFAULT_REFRESH_S, 0.5, 3600.0),
        api_url=api_url,
        api_token=environ.get("RECO_API_TOKEN", "").strip(),
        problems=tuple(problems),
    )
