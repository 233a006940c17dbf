"""Security defaults: TLS/SASL passed through to Faust and aiokafka, no code from data, bound SQL, local binds."""

from __future__ import annotations

import ast
import asyncio
import hashlib
import shutil
import ssl
import subprocess
from pathlib import Path

import faust
import pytest
from faust.types.auth import AuthProtocol, SASLMechanism

from engine.settings import SettingsError, load_settings
from engine.sources.kafka import broker_credentials, client_options
from storage import StoreReader, StoreWriter
from tests.support.commands import engine
from tests.support.paths import REPO
from tests.support.processors import feed, processor

certifi = pytest.importorskip("certifi", reason="certifi (an aiohttp dependency) gives a CA file")
CA_FILE = certifi.where()


def _settings(**env):
    return load_settings({f"RECO_{key.upper()}": str(value) for key, value in env.items()})


def test_plaintext_is_the_default_and_needs_no_credentials():
    settings = _settings()
    assert broker_credentials(settings) is None
    assert client_options(settings)["security_protocol"] == "PLAINTEXT"


def test_sasl_over_tls_reaches_faust_and_the_producer_alike():
    settings = _settings(
        broker="kafka://kafka.example.com:9093",
        broker_security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="engine",
        sasl_password="s3cret",
        ssl_cafile=CA_FILE,
    )
    credentials = broker_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol is AuthProtocol.SASL_SSL
    assert credentials.mechanism is SASLMechanism.SCRAM_SHA_512
    assert (credentials.username, credentials.password) == ("engine", "s3cret")
    context = credentials.ssl_context
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname

    from engine.worker.app import app_options

    app = faust.App("security-test", **app_options(settings))
    assert isinstance(app.conf.broker_credentials, faust.SASLCredentials)
    assert app.conf.broker_credentials.username == "engine"

    options = client_options(settings)
    assert options["bootstrap_servers"] == "kafka.example.com:9093"
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "engine"
    assert options["sasl_plain_password"] == "s3cret"
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    # aiokafka accepts exactly these keyword arguments (nothing is sent: no start()).
    from aiokafka import AIOKafkaProducer

    async def build():
        return AIOKafkaProducer(**options).client._security_protocol

    assert asyncio.run(build()) == "SASL_SSL"


def test_sasl_without_tls_uses_plain_sasl():
    credentials = broker_credentials(
        _settings(broker_security_protocol="SASL_PLAINTEXT", sasl_username="u", sasl_password="p")
    )
    assert credentials.protocol is AuthProtocol.SASL_PLAINTEXT
    assert credentials.mechanism is SASLMechanism.PLAIN
    assert credentials.ssl_context is None


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_with_a_client_certificate(tmp_path):
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=reco-test", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    settings = _settings(
        broker_security_protocol="SSL", ssl_cafile=cert, ssl_certfile=cert, ssl_keyfile=key
    )
    credentials = broker_credentials(settings)
    assert isinstance(credentials, faust.SSLCredentials)
    assert credentials.protocol is AuthProtocol.SSL
    assert client_options(settings)["ssl_context"] is not None
    assert client_options(settings)["security_protocol"] == "SSL"


def test_the_password_never_shows_in_reprs():
    settings = _settings(
        broker_security_protocol="SASL_SSL", sasl_username="engine", sasl_password="s3cret"
    )
    assert "s3cret" not in repr(settings)
    assert "s3cret" not in repr(broker_credentials(settings))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"broker_security_protocol": "TLS"}, "RECO_BROKER_SECURITY_PROTOCOL=TLS is not valid"),
        ({"broker_security_protocol": "SASL_SSL"}, "needs RECO_SASL_USERNAME"),
        (
            {"broker_security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI"}
            | {"sasl_username": "u", "sasl_password": "p"},
            "RECO_SASL_MECHANISM=GSSAPI is not valid",
        ),
        ({"sasl_username": "u", "sasl_password": "p"}, "set it to SASL_SSL"),
        ({"ssl_cafile": CA_FILE}, "does not use TLS"),
        (
            {"broker_security_protocol": "SSL", "ssl_cafile": "/no/such/ca.pem"},
            "RECO_SSL_CAFILE=/no/such/ca.pem is not valid: no such file",
        ),
    ],
)
def test_inconsistent_security_settings_are_refused_with_the_fix(env, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        _settings(**env)


def test_the_worker_refuses_bad_security_settings_in_one_line(engine_env):
    env = dict(engine_env, RECO_BROKER_SECURITY_PROTOCOL="SASL_SSL")
    result = engine("worker", env=env, cwd=REPO, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "needs RECO_SASL_USERNAME" in result.stderr


# -- nothing read is ever run as code ---------------------------------------------------

_SOURCES = sorted(
    path
    for package in ("engine", "storage", "dashboard")
    for path in (REPO / package).rglob("*.py")
)
_UNSAFE_MODULES = {"pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle", "joblib"}
_UNSAFE_CALLS = {"eval", "exec", "compile", "__import__"}


def _unsafe(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in _UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in _UNSAFE_MODULES:
                found.append(node.module)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if isinstance(func, ast.Name) and name in _UNSAFE_CALLS:
                found.append(f"{name}() at line {node.lineno}")
            if name == "load" and isinstance(func, ast.Attribute):
                owner = getattr(func.value, "id", "")
                keywords = {k.arg: k.value for k in node.keywords}
                if owner in ("np", "numpy"):
                    flag = keywords.get("allow_pickle")
                    if not (isinstance(flag, ast.Constant) and flag.value is False):
                        found.append(f"np.load without allow_pickle=False at line {node.lineno}")
                if owner == "yaml" and "Loader" not in keywords:
                    found.append(f"yaml.load at line {node.lineno}")
            if name == "read_pickle":
                found.append(f"read_pickle at line {node.lineno}")
    return found


def test_no_source_file_unpickles_or_evaluates_anything():
    assert _SOURCES, "no sources found"
    offenders = {str(p.relative_to(REPO)): found for p in _SOURCES if (found := _unsafe(p))}
    assert offenders == {}


def test_the_scan_catches_what_it_looks_for(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import pickle\nimport numpy as np\n"
        "eval('1')\nnp.load('x.npy')\nnp.load('y.npy', allow_pickle=True)\n"
    )
    assert len(_unsafe(bad)) == 4


# -- SQL only with bound parameters -------------------------------------------------------

# Names that may be formatted into SQL text: fixed column lists (``columns``:
# one of storage._queries' constant sets per store version), placeholder
# strings ("?, ?"), a GROUP BY chosen from two literals, integer settings, and
# the names of the segment tables (constants of storage._segments/histories).
_SQL_FRAGMENTS = {
    "table",
    "TABLE",
    "_CHECKPOINT_COLUMNS_0001",
    "columns",
    "marks",
    "group",
    "WAL_SIZE_LIMIT",
    "BUSY_TIMEOUT_MS",
    "PARTITIONS",  # the partition rows' table name, a constant
    "_PARTITION_COLUMNS",  # their column list, a constant
}
_SQL_CALLS = {"execute", "executemany", "executescript", "query"}


def _formatted_sql(path: Path) -> list[str]:
    """Values formatted into the SQL text of execute()-like calls, other than allowed fragments."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not (isinstance(node, ast.Call) and getattr(node.func, "attr", "") in _SQL_CALLS):
            continue
        if not node.args:
            continue
        sql = node.args[0]
        if isinstance(sql, ast.JoinedStr):
            for part in sql.values:
                if isinstance(part, ast.FormattedValue):
                    name = getattr(part.value, "id", ast.unparse(part.value))
                    if name not in _SQL_FRAGMENTS:
                        found.append(f"line {node.lineno}: {{{name}}}")
        elif isinstance(sql, ast.BinOp):  # "..." % x or "..." + x
            found.append(f"line {node.lineno}: {ast.unparse(sql)[:60]}")
        elif isinstance(sql, ast.Call) and getattr(sql.func, "attr", "") == "format":
            found.append(f"line {node.lineno}: .format()")
    return found


def test_sql_text_never_holds_a_value_only_placeholders():
    offenders = {
        str(p.relative_to(REPO)): found
        for p in sorted((REPO / "storage").rglob("*.py"))
        if (found := _formatted_sql(p))
    }
    assert offenders == {}


def test_hostile_ids_are_data_to_the_reader_not_sql(tmp_path):
    db = tmp_path / "reco.db"
    proc = processor()
    feed(proc, [("alice", "a"), ("bob", "b"), ("alice", "c")])
    writer = StoreWriter(db)
    writer.write_checkpoint(proc.checkpoint())
    writer.close()
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    reader = StoreReader(db)
    for hostile in ("x' OR '1'='1", "'; DROP TABLE users; --", "%", "_", "\\", "alice%"):
        assert reader.recommend(hostile).fallback
        assert reader.history(hostile) == []
    assert reader.user_ids("%") == [] and reader.user_ids("_") == []
    assert reader.user_ids("ali") == ["alice"]
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest


# -- listening only on the local machine ----------------------------------------------------


def test_everything_that_listens_binds_to_127_0_0_1_by_default():
    from engine.sources.broker import broker_command
    from engine.worker.app import app_options, worker_argv

    run_sh = (REPO / "run.sh").read_text()
    assert "--server.address 127.0.0.1" in run_sh or '--server.address "${' in run_sh
    # The dashboard's address defaults to the loopback interface (an error message may name others).
    assert '"${RECO_DASHBOARD_HOST:-127.0.0.1}"' in run_sh
    assert "0.0.0.0}" not in run_sh and "address 0.0.0.0" not in run_sh
    settings = _settings()
    options = app_options(settings)
    # The live API is on, on the loopback interface only.
    assert options["web_bind"] == options["web_host"] == "127.0.0.1"
    assert "--without-web" not in worker_argv(settings)
    command = broker_command(19092)
    assert command[command.index("--listener-url") + 1] == "tcp://127.0.0.1:19092"
