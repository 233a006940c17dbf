"""Choose hyper-parameters on the pre-training and hold-out part of a stream only.

`python -m engine.tune --data PATH [--model NAME ...]` takes the events the
evaluation protocol never scores (the first pretrain + holdout share, 30% by
default), replays them with the same protocol shape inside -- the first third
trains, the other two thirds are evaluated test-then-learn -- for every point
of a small grid, and prints one JSON line per point, then the best per model.
The evaluated 70% is never looked at, so the published figures stay honest.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys

from engine.evaluate import Protocol, positives, replay, split_points
from engine.events import Interaction
from engine.features import read_features
from engine.movielens import read_ratings

# Small grids around values that learn on a stream; each point is one replay.
GRIDS: dict[str, dict[str, list]] = {
    # The hybrid's last round; earlier rounds (same protocol) settled window=3,
    # context=3, decay=0.5 and neighbours=128 (see docs/results-quality.md).
    "hybrid": {
        "co_weight": [2.0, 3.0, 5.0],
        "profile": [20, 40, 60],
        "profile_weight": [3.0, 5.0, 8.0],
        "stage_weight": [0.5, 1.0],
    },
    "popular": {},
    "mf": {"k": [10, 32], "learn_rate": [0.02, 0.05, 0.1]},
    "bprmf": {"k": [10, 32], "learn_rate": [0.05, 0.2, 0.5]},
    "userknn": {"k": [10, 20, 50, 100]},
    "sketch": {"id_dims": [16, 32, 64]},
    "fm": {"k": [10, 32], "learn_rate": [0.01, 0.05]},
}
TUNE_PROTOCOL = Protocol(pretrain=1 / 3, holdout=0.0)


def grid_points(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid's values, as parameter dicts."""
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def tune(path: str, models: list[str], protocol: Protocol | None = None) -> dict[str, dict]:
    """Replay the unscored part of ``path`` for every grid point; return the best params per model."""
    protocol = protocol or Protocol()
    ratings = read_ratings(path, sort=False)
    events = positives(
        [Interaction(r.user, r.item, r.rating, r.timestamp) for r in ratings], protocol.min_rating
    )
    _, holdout_end = split_points(len(events), protocol)
    unscored = events[:holdout_end]
    features = read_features(path)
    best: dict[str, dict] = {}
    for model in models:
        results = []
        for params in grid_points(GRIDS[model]):
            result = replay(unscored, model, TUNE_PROTOCOL, params, features=features)
            print(json.dumps({"model": model, "params": params, **_figures(result)}), flush=True)
            results.append((result["recall@10"], params))
        best[model] = max(results, key=lambda r: r[0])[1]
    return best


def _figures(result: dict) -> dict:
    return {
        name: round(result[name], 4)
        for name in ("recall@10", "mpr", "popular_recall@10", "update_us", "evaluate_us")
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.tune", description=__doc__)
    parser.add_argument("--data", required=True, help="MovieLens rating file or folder")
    parser.add_argument("--model", action="append", choices=sorted(GRIDS), help="(repeatable)")
    args = parser.parse_args(argv)
    best = tune(args.data, args.model or list(GRIDS))
    print(json.dumps({"best": best}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
