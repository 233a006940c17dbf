"""MovieLens-shaped fixture files: a few dozen ratings in each format, laid out for the README."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

GENRE_FLAGS = 19  # u.item's genre columns


@dataclass(frozen=True)
class Rating:
    user: str
    item: str
    rating: float
    timestamp: int


def fixture_ratings(first_item: int, n: int, seed: int, half_stars: bool = False) -> list[Rating]:
    """``n`` ratings of users 1-9 for items ``first_item`` .. +19, not in timestamp order."""
    rng = random.Random(seed)
    stars = (1, 1.5, 2, 3, 3.5, 4, 4.5, 5, 5) if half_stars else (1, 2, 3, 4, 5, 5)
    times = rng.sample(range(100_000), n)
    return [
        Rating(
            str(1 + k % 9), str(first_item + rng.randrange(20)), rng.choice(stars), 880_000_000 + t
        )
        for k, t in enumerate(times)
    ]


def in_time_order(ratings: list[Rating]) -> list[Rating]:
    return sorted(ratings, key=lambda r: r.timestamp)


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


@dataclass(frozen=True)
class Layout:
    """A folder to run commands from (no data/ in it) and MovieLens-shaped fixture files.

    ``work/../shared/data/ml-100k`` is the u.data fixture, so the README's
    commands run there as written read it instead of MovieLens itself.
    """

    root: Path

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def u_data(self) -> Path:
        return self.root / "shared" / "data" / "ml-100k" / "u.data"

    @property
    def ratings_dat(self) -> Path:
        return self.root / "ml-1m" / "ratings.dat"

    @property
    def ratings_csv(self) -> Path:
        return self.root / "latest" / "ratings.csv"

    def fresh(self, name: str) -> Path:
        """A new empty folder beside work/ to run a command from."""
        folder = self.root / f"run-{name}"
        folder.mkdir()
        return folder

    def store(self, name: str) -> Path:
        """A store path outside any folder commands run from (as --db /other/dir/reco.db).

        Each in a folder of its own: Faust's working folder goes beside it.
        """
        return self.root / "stores" / name / "reco.db"


U_DATA = fixture_ratings(1, 40, seed=1)
RATINGS_DAT = fixture_ratings(101, 36, seed=2)
RATINGS_CSV = fixture_ratings(201, 36, seed=3, half_stars=True)
# Names as a user would see them, one with a Latin-1 letter (u.item and
# movies.dat are Latin-1 files) and one with a comma (quoted in movies.csv).
U_ITEM_NAMES = {str(i): f"Fixture Film {i} (1995)" for i in range(1, 31)} | {
    "2": "Café Noir (1996)"
}
MOVIES_DAT_NAMES = {str(i): f"Fixture Show {i} (2000)" for i in range(101, 121)}
MOVIES_CSV_NAMES = {str(i): f"Fixture Story {i} (2010)" for i in range(201, 221)} | {
    "203": "Story, The (2011)"
}


def write_fixtures(layout: Layout) -> None:
    layout.work.mkdir(parents=True)
    layout.u_data.parent.mkdir(parents=True)
    layout.u_data.write_text(
        "".join(f"{r.user}\t{r.item}\t{int(r.rating)}\t{r.timestamp}\n" for r in U_DATA)
    )
    flags = "|".join(["0"] * (GENRE_FLAGS - 1) + ["1"])
    (layout.u_data.parent / "u.item").write_bytes(
        "".join(
            f"{i}|{name}|01-01-1995||http://example.invalid/{i}|{flags}\n"
            for i, name in U_ITEM_NAMES.items()
        ).encode("latin-1")
    )
    layout.ratings_dat.parent.mkdir(parents=True)
    layout.ratings_dat.write_text(
        "".join(f"{r.user}::{r.item}::{int(r.rating)}::{r.timestamp}\n" for r in RATINGS_DAT)
    )
    (layout.ratings_dat.parent / "movies.dat").write_bytes(
        "".join(f"{i}::{name}::Comedy|Drama\n" for i, name in MOVIES_DAT_NAMES.items()).encode(
            "latin-1"
        )
    )
    layout.ratings_csv.parent.mkdir(parents=True)
    layout.ratings_csv.write_text(
        "userId,movieId,rating,timestamp\n"
        + "".join(f"{r.user},{r.item},{_number(r.rating)},{r.timestamp}\n" for r in RATINGS_CSV)
    )
    (layout.ratings_csv.parent / "movies.csv").write_text(
        "movieId,title,genres\n"
        + "".join(f'{i},"{name}",Comedy|Drama\n' for i, name in MOVIES_CSV_NAMES.items())
    )


def expected_replay(ratings: list[Rating], events: int | None = None) -> list[Rating]:
    """What produce sends of a file: its ratings in timestamp order, the first ``events``."""
    return in_time_order(ratings)[:events]
