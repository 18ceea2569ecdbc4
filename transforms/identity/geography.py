"""The synthetic geography shipped with the project: postcode unit -> LSOA -> ward -> borough.

A declarative lookup (`data_contracts/reference/geography.csv`) of a fictional borough; see the
README next to it. Pure: reads the file, returns a frame.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from schemas.errors import ConfigError

GEOGRAPHY_FILE = Path("reference") / "geography.csv"
"""Where the lookup lives inside a contracts folder (`--contracts`)."""
DEFAULT_GEOGRAPHY_PATH = Path(__file__).resolve().parents[2] / "data_contracts" / GEOGRAPHY_FILE

GEOGRAPHY_SCHEMA = pl.Schema(
    {
        "postcode": pl.String,
        "postcode_sector": pl.String,
        "postcode_district": pl.String,
        "lsoa_code": pl.String,
        "lsoa_name": pl.String,
        "ward_code": pl.String,
        "ward_name": pl.String,
        "borough_code": pl.String,
        "borough_name": pl.String,
    }
)


def load_geography(path: Path | None = None) -> pl.DataFrame:
    """The geography lookup, one row per postcode unit, sorted by LSOA then postcode."""
    path = DEFAULT_GEOGRAPHY_PATH if path is None else Path(path)
    if not path.is_file():
        raise ConfigError(f"geography lookup not found: {path}")
    frame = pl.read_csv(path, schema=GEOGRAPHY_SCHEMA)
    if frame.is_empty():
        raise ConfigError(f"geography lookup is empty: {path}")
    duplicated = frame.get_column("postcode").is_duplicated().sum()
    if duplicated:
        raise ConfigError(f"geography lookup {path.name}: {duplicated} duplicated postcode rows")
    return frame.sort("lsoa_code", "postcode")
