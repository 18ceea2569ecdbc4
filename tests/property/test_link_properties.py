"""Properties of linkage: on random token frames (fast, many examples), and on the synthetic
council with its identifier noise varied (slow, few examples: how precision and recall move)."""

from __future__ import annotations

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transforms.identity.link import LinkageRules, link

RULES = LinkageRules.model_validate(
    {
        "rules": [
            {"name": "nhs", "fields": [{"identifier": "nhs_number"}]},
            {"name": "ni", "fields": [{"identifier": "ni_number"}]},
            {"name": "name_dob", "fields": [{"identifier": "surname"},
                                            {"identifier": "date_of_birth"}]},
            {"name": "name_postcode", "fields": [{"identifier": "surname"},
                                                 {"identifier": "postcode"}],
             "vetoed_by": ["date_of_birth"]},
        ],
        "household": {"name": "household", "fields": [{"identifier": "uprn"}]},
        "conflicts": {"unique_per_person": ["nhs", "ni"]},
    }
)
COLUMNS = ["tok_nhs", "tok_ni", "tok_name_dob", "tok_name_postcode", "tok_veto_date_of_birth",
           "tok_household"]
# Small alphabets make tokens collide, so links, chains and conflicts all happen.
token = st.one_of(st.none(), st.sampled_from("abcde"))
record = st.tuples(st.sampled_from(["asc", "csc", "hsg", "ctx", "ben"]),
                   *[token for _ in COLUMNS])


def frame(records) -> pl.DataFrame:
    return pl.DataFrame(
        records, schema={"department": pl.String, **{c: pl.String for c in COLUMNS}},
        orient="row",
    ).with_row_index("row_number").with_columns(pl.col("row_number").cast(pl.Int64))


def persons(linked: pl.DataFrame) -> dict[int, str]:
    return dict(zip(linked["row_number"].to_list(), linked["person_key"].to_list(), strict=True))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(record, min_size=1, max_size=25), st.randoms(use_true_random=False))
def test_linkage_properties(records, rng):
    tokens = frame(records)
    linked, counts = link(tokens, RULES)
    c = counts.to_dict()

    # Same rows out, one key per person, accounting that adds up.
    assert linked.height == tokens.height
    assert linked["person_key"].n_unique() == c["persons"]
    assert sum(c["records_linked_by_rule"].values()) + c["unmatched_records"] == c["records"]

    # Row order does not matter.
    order = list(range(tokens.height))
    rng.shuffle(order)
    shuffled, _ = link(tokens[order], RULES)
    assert persons(shuffled) == persons(linked)

    # The most trusted rule is never refused; no person holds two NHS numbers.
    by_person = linked.group_by("person_key")
    assert by_person.agg(pl.col("tok_nhs").drop_nulls().n_unique().alias("n"))["n"].max() <= 1
    nhs = linked.drop_nulls("tok_nhs").group_by("tok_nhs").agg(pl.col("person_key").n_unique())
    assert nhs["person_key"].max() is None or nhs["person_key"].max() == 1

    # Nothing is split silently: records sharing a rule's token but kept apart were refused.
    for rule in RULES.rules:
        groups = linked.drop_nulls(rule.token_column).group_by(rule.token_column).agg(
            pl.col("person_key").n_unique().alias("people")
        )
        if groups.height and groups["people"].max() > 1:
            assert c["conflicts_by_rule"][rule.name] > 0, rule.name

    # Different birth dates are never joined by the vetoed rule alone.
    for _, group in linked.group_by("person_key"):
        dobs = group["tok_veto_date_of_birth"].drop_nulls().unique()
        if dobs.len() > 1:
            stronger = group.filter(
                pl.any_horizontal(pl.col("tok_nhs", "tok_ni", "tok_name_dob").is_not_null())
            )
            assert stronger.height > 0


# --- the synthetic council with its identifier noise varied ----------------------------------

SWEEP_RESIDENTS = 5_000
SWEEP = (0.0, 0.02, 0.05, 0.1)


def _quality(tmp_path_factory, noise: float) -> tuple[float, float]:
    from tests.integration.test_linkage_quality import link_council, pairwise_quality

    root = tmp_path_factory.mktemp("noise")
    _, with_ids, _, _ = link_council(root, noise, residents=SWEEP_RESIDENTS, seed=13)
    truth = pl.read_parquet(root / "synthetic_truth" / "truth.parquet")
    precision, recall, _ = pairwise_quality(with_ids, truth)
    print(f"noise={noise:.3f} precision={precision:.4f} recall={recall:.4f}")
    return precision, recall


def test_recall_falls_as_noise_rises_and_precision_holds(tmp_path_factory):
    figures = [_quality(tmp_path_factory, noise) for noise in SWEEP]
    recalls = [recall for _, recall in figures]
    assert recalls[0] >= 0.995  # without noise, deterministic rules find (nearly) everyone
    assert all(later <= earlier + 0.003 for earlier, later in zip(recalls, recalls[1:],
                                                                  strict=False))
    assert all(precision >= 0.99 for precision, _ in figures)
    assert recalls[SWEEP.index(0.02)] >= 0.97


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(noise=st.floats(min_value=0.0, max_value=0.15))
def test_quality_bounds_at_any_noise(tmp_path_factory, noise):
    precision, recall = _quality(tmp_path_factory, noise)
    assert precision >= 0.99
    # Each identifier error costs at most about one link: recall stays near 1 - noise.
    assert recall >= 1.0 - 1.5 * noise - 0.01
