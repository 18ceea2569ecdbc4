"""Departments are received largest first, each department's files in the order they arrived."""

import os
from pathlib import Path

from flows.share_cohorts import receiving_order


def _file(folder: Path, name: str, size: int, arrived: float) -> Path:
    path = folder / name
    path.write_bytes(b"x" * size)
    os.utime(path, (arrived, arrived))
    return path


def test_the_largest_department_first_and_each_ones_files_by_arrival(tmp_path):
    later_but_bigger = _file(tmp_path, "b_2.csv", 500, arrived=200.0)
    earlier = _file(tmp_path, "b_1.csv", 100, arrived=100.0)
    small = _file(tmp_path, "a.csv", 550, arrived=50.0)
    tiny = _file(tmp_path, "c.csv", 10, arrived=10.0)
    gone = tmp_path / "vanished.csv"  # listed, then removed: sorts as empty, not an error
    found = [("a", small), ("b", later_but_bigger), ("c", tiny), ("b", earlier), ("d", gone)]
    # b holds 600 bytes, a 550, c 10, d nothing; b's files by arrival, not by size.
    assert receiving_order(found) == [
        ("b", earlier), ("b", later_but_bigger), ("a", small), ("c", tiny), ("d", gone)
    ]
