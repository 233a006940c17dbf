"""The engine's live API, asked as a client asks it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request


def get(
    url: str,
    token: str | None = None,
    method: str = "GET",
    timeout: float = 10,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict]:
    """(HTTP status, JSON answer) of a request, an error's too; OSError while nothing answers.

    ``token`` goes in an ``Authorization: Bearer`` header, even an empty one,
    beside any other ``headers``.
    """
    headers = dict(headers or {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def get_or_none(url: str, token: str | None = None) -> tuple[int | None, dict | None]:
    """As ``get``, or (None, None) when nothing answers: the test then says what is missing."""
    try:
        return get(url, token)
    except OSError:
        return None, None


def health(api: str, path: str = "/health") -> tuple[int, list[str]]:
    """A worker's answer to its health check: (HTTP status, reasons it is not ready).

    (0, [error]) while nothing answers on ``api``.
    """
    try:
        status, answer = get(f"{api}{path}", timeout=5)
    except OSError as exc:
        return 0, [str(exc)]
    return status, answer.get("reasons", [])
