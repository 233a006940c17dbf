"""Choose hyper-parameters on the pre-training and hold-out part of a stream only.

`python -m engine.evaluation.tune --data PATH [--data PATH ...] [--model NAME ...]`
takes, of each rating file, the events the evaluation protocol never scores
(the first pretrain + holdout share, 30% by default), replays them with the
same protocol shape inside -- the first third trains, the other two thirds
are evaluated test-then-learn -- for every point of a small grid, and prints
one JSON line per point and file, then the best per model. The evaluated 70%
is never looked at, so the published figures stay honest.

A point's score is its recall as a multiple of popularity's on the same
replay, the geometric mean over the files: one set of defaults serves every
dataset, and a dataset where every model scores low weighs as much as one
where every model scores high.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from collections.abc import Sequence

from engine.evaluation.replay import Protocol, positives, replay, split_points
from engine.models.features import read_features
from engine.sources.events import Interaction
from engine.sources.movielens import read_ratings

# Small grids around values that learn on a stream; each point is one replay.
GRIDS: dict[str, dict[str, list]] = {
    # The hybrid's last round, on the heads of MovieLens 100k and latest-small;
    # earlier rounds (same protocol, 100k only) settled window=3, context=3,
    # decay=0.5, profile=20 and neighbours=128.
    "hybrid": {
        "popularity_window": [300, 1000, 3000],
        "co_weight": [3.0, 5.0],
        "profile_weight": [5.0, 8.0],
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


def unscored_events(path: str, protocol: Protocol) -> list[Interaction]:
    """The positive events of ``path`` that ``protocol`` trains on but never scores."""
    ratings = read_ratings(path, sort=False)
    events = positives(
        [Interaction(r.user, r.item, r.rating, r.timestamp) for r in ratings], protocol.min_rating
    )
    _, holdout_end = split_points(len(events), protocol)
    return events[:holdout_end]


def tune(
    paths: str | Sequence[str], models: list[str], protocol: Protocol | None = None
) -> dict[str, dict]:
    """Replay the unscored part of every file for every grid point; return the best params per model."""
    protocol = protocol or Protocol()
    paths = [paths] if isinstance(paths, str) else list(paths)
    heads = [(path, unscored_events(path, protocol), read_features(path)) for path in paths]
    best: dict[str, dict] = {}
    for model in models:
        results = []
        for params in grid_points(GRIDS[model]):
            lifts = []
            for path, events, features in heads:
                result = replay(events, model, TUNE_PROTOCOL, params, features=features)
                figures = _figures(result)
                print(json.dumps({"model": model, "data": path, "params": params, **figures}))
                lifts.append(result["recall@10"] / max(result["popular_recall@10"], 1e-9))
            score = math.exp(sum(math.log(max(lift, 1e-9)) for lift in lifts) / len(lifts))
            print(
                json.dumps({"model": model, "params": params, "lift": round(score, 4)}), flush=True
            )
            results.append((score, params))
        best[model] = max(results, key=lambda r: r[0])[1]
    return best


def _figures(result: dict) -> dict:
    return {
        name: round(result[name], 4)
        for name in ("recall@10", "mpr", "popular_recall@10", "update_us", "evaluate_us")
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.evaluation.tune", description=__doc__)
    parser.add_argument(
        "--data",
        required=True,
        action="append",
        help="MovieLens rating file or folder (repeatable)",
    )
    parser.add_argument("--model", action="append", choices=sorted(GRIDS), help="(repeatable)")
    args = parser.parse_args(argv)
    best = tune(args.data, args.model or list(GRIDS))
    print(json.dumps({"best": best}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
