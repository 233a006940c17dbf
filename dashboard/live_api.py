"""The engine's live API as the dashboard asks it: the only module of the dashboard doing HTTP.

The dashboard never imports the engine; it speaks to a running worker over
HTTP (``GET /recommend/{user}?n=...&preview=1``) with a short timeout, and the
Recommend page falls back to the store when the worker does not answer.
``preview=1`` tells the engine an operator is looking, so the lookup is not
counted as an impression of the user.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import quote

TIMEOUT_S = 0.5  # a live answer takes milliseconds; anything slower reads the store instead


class ApiUnavailable(Exception):
    """The live API did not give a usable answer; the message says why, in a few words."""


@dataclass(frozen=True)
class LiveItem:
    rank: int  # 1-based
    item: str
    name: str | None
    score: float


@dataclass(frozen=True)
class LiveRecommendations:
    """A list from the live model, as the API gave it."""

    user: str
    items: list[LiveItem]
    model: str
    fallback: bool  # the user is new to the model: popularity instead
    variant: str  # the user's A/B variant: "model" or "baseline"


def recommend(
    api_url: str, user: str, n: int, token: str = "", timeout_s: float = TIMEOUT_S
) -> LiveRecommendations:
    """Ask the API at ``api_url`` for ``user``'s top ``n``; raises ApiUnavailable.

    ``token`` is the API's bearer token (RECO_API_TOKEN), which a worker
    serving other machines requires.
    """
    url = f"{api_url.rstrip('/')}/recommend/{quote(user, safe='')}?n={n}&preview=1"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body = json.load(response)
        return LiveRecommendations(
            user=str(body["user"]),
            items=[
                LiveItem(
                    rank=int(entry["rank"]),
                    item=str(entry["item"]),
                    name=entry.get("name"),
                    score=float(entry["score"]),
                )
                for entry in body["items"]
            ],
            model=str(body["model"]),
            fallback=bool(body["fallback"]),
            variant=str(body["variant"]),
        )
    except urllib.error.HTTPError as exc:
        raise ApiUnavailable(f"an HTTP {exc.code} answer") from None
    except (OSError, ValueError) as exc:  # refused, timed out, not JSON
        reason = getattr(exc, "reason", None) or exc
        raise ApiUnavailable(f"no answer ({_short(reason)})") from None
    except (KeyError, TypeError) as exc:
        raise ApiUnavailable(f"an answer without {exc}") from None


def _short(reason: object) -> str:
    text = str(reason) or type(reason).__name__
    return text if len(text) <= 80 else text[:79] + "…"
