"""Properties of bucketing: stable, as the wire format defines it, and fair over many users."""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from baseplate.experiments.providers import parse_experiment
from baseplate.experiments.variant_sets.multi_variant_set import MultiVariantSet
from tests.experiments.conftest import FAR_FUTURE

MANY_USERS = [f"t2_{i:x}" for i in range(10_000)]
# How far a share measured over MANY_USERS may be from its configured size:
# five standard deviations of a binomial share at this count.
TOLERANCE = 0.025

texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
user_ids = st.one_of(texts, st.integers(), st.booleans())


def wire_bucket(seed, value, num_buckets=1000):
    """The bucket as the wire spec writes it down."""
    return int(hashlib.sha1(f"{seed}{value}".encode()).hexdigest(), 16) % num_buckets


def simple(exp_type, variants, **experiment):
    return {
        "id": 7,
        "name": "prop",
        "owner": "tests",
        "type": exp_type,
        "version": "1",
        "start_ts": 0,
        "stop_ts": FAR_FUTURE,
        "experiment": {"variants": variants, "experiment_version": 1, **experiment},
    }


def thousandths(total=1000):
    """Sizes as whole thousandths, so their buckets are exact."""
    return st.integers(0, total).map(lambda n: n / 1000)


@settings(max_examples=100, deadline=None)
@given(
    size=thousandths(),
    shuffle_version=st.integers(0, 5),
    bucket_seed=st.one_of(st.none(), texts),
    users=st.lists(user_ids, max_size=30),
)
def test_rollout_buckets_as_the_wire_format_says(size, shuffle_version, bucket_seed, users):
    experiment = {"shuffle_version": shuffle_version}
    if bucket_seed is not None:
        experiment["bucket_seed"] = bucket_seed
    config = simple("feature_rollout", [{"name": "on", "size": size}], **experiment)
    seed = bucket_seed if bucket_seed is not None else f"7.prop.{shuffle_version}"
    first, again = parse_experiment(config), parse_experiment(config)

    for user in users:
        expected = "on" if wire_bucket(seed, user) < int(size * 1000) else None
        assert first.variant(user_id=user) == expected
        assert again.variant(user_id=user) == expected


@settings(max_examples=50, deadline=None)
@given(
    seed=texts,
    users=st.lists(texts, max_size=30),
    percents=st.lists(st.integers(0, 25), min_size=1, max_size=4),
)
def test_r2_buckets_as_the_wire_format_says(seed, users, percents):
    variants = {f"v{i}": percent for i, percent in enumerate(percents)}
    config = simple("r2", variants, seed=seed or None, targeting={"logged_in": [True]})
    experiment = parse_experiment(config)
    names = sorted(variants)
    for user in users:
        bucket = wire_bucket(seed or "prop", user)
        candidate = names[bucket % len(names)]
        limit = int(variants[candidate] * len(names) * 10)
        expected = candidate if bucket < limit else None
        assert experiment.variant(user_id=user, logged_in=True) == expected


def shares(experiment):
    counts = Counter(experiment.variant(user_id=user) for user in MANY_USERS)
    return {name: count / len(MANY_USERS) for name, count in counts.items()}


def assert_converges(measured, configured):
    for name, size in configured.items():
        assert abs(measured.get(name, 0.0) - size) < TOLERANCE, (name, measured, configured)
    assert abs(measured.get(None, 0.0) - (1 - sum(configured.values()))) < TOLERANCE


@st.composite
def partition(draw, count):
    """``count`` sizes in thousandths adding up to at most 1."""
    cuts = sorted(draw(st.lists(st.integers(0, 1000), min_size=count, max_size=count)))
    edges = [0, *cuts]
    return [(high - low) / 1000 for low, high in itertools.pairwise(edges)]


@settings(max_examples=8, deadline=None)
@given(sizes=partition(2), seed=texts)
def test_single_variant_shares_converge(sizes, seed):
    variants = [{"name": name, "size": size} for name, size in zip("ab", sizes, strict=True)]
    experiment = parse_experiment(simple("single_variant", variants, bucket_seed=seed))
    assert_converges(shares(experiment), dict(zip("ab", sizes, strict=True)))


@settings(max_examples=8, deadline=None)
@given(sizes=st.integers(3, 6).flatmap(partition), seed=texts)
def test_multi_variant_shares_converge(sizes, seed):
    names = [f"v{i}" for i in range(len(sizes))]
    variants = [{"name": name, "size": size} for name, size in zip(names, sizes, strict=True)]
    experiment = parse_experiment(simple("multi_variant", variants, bucket_seed=seed))
    assert_converges(shares(experiment), dict(zip(names, sizes, strict=True)))


@settings(max_examples=8, deadline=None)
@given(
    percents=st.lists(st.integers(0, 100), min_size=1, max_size=4),
    seed=texts.filter(bool),
)
def test_r2_shares_converge_to_their_capped_sizes(percents, seed):
    variants = {f"v{i}": percent for i, percent in enumerate(percents)}
    experiment = parse_experiment(simple("r2", variants, seed=seed, targeting={"x": [1]}))
    counts = Counter(experiment.variant(user_id=user, x=1) for user in MANY_USERS)
    cap = 100 / len(percents)
    for name, percent in variants.items():
        assert abs(counts[name] / len(MANY_USERS) - min(percent, cap) / 100) < TOLERANCE


@settings(max_examples=50, deadline=None)
@given(smaller=thousandths(), larger=thousandths(), users=st.lists(texts, max_size=50))
def test_growing_a_rollout_keeps_everyone_in_it(smaller, larger, users):
    smaller, larger = sorted((smaller, larger))
    before = parse_experiment(simple("feature_rollout", [{"name": "on", "size": smaller}]))
    after = parse_experiment(simple("feature_rollout", [{"name": "on", "size": larger}]))
    for user in users:
        if before.variant(user_id=user) == "on":
            assert after.variant(user_id=user) == "on"


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(-300, 600), min_size=3, max_size=6),
    bucket=st.integers(-10, 1010),
)
def test_multi_variant_set_is_first_whose_running_total_exceeds_the_bucket(sizes, bucket):
    """The spec's definition, for any sizes the validation lets through (even negative ones)."""
    assume(sum(sizes) <= 1000)
    variants = [{"name": f"v{i}", "size": size / 1000} for i, size in enumerate(sizes)]
    running = 0
    expected = None
    for variant in variants:
        running += int(variant["size"] * 1000)
        if bucket < running:
            expected = variant["name"]
            break
    assert MultiVariantSet(variants).choose_variant(bucket) == expected
