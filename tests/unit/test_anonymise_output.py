"""The released table: built lazily over the input, streamed to Parquet, same rows as `frame`."""

import polars as pl
import pytest

from schemas.errors import ConfigError, HierarchyError
from transforms.disclosure.anonymise import anonymise
from transforms.disclosure.hierarchy import from_table

AGE = from_table("age", "age.csv", [[str(a), f"{a // 10 * 10}s", "*"] for a in range(20, 60)])
SEX = from_table("sex", "sex.csv", [["F", "*"], ["M", "*"]])
HIERARCHIES = {"age": AGE, "sex": SEX}

# Five women in their 20s, one man aged 45 (fails k=2 unless suppressed), interleaved so
# that order matters; a row id to check the order is kept.
DATA = pl.DataFrame(
    {
        "row": list(range(7)),
        "age": [21, 22, 45, 23, 21, 22, 31],
        "sex": ["F", "F", "M", "F", "F", "F", "F"],
        "diagnosis": ["a", "b", "a", "b", "a", "b", "a"],
    }
)


@pytest.mark.parametrize("lazy", [False, True])
def test_streamed_output_equals_the_materialised_frame(tmp_path, lazy):
    source = DATA
    if lazy:
        DATA.write_parquet(tmp_path / "in.parquet")
        source = pl.scan_parquet(tmp_path / "in.parquet")
    result = anonymise(source, ["age", "sex"], HIERARCHIES, k=2, max_suppression=0.2)
    assert result.suppressed == 1
    written = result.write_parquet(tmp_path / "out.parquet")
    out = pl.read_parquet(tmp_path / "out.parquet")
    assert written == out.height == DATA.height - 1
    assert out.equals(result.frame)
    assert out.equals(result.lazy_frame().collect())
    assert out["row"].to_list() == [0, 1, 3, 4, 5, 6]  # input order, failing row gone
    assert out.schema == pl.Schema(
        {"row": pl.Int64, "age": pl.String, "sex": pl.String, "diagnosis": pl.String}
    )


def test_suppression_with_a_sensitive_attribute_removes_whole_classes():
    # l=2 on diagnosis: the 30s woman (one value) fails; the 20s women have a and b.
    result = anonymise(
        DATA.filter(pl.col("sex") == "F"),
        ["age"],
        HIERARCHIES,
        k=1,
        max_suppression=0.2,
        l=2,
        sensitive="diagnosis",
    )
    assert result.levels == {"age": 1}
    assert result.suppressed == 1
    assert result.frame["age"].to_list() == ["20s"] * 5


def test_write_after_frame_reuses_it(tmp_path):
    result = anonymise(DATA, ["age", "sex"], HIERARCHIES, k=2, max_suppression=0.2)
    frame = result.frame
    assert result.write_parquet(tmp_path / "out.parquet") == frame.height
    assert pl.read_parquet(tmp_path / "out.parquet").equals(frame)


@pytest.mark.parametrize("lazy", [False, True])
def test_uncovered_and_missing_values_are_counted_not_shown(lazy):
    data = pl.DataFrame({"age": [21, 99, 99, None], "sex": ["F", "F", "X", "F"]})
    source = data.lazy() if lazy else data
    with pytest.raises(HierarchyError) as err:
        anonymise(source, ["age", "sex"], HIERARCHIES, k=1, max_suppression=0)
    assert "1 values of column 'age' are missing" in str(err.value)
    assert "99" not in str(err.value) and "X" not in str(err.value)
    with pytest.raises(HierarchyError, match="2 values of column 'age' are not covered"):
        anonymise(source.drop_nulls(), ["age", "sex"], HIERARCHIES, k=1, max_suppression=0)


def test_text_ages_are_coded_like_integer_ages():
    as_text = DATA.with_columns(pl.col("age").cast(pl.String))
    text = anonymise(as_text.lazy(), ["age", "sex"], HIERARCHIES, k=2, max_suppression=0.2)
    ints = anonymise(DATA, ["age", "sex"], HIERARCHIES, k=2, max_suppression=0.2)
    assert text.levels == ints.levels and text.frame.equals(ints.frame)


def test_missing_sensitive_values_are_counted():
    data = DATA.with_columns(pl.when(pl.col("row") >= 2).then("diagnosis").alias("diagnosis"))
    with pytest.raises(ConfigError, match="2 values of sensitive column 'diagnosis'"):
        anonymise(data, ["age"], HIERARCHIES, k=1, max_suppression=0, l=2, sensitive="diagnosis")
