#!/usr/bin/env bash
# ./run.sh        bring up broker, engine, producer and dashboard; Ctrl-C stops them all.
#                 RECO_WORKERS=2 ./run.sh: two engine workers in one consumer group.
# ./run.sh test   set up the same environment plus test tools and run the whole suite.
# Any further arguments after "test" go to pytest.
set -euo pipefail
cd "$(dirname "$0")"

VENV="${RECO_VENV:-.venv}"
PYTHON="$VENV/bin/python"

ensure_venv() {
    # $1: the requirements file to install. Reinstalls only when it changed.
    local requirements="$1" stamp="$VENV/.installed-${1//\//-}"
    if [ ! -x "$PYTHON" ]; then
        local base
        base="$(command -v python3.11 || command -v python3)"
        "$base" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
            || { echo "Python 3.11 or newer is needed (found $("$base" --version))" >&2; exit 1; }
        "$base" -m venv "$VENV"
    fi
    if [ ! -f "$stamp" ] || ! cmp -s "$stamp" <(cat requirements.txt tests/requirements.txt); then
        echo "Installing $requirements into $VENV ..." >&2
        "$PYTHON" -m pip install --quiet --disable-pip-version-check -r "$requirements"
        cat requirements.txt tests/requirements.txt > "$stamp"
    fi
}

run_tests() {
    ensure_venv tests/requirements.txt
    "$PYTHON" -m ruff check .
    "$PYTHON" -m ruff format --check .
    "$PYTHON" -m pytest "$@"
}

# The variables only this script reads (the engine checks its own): a bad one
# stops the demo before anything starts, in one line, as the engine's do.
check_demo_settings() {
    local name value
    for name in RECO_BROKER_PORT RECO_DASHBOARD_PORT RECO_WEB_PORT; do
        value="${!name:-}"
        if [ -n "$value" ] && ! { [[ $value =~ ^[0-9]{1,5}$ ]] && ((10#$value >= 1 && 10#$value <= 65535)); }; then
            echo "error: $name=$value is not valid: use a port between 1 and 65535" >&2
            exit 2
        fi
    done
    value="${RECO_DEMO_RATE:-}"
    if [ -n "$value" ] && ! { [[ $value =~ ^[0-9]*[.]?[0-9]+$ ]] && [[ $value =~ [1-9] ]]; }; then
        echo "error: RECO_DEMO_RATE=$value is not valid: use events per second above 0, such as 300" >&2
        exit 2
    fi
    value="${RECO_WORKERS:-}"
    if [ -n "$value" ] && ! [[ $value =~ ^0*[1-9][0-9]{0,3}$ ]]; then
        echo "error: RECO_WORKERS=$value is not valid: use a whole number of workers, 1 or more, such as 2" >&2
        exit 2
    fi
    if ((10#${RECO_WEB_PORT:-6066} + 10#${value:-1} - 1 > 65535)); then
        echo "error: RECO_WEB_PORT=${RECO_WEB_PORT:-6066} leaves no port for worker ${value}: use a lower port" >&2
        exit 2
    fi
    value="${RECO_DASHBOARD_HOST:-127.0.0.1}"
    if [[ $value =~ [[:space:]/] ]]; then
        echo "error: RECO_DASHBOARD_HOST=$value is not valid: use an address such as 127.0.0.1 or 0.0.0.0" >&2
        exit 2
    fi
}

run_demo() {
    check_demo_settings
    ensure_venv requirements.txt
    export RECO_DB="${RECO_DB:-data/reco.db}"
    local broker_port="${RECO_BROKER_PORT:-19092}"
    local dashboard_port="${RECO_DASHBOARD_PORT:-8501}"
    local pids=()

    stop_all() {
        trap - INT TERM EXIT
        echo "Stopping ..." >&2
        # Engine first, so its final checkpoint still reaches the store.
        for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
        for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
        echo "Stopped." >&2
    }
    trap stop_all INT TERM EXIT

    if [ -z "${RECO_BROKER:-}" ]; then
        export RECO_BROKER="kafka://127.0.0.1:$broker_port"
        "$PYTHON" -m engine broker --port "$broker_port" &
        pids=($! "${pids[@]}")
        "$PYTHON" -m engine wait-for-broker --timeout 30
    else
        echo "Using the Kafka at $RECO_BROKER" >&2
    fi
    # The worker serves the live API on 127.0.0.1:$RECO_WEB_PORT; the demo's
    # synthetic users ask it for recommendations and act on them (closed loop),
    # and the dashboard's Recommend page asks it too.
    export RECO_WEB_PORT="${RECO_WEB_PORT:-6066}"
    export RECO_API_URL="${RECO_API_URL:-http://127.0.0.1:$RECO_WEB_PORT}"
    "$PYTHON" -m engine worker &
    pids=($! "${pids[@]}")
    # RECO_WORKERS=N: N-1 more workers in the same consumer group, each with its
    # own port (the next ones), store (worker-K.db beside RECO_DB) and Faust
    # folder; any of them answers the API for any user. The dashboard reads
    # every store.
    local workers=$((10#${RECO_WORKERS:-1})) stores="$RECO_DB" k store
    for ((k = 2; k <= workers; k++)); do
        store="$(dirname "$RECO_DB")/worker-$k.db"
        stores="$stores,$store"
        RECO_DB="$store" RECO_WEB_PORT=$((10#$RECO_WEB_PORT + k - 1)) \
            RECO_DATADIR="${RECO_DATADIR:-$(dirname "$RECO_DB")/faust}/worker-$k" \
            "$PYTHON" -m engine worker &
        pids=($! "${pids[@]}")
    done
    "$PYTHON" -m engine produce --source synthetic --closed-loop --api "$RECO_API_URL" \
        --rate "${RECO_DEMO_RATE:-300}" --malformed 0.01 --quiet &
    pids=($! "${pids[@]}")
    RECO_DB="$stores" "$PYTHON" -m streamlit run dashboard/app.py --server.headless true \
        --server.address "${RECO_DASHBOARD_HOST:-127.0.0.1}" --server.port "$dashboard_port" \
        --browser.gatherUsageStats false --client.toolbarMode viewer >/dev/null &
    pids=($! "${pids[@]}")
    echo "Dashboard: http://127.0.0.1:$dashboard_port   (Ctrl-C stops everything)" >&2
    echo "Live API:  $RECO_API_URL/recommend/u1?n=10" >&2
    if ((workers > 1)); then
        echo "Workers:   $workers, on ports $RECO_WEB_PORT-$((10#$RECO_WEB_PORT + workers - 1)), stores $stores" >&2
    fi
    wait -n "${pids[@]}" || true
}

case "${1:-}" in
    test) shift; run_tests "$@" ;;
    "") run_demo ;;
    *) echo "usage: ./run.sh [test [pytest args]]" >&2; exit 2 ;;
esac
