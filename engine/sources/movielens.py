"""Readers for MovieLens rating files: u.data, ratings.dat and ratings.csv.

The format is told from the file itself, not its name, and item names are
read from the matching item file beside it (u.item, movies.dat, movies.csv).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path


class DatasetError(ValueError):
    """The file is not a MovieLens rating file this reader understands."""


@dataclass(frozen=True, slots=True)
class Rating:
    user: str
    item: str
    rating: float
    timestamp: float

    def as_event(self) -> dict:
        return {
            "user": self.user,
            "item": self.item,
            "rating": self.rating,
            "timestamp": self.timestamp,
        }


def resolve(path: str | Path) -> Path:
    """Accept a rating file or a folder holding one."""
    path = Path(path)
    if path.is_dir():
        for name in ("u.data", "ratings.dat", "ratings.csv"):
            if (path / name).is_file():
                return path / name
        raise DatasetError(f"{path} holds no u.data, ratings.dat or ratings.csv")
    if not path.is_file():
        raise DatasetError(
            f"{path} does not exist; give a MovieLens u.data, ratings.dat or "
            "ratings.csv (or the folder holding it)"
        )
    return path


def detect_format(path: Path) -> str:
    """'udata' (tab-separated), 'dat' ('::'-separated) or 'csv' (comma, with a header)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        first = f.readline()
    if "::" in first:
        return "dat"
    if "\t" in first:
        return "udata"
    if first.lower().replace(" ", "").startswith("userid,movieid,rating"):
        return "csv"
    raise DatasetError(
        f"{path} does not look like a MovieLens rating file (first line {first[:60]!r})"
    )


def read_ratings(path: str | Path, sort: bool = True) -> list[Rating]:
    """All ratings in the file, in timestamp order (stable) when ``sort``."""
    path = resolve(path)
    fmt = detect_format(path)
    ratings: list[Rating] = []
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        if fmt == "csv":
            reader = csv.reader(f)
            next(reader)
            rows = reader
        else:
            separator = "::" if fmt == "dat" else "\t"
            rows = (line.rstrip("\r\n").split(separator) for line in f if line.strip())
        for number, row in enumerate(rows, start=2 if fmt == "csv" else 1):
            try:
                user, item, rating, timestamp = row[:4]
                ratings.append(Rating(user.strip(), item.strip(), float(rating), float(timestamp)))
            except ValueError:
                raise DatasetError(
                    f"{path}:{number}: expected user, item, rating, timestamp; got {row!r}"
                ) from None
    if sort:
        ratings.sort(key=lambda r: r.timestamp)
    return ratings


def read_item_names(ratings_path: str | Path) -> dict[str, str]:
    """Item id -> display name from the item file beside the rating file, if any."""
    folder = resolve(ratings_path).parent
    names: dict[str, str] = {}
    if (folder / "u.item").is_file():
        with open(folder / "u.item", encoding="latin-1") as f:
            for line in f:
                fields = line.split("|")
                if len(fields) > 1:
                    names[fields[0]] = fields[1]
    elif (folder / "movies.dat").is_file():
        with open(folder / "movies.dat", encoding="latin-1") as f:
            for line in f:
                fields = line.rstrip("\r\n").split("::")
                if len(fields) > 1:
                    names[fields[0]] = fields[1]
    elif (folder / "movies.csv").is_file():
        with open(folder / "movies.csv", encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            next(reader, None)
            for row in reader:
                if len(row) > 1:
                    names[row[0]] = row[1]
    return names
