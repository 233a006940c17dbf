"""Side features of users and items, read from the MovieLens files beside a rating file.

MovieLens 100k has genres (u.item) and demographics (u.user); 1M has genres
(movies.dat) and demographics (users.dat); the ratings.csv releases have
genres (movies.csv) only. Feature-based models (fm, sketch) use them; an id
without features (or a stream with none at all) gets a zero vector.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.sources.movielens import resolve

GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
    "IMAX",
)
# MovieLens 1M's age groups; 100k's exact ages are put into the same groups.
AGE_GROUPS = (1, 18, 25, 35, 45, 50, 56)
N_OCCUPATIONS = 21  # 1M codes 0-20; 100k's u.occupation has 21 names too
USER_DIM = 2 + len(AGE_GROUPS) + N_OCCUPATIONS


@dataclass
class FeatureTable:
    """Fixed-width feature vectors per external id: users (user_dim,), items (item_dim,) float32."""

    users: dict[str, np.ndarray]
    items: dict[str, np.ndarray]
    user_dim: int
    item_dim: int

    def user(self, user: str) -> np.ndarray:
        found = self.users.get(user)
        return found if found is not None else np.zeros(self.user_dim, dtype=np.float32)

    def item(self, item: str) -> np.ndarray:
        found = self.items.get(item)
        return found if found is not None else np.zeros(self.item_dim, dtype=np.float32)


def read_features(ratings_path: str | Path) -> FeatureTable | None:
    """Features from the files beside a MovieLens rating file, or None where there are none."""
    folder = resolve(ratings_path).parent
    items = _read_genres(folder)
    users = _read_demographics(folder)
    if not items and not users:
        return None
    return FeatureTable(
        users=users, items=items, user_dim=USER_DIM if users else 0, item_dim=len(GENRES)
    )


def _read_genres(folder: Path) -> dict[str, np.ndarray]:
    genres: dict[str, np.ndarray] = {}
    if (folder / "u.item").is_file():
        with open(folder / "u.item", encoding="latin-1") as f:
            for line in f:
                fields = line.rstrip("\r\n").split("|")
                if len(fields) >= 5 + 19:
                    flags = np.array([float(x == "1") for x in fields[-19:]], dtype=np.float32)
                    genres[fields[0]] = np.concatenate([flags, np.zeros(1, dtype=np.float32)])
    elif (folder / "movies.dat").is_file():
        with open(folder / "movies.dat", encoding="latin-1") as f:
            for line in f:
                fields = line.rstrip("\r\n").split("::")
                if len(fields) == 3:
                    genres[fields[0]] = _genre_vector(fields[2].split("|"))
    elif (folder / "movies.csv").is_file():
        with open(folder / "movies.csv", encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            next(reader, None)
            for row in reader:
                if len(row) >= 3:
                    genres[row[0]] = _genre_vector(row[2].split("|"))
    return genres


def _genre_vector(names: list[str]) -> np.ndarray:
    vector = np.zeros(len(GENRES), dtype=np.float32)
    for name in names:
        if name in GENRES:
            vector[GENRES.index(name)] = 1.0
    return vector


def _read_demographics(folder: Path) -> dict[str, np.ndarray]:
    users: dict[str, np.ndarray] = {}
    if (folder / "u.user").is_file():
        occupations: dict[str, int] = {}
        with open(folder / "u.user", encoding="latin-1") as f:
            for line in f:
                fields = line.rstrip("\r\n").split("|")
                if len(fields) >= 4 and fields[1].isdigit():
                    code = occupations.setdefault(fields[3], len(occupations))
                    users[fields[0]] = _user_vector(fields[2], int(fields[1]), code)
    elif (folder / "users.dat").is_file():
        with open(folder / "users.dat", encoding="latin-1") as f:
            for line in f:
                fields = line.rstrip("\r\n").split("::")
                if len(fields) >= 4 and fields[2].isdigit() and fields[3].isdigit():
                    users[fields[0]] = _user_vector(fields[1], int(fields[2]), int(fields[3]))
    return users


def _user_vector(gender: str, age: int, occupation: int) -> np.ndarray:
    """[female, male, one-hot age group (7), one-hot occupation (21)]."""
    vector = np.zeros(USER_DIM, dtype=np.float32)
    vector[0 if gender.upper() == "F" else 1] = 1.0
    group = max(g for g in range(len(AGE_GROUPS)) if age >= AGE_GROUPS[g] or g == 0)
    vector[2 + group] = 1.0
    vector[2 + len(AGE_GROUPS) + occupation % N_OCCUPATIONS] = 1.0
    return vector
