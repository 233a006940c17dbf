"""The engine's settings: the one place that reads environment variables.

Command-line flags override the environment (the CLI writes them into it
before anything reads it), and defaults run on a laptop with nothing set.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

# Kept here, not imported from engine.models.registry, so reading settings never loads FluRS;
# a test checks the two agree.
MODELS = ("hybrid", "popular", "mf", "bprmf", "userknn", "sketch", "fm")
DEFAULT_MODEL = "hybrid"
DEFAULT_BROKER = "kafka://127.0.0.1:19092"
DEFAULT_BROKER_PORT = 19092
ENCODINGS = ("json", "msgpack")  # as engine.sources.encoding; a test checks the two agree
# Codecs a producer may compress batches with; the engine decodes all of them.
COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")


class SettingsError(ValueError):
    """A setting has a value the engine cannot run with; the message says how to fix it."""


@dataclass(frozen=True)
class Settings:
    broker: str = DEFAULT_BROKER
    topic: str = "flurs-events"
    partitions: int = 4  # of a topic the engine creates; an existing topic keeps its own
    replication: int = 1  # copies of each partition of the topics the engine or producer creates
    db: Path = Path("data/reco.db")
    # The stores `status` reads when RECO_DB names several (a comma-separated
    # list or a folder of *.db); empty: just ``db``. A worker writes one store.
    stores: tuple[Path, ...] = ()
    group: str = "reco-engine"
    model: str = DEFAULT_MODEL
    model_params: dict = field(default_factory=dict)
    min_rating: float = 4.0
    eval_fraction: float = 1.0
    checkpoint_interval: float = 5.0
    history_limit: int = 500
    panel_size: int = 50
    keep_snapshots: int = 3
    metrics_retention: float = 7 * 86400.0
    max_message_bytes: int = 64 * 1024
    seed: int = 42
    datadir: Path = Path("data/faust")
    log_level: str = "info"
    log_format: str = "text"  # or "json": one JSON object per line, for log collectors
    encoding: str = "json"  # of the events on the topic: json or msgpack (engine.sources.encoding)
    compression: str = "none"  # of the batches our producer sends: one of COMPRESSIONS
    event_loop: str = "uvloop"  # Faust's event loop: uvloop or aio (asyncio's own)
    keep_rejected: int = 10_000  # rejected messages kept in the store, newest first
    # Connection security for a real Kafka; the embedded broker speaks PLAINTEXT.
    broker_security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)
    ssl_cafile: str = ""  # PEM bundle of CAs to trust; empty: the system's
    ssl_certfile: str = ""  # client certificate (PEM), for brokers that require one
    ssl_keyfile: str = ""  # its private key, if not inside ssl_certfile
    web_port: int = 6066  # the live API (Faust's web server)
    web_host: str = "127.0.0.1"  # interface it binds; 0.0.0.0 serves every interface
    click_window: float = 1800.0  # event-time seconds in which a positive event is a click
    ab_baseline_fraction: float = 0.2  # share of users the API serves popularity instead
    api_url: str = ""  # where clients (the closed-loop producer) find the API; "" = local
    api_max_share: float = 0.5  # most of the worker's time the API may take under load
    api_token: str = field(default="", repr=False)  # bearer token the live API requires
    dead_letter_topic: str = ""  # rejected messages go there unchanged; "" = nowhere

    @property
    def api(self) -> str:
        """The live API's base URL for clients on this machine."""
        return self.api_url.rstrip("/") or f"http://127.0.0.1:{self.web_port}"


# env var -> (field, parser)
_ENV = {
    "RECO_BROKER": "broker",
    "RECO_TOPIC": "topic",
    "RECO_PARTITIONS": "partitions",
    "RECO_REPLICATION": "replication",
    "RECO_DB": "db",
    "RECO_GROUP": "group",
    "RECO_MODEL": "model",
    "RECO_MODEL_PARAMS": "model_params",
    "RECO_MIN_RATING": "min_rating",
    "RECO_EVAL_FRACTION": "eval_fraction",
    "RECO_CHECKPOINT_INTERVAL": "checkpoint_interval",
    "RECO_HISTORY_LIMIT": "history_limit",
    "RECO_PANEL_SIZE": "panel_size",
    "RECO_KEEP_SNAPSHOTS": "keep_snapshots",
    "RECO_METRICS_RETENTION": "metrics_retention",
    "RECO_MAX_MESSAGE_BYTES": "max_message_bytes",
    "RECO_SEED": "seed",
    "RECO_DATADIR": "datadir",
    "RECO_LOG_LEVEL": "log_level",
    "RECO_LOG_FORMAT": "log_format",
    "RECO_ENCODING": "encoding",
    "RECO_COMPRESSION": "compression",
    "RECO_EVENT_LOOP": "event_loop",
    "RECO_KEEP_REJECTED": "keep_rejected",
    "RECO_BROKER_SECURITY_PROTOCOL": "broker_security_protocol",
    "RECO_SASL_MECHANISM": "sasl_mechanism",
    "RECO_SASL_USERNAME": "sasl_username",
    "RECO_SASL_PASSWORD": "sasl_password",
    "RECO_SSL_CAFILE": "ssl_cafile",
    "RECO_SSL_CERTFILE": "ssl_certfile",
    "RECO_SSL_KEYFILE": "ssl_keyfile",
    "RECO_WEB_PORT": "web_port",
    "RECO_WEB_HOST": "web_host",
    "RECO_CLICK_WINDOW": "click_window",
    "RECO_AB_BASELINE_FRACTION": "ab_baseline_fraction",
    "RECO_API_URL": "api_url",
    "RECO_API_MAX_SHARE": "api_max_share",
    "RECO_API_TOKEN": "api_token",
    "RECO_DEAD_LETTER_TOPIC": "dead_letter_topic",
}
ENV_FOR_FIELD = {name: env for env, name in _ENV.items()}


def load_settings(
    environ: dict[str, str] | None = None, *, several_stores: bool = False
) -> Settings:
    """Read settings from the environment; raise SettingsError naming the bad one.

    ``several_stores`` lets RECO_DB name a deployment's stores (a list or a
    folder), for the commands that read them; a worker writes exactly one.
    """
    environ = os.environ if environ is None else environ
    defaults = Settings()
    values = {}
    for env, name in _ENV.items():
        raw = environ.get(env)
        if raw is None or raw == "":
            continue
        values[name] = _parse(env, raw, type(getattr(defaults, name)))
    if "db" in values:
        values["stores"] = _stores(environ["RECO_DB"], several_stores)
        values["db"] = values["stores"][0]
    if "datadir" not in values:  # beside the store, so that --db elsewhere leaves no data/ here
        values["datadir"] = values.get("db", defaults.db).parent / "faust"
    settings = Settings(**values)
    validate(settings)
    return settings


def _stores(raw: str, several: bool) -> tuple[Path, ...]:
    """The store or stores RECO_DB names; a list or a folder only where ``several`` allows it."""
    from storage import StoreListError, store_paths  # the store's rule, shared with the dashboard

    if not several and ("," in raw or Path(raw.strip()).is_dir()):
        _fail(
            "RECO_DB",
            raw,
            "a worker writes exactly one store; give a file path such as data/reco.db "
            "(a list or a folder of stores is for status and the dashboard)",
        )
    try:
        return tuple(store_paths(raw))
    except StoreListError as exc:
        _fail("RECO_DB", raw, str(exc))


def ensure_datadir(settings: Settings) -> Path:
    """Create Faust's working folder and its parents; SettingsError if that cannot be done."""
    try:
        settings.datadir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SettingsError(
            f"RECO_DATADIR={settings.datadir} cannot be created ({exc.strerror}): "
            "give a folder this user may write"
        ) from None
    return settings.datadir


LOG_LEVELS = ("debug", "info", "warning", "error")
MIN_TOKEN_LENGTH = 16


def is_loopback(host: str) -> bool:
    """True for addresses only this machine reaches: 127.0.0.0/8, ::1, localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def log_level(flag: str | None = None, environ: dict[str, str] | None = None) -> int:
    """The logging level of ``--log-level`` or else RECO_LOG_LEVEL (info); SettingsError if bad.

    Read apart from the other settings, so that every command logs as asked,
    including those that read no other setting.
    """
    environ = os.environ if environ is None else environ
    name = (flag or environ.get("RECO_LOG_LEVEL") or "info").lower()
    if name not in LOG_LEVELS:
        _fail("RECO_LOG_LEVEL", name, "use debug, info, warning or error")
    return getattr(logging, name.upper())


LOG_FORMATS = ("text", "json")


def log_format(environ: dict[str, str] | None = None) -> str:
    """RECO_LOG_FORMAT: "text" (the default) or "json" lines; SettingsError if bad."""
    environ = os.environ if environ is None else environ
    name = (environ.get("RECO_LOG_FORMAT") or "text").lower()
    if name not in LOG_FORMATS:
        _fail("RECO_LOG_FORMAT", name, "use text or json")
    return name


def broker_port(environ: dict[str, str] | None = None) -> int:
    """The embedded broker's port: RECO_BROKER_PORT, else 19092; SettingsError if bad.

    Read apart from the other settings: the broker needs none of them, and a
    bad one is for the commands that use it to report.
    """
    environ = os.environ if environ is None else environ
    raw = environ.get("RECO_BROKER_PORT") or str(DEFAULT_BROKER_PORT)
    port = _parse("RECO_BROKER_PORT", raw, int)
    if not 1 <= port <= 65535:
        _fail("RECO_BROKER_PORT", port, "use a port between 1 and 65535")
    return port


def validate(s: Settings) -> None:
    if not s.broker.startswith(("kafka://", "aiokafka://")):
        _fail("RECO_BROKER", s.broker, "use kafka://HOST:PORT")
    _check_name("RECO_TOPIC", s.topic)
    _check_name("RECO_GROUP", s.group)
    if s.dead_letter_topic:
        _check_name("RECO_DEAD_LETTER_TOPIC", s.dead_letter_topic)
        if s.dead_letter_topic == s.topic:
            _fail(
                "RECO_DEAD_LETTER_TOPIC", s.dead_letter_topic, "use a topic other than RECO_TOPIC"
            )
    if s.model not in MODELS:
        _fail("RECO_MODEL", s.model, f"choose one of {', '.join(MODELS)}")
    _positive("RECO_PARTITIONS", s.partitions)
    _positive("RECO_REPLICATION", s.replication)
    if not math.isfinite(s.min_rating):
        _fail("RECO_MIN_RATING", s.min_rating, "use a rating such as 4")
    if not 0.0 <= s.eval_fraction <= 1.0:
        _fail("RECO_EVAL_FRACTION", s.eval_fraction, "use a fraction between 0 and 1")
    _positive("RECO_CHECKPOINT_INTERVAL", s.checkpoint_interval)
    _positive("RECO_HISTORY_LIMIT", s.history_limit)
    _positive("RECO_KEEP_SNAPSHOTS", s.keep_snapshots)
    _positive("RECO_METRICS_RETENTION", s.metrics_retention)
    _positive("RECO_MAX_MESSAGE_BYTES", s.max_message_bytes)
    if s.panel_size < 0:
        _fail("RECO_PANEL_SIZE", s.panel_size, "use 0 or more")
    if not 1 <= s.web_port <= 65535:
        _fail("RECO_WEB_PORT", s.web_port, "use a port between 1 and 65535")
    if not s.web_host or any(ch.isspace() or ch in "/[]" for ch in s.web_host):
        _fail("RECO_WEB_HOST", s.web_host, "use an address such as 127.0.0.1 or 0.0.0.0")
    _positive("RECO_CLICK_WINDOW", s.click_window)
    if not 0.0 <= s.ab_baseline_fraction <= 1.0:
        _fail("RECO_AB_BASELINE_FRACTION", s.ab_baseline_fraction, "use a fraction between 0 and 1")
    if not 0.0 < s.api_max_share <= 1.0:
        _fail("RECO_API_MAX_SHARE", s.api_max_share, "use a fraction above 0, at most 1")
    if s.api_token and len(s.api_token) < MIN_TOKEN_LENGTH:
        raise SettingsError(
            f"RECO_API_TOKEN is too short to be a secret: use at least {MIN_TOKEN_LENGTH} "
            "characters (python -c 'import secrets; print(secrets.token_urlsafe())')"
        )
    if not s.api_token and not is_loopback(s.web_host):
        raise SettingsError(
            f"RECO_WEB_HOST={s.web_host} serves the live API to other machines: set "
            "RECO_API_TOKEN to a secret that clients must send (or bind 127.0.0.1)"
        )
    if s.api_url and not s.api_url.startswith(("http://", "https://")):
        _fail("RECO_API_URL", s.api_url, "use http://HOST:PORT")
    if s.event_loop not in ("uvloop", "aio"):
        _fail("RECO_EVENT_LOOP", s.event_loop, "use uvloop or aio")
    if s.encoding not in ENCODINGS:
        _fail("RECO_ENCODING", s.encoding, f"use one of {', '.join(ENCODINGS)}")
    if s.compression not in COMPRESSIONS:
        _fail("RECO_COMPRESSION", s.compression, f"use one of {', '.join(COMPRESSIONS)}")
    if s.log_level.lower() not in LOG_LEVELS:
        _fail("RECO_LOG_LEVEL", s.log_level, "use debug, info, warning or error")
    if s.log_format.lower() not in LOG_FORMATS:
        _fail("RECO_LOG_FORMAT", s.log_format, "use text or json")
    if s.db.exists() and s.db.is_dir():
        _fail("RECO_DB", s.db, "it is a folder; give a file path such as data/reco.db")
    if s.datadir.exists() and not s.datadir.is_dir():
        _fail("RECO_DATADIR", s.datadir, "it is a file; give a folder (made if missing)")
    _positive("RECO_KEEP_REJECTED", s.keep_rejected)
    _validate_security(s)


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _validate_security(s: Settings) -> None:
    protocol = s.broker_security_protocol
    if protocol not in SECURITY_PROTOCOLS:
        _fail(
            "RECO_BROKER_SECURITY_PROTOCOL", protocol, f"use one of {', '.join(SECURITY_PROTOCOLS)}"
        )
    if protocol.startswith("SASL"):
        if s.sasl_mechanism not in SASL_MECHANISMS:
            _fail(
                "RECO_SASL_MECHANISM", s.sasl_mechanism, f"use one of {', '.join(SASL_MECHANISMS)}"
            )
        if not s.sasl_username or not s.sasl_password:
            raise SettingsError(
                f"RECO_BROKER_SECURITY_PROTOCOL={protocol} needs RECO_SASL_USERNAME and "
                "RECO_SASL_PASSWORD"
            )
    elif s.sasl_username or s.sasl_password:
        raise SettingsError(
            "RECO_SASL_USERNAME/RECO_SASL_PASSWORD are set but "
            f"RECO_BROKER_SECURITY_PROTOCOL={protocol} does not use them: "
            "set it to SASL_SSL (or SASL_PLAINTEXT)"
        )
    tls_files = {
        "RECO_SSL_CAFILE": s.ssl_cafile,
        "RECO_SSL_CERTFILE": s.ssl_certfile,
        "RECO_SSL_KEYFILE": s.ssl_keyfile,
    }
    for env, value in tls_files.items():
        if not value:
            continue
        if not protocol.endswith("SSL"):
            raise SettingsError(
                f"{env} is set but RECO_BROKER_SECURITY_PROTOCOL={protocol} does not use TLS: "
                "set it to SSL or SASL_SSL"
            )
        if not Path(value).is_file():
            _fail(env, value, "no such file; give the path of a PEM file")
    if s.ssl_keyfile and not s.ssl_certfile:
        raise SettingsError("RECO_SSL_KEYFILE is set without RECO_SSL_CERTFILE")


def _parse(env: str, raw: str, kind: type):
    try:
        if kind is bool:
            return raw.lower() in ("1", "true", "yes")
        if kind is dict:
            value = json.loads(raw)
            if not isinstance(value, dict):
                raise ValueError
            return value
        if kind is Path:
            return Path(raw)
        return kind(raw)
    except ValueError:
        expected = {int: "a whole number", float: "a number", dict: "a JSON object"}.get(
            kind, kind.__name__
        )
        raise SettingsError(f"{env}={raw!r} is not valid: expected {expected}") from None


def _fail(env: str, value, fix: str):
    raise SettingsError(f"{env}={value!s} is not valid: {fix}")


def _positive(env: str, value) -> None:
    # Written so that NaN fails too: every comparison with it is False.
    if not (value > 0 and math.isfinite(value)):
        _fail(env, value, "use a number greater than 0")


def _check_name(env: str, value: str) -> None:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    if not value or len(value) > 200 or set(value) - allowed:
        _fail(env, value, "use letters, digits, '.', '_' or '-'")
