"""MovieLens readers: the three formats, timestamp order, names, and the 100k replay."""

from __future__ import annotations

import pytest

from engine.sources.events import parse_event
from engine.sources.movielens import DatasetError, read_item_names, read_ratings
from engine.sources.producer import movielens_messages


def test_ml100k_replays_into_one_valid_event_per_rating(ml100k):
    messages = movielens_messages(ml100k / "u.data")
    assert len(messages) == 100_000
    events = [parse_event(m) for m in messages]
    assert [e.timestamp for e in events] == sorted(e.timestamp for e in events)
    assert len({e.user for e in events}) == 943
    assert len({e.item for e in events}) == 1682
    assert sum(e.rating >= 4 for e in events) == 55_375
    names = read_item_names(ml100k / "u.data")
    assert names["1"] == "Toy Story (1995)"
    assert len(names) >= 1681  # some copies of u.item lack a line for item 267


def test_ratings_dat_and_csv_are_detected_from_content(tmp_path):
    dat = tmp_path / "ratings.dat"
    dat.write_text("1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978300000\n")
    (tmp_path / "movies.dat").write_text("1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n")
    ratings = read_ratings(dat)
    assert [(r.user, r.item, r.timestamp) for r in ratings] == [
        ("2", "1193", 978300000.0),
        ("1", "1193", 978300760.0),
        ("1", "661", 978302109.0),
    ]
    assert read_item_names(dat) == {"1193": "One Flew Over the Cuckoo's Nest (1975)"}

    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n")
    (folder / "movies.csv").write_text('movieId,title,genres\n31,"Dangerous Minds (1995)",Drama\n')
    assert read_ratings(folder)[0].rating == 2.5
    assert read_item_names(folder) == {"31": "Dangerous Minds (1995)"}


def test_unknown_files_get_a_clear_error(tmp_path):
    other = tmp_path / "notes.txt"
    other.write_text("hello world\n")
    with pytest.raises(DatasetError, match="does not look like a MovieLens rating file"):
        read_ratings(other)
    with pytest.raises(DatasetError, match="does not exist"):
        read_ratings(tmp_path / "missing.data")
    broken = tmp_path / "u.data"
    broken.write_text("1\t2\tfive\t3\n")
    with pytest.raises(DatasetError, match="u.data:1"):
        read_ratings(broken)
