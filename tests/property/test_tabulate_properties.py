"""Secondary suppression leaves no withheld cell exposed by any total of its table."""

import itertools

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.disclosure.tabulate import protect_against_differencing

DIMS = ["x", "y", "z"]


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(1, 40), min_size=1, max_size=60),
    sizes=st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4)),
    threshold=st.integers(2, 12),
)
def test_every_total_with_a_published_cell_hides_two_or_more_withheld_cells(
    counts, sizes, threshold
):
    keys = list(itertools.product(*(range(n) for n in sizes)))[: len(counts)]
    cells = pl.DataFrame(
        {d: [str(k[i]) for k in keys] for i, d in enumerate(DIMS)}
        | {"_true": counts[: len(keys)]}
    ).with_columns((pl.col("_true") < threshold).alias("withheld"))
    protected = protect_against_differencing(cells, DIMS, threshold)

    # Never un-withholds, and keeps every cell.
    assert protected.height == cells.height
    before = dict(zip(cells.select(DIMS).rows(), cells["withheld"], strict=True))
    after = dict(zip(protected.select(DIMS).rows(), protected["withheld"], strict=True))
    assert all(after[c] for c, w in before.items() if w)

    for size in range(len(DIMS)):
        for combo in itertools.combinations(DIMS, size):
            keys_ = list(combo) or None
            grouped = (
                protected.with_columns(pl.lit(0).alias("_all"))
                .group_by(keys_ or ["_all"])
                .agg(
                    n=pl.col("withheld").sum(),
                    units=pl.col("_true").filter(pl.col("withheld")).sum(),
                    published=(~pl.col("withheld")).sum(),
                )
                .filter(pl.col("published") > 0)
            )
            for n, units in grouped.select("n", "units").rows():
                assert n == 0 or (n >= 2 and units >= threshold), (combo, n, units)
