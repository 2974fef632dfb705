"""parse_experiment and the providers it picks."""

from __future__ import annotations

import logging
import time

import pytest

from baseplate.experiments.providers import ISO_DATE_FMT, parse_experiment
from baseplate.experiments.providers.base import Experiment
from baseplate.experiments.providers.feature_flag import FeatureFlag
from baseplate.experiments.providers.forced_variant import ForcedVariantExperiment
from baseplate.experiments.providers.r2 import R2Experiment
from baseplate.experiments.providers.simple_experiment import (
    SimpleExperiment,
    _generate_overrides,
    _generate_targeting,
)
from baseplate.experiments.targeting.base import Targeting
from baseplate.experiments.targeting.tree_targeting import EqualNode, OverrideNode
from baseplate.experiments.variant_sets.multi_variant_set import MultiVariantSet
from baseplate.experiments.variant_sets.range_variant_set import RangeVariantSet
from baseplate.experiments.variant_sets.rollout_variant_set import RolloutVariantSet
from baseplate.experiments.variant_sets.single_variant_set import SingleVariantSet
from tests.experiments.conftest import FAR_FUTURE, simple_config

USERS = [f"t2_{i}" for i in range(2000)]

SIMPLE_TYPES = {
    "single_variant": (
        SingleVariantSet,
        [{"name": "a", "size": 0.3}, {"name": "b", "size": 0.3}],
    ),
    "multi_variant": (
        MultiVariantSet,
        [{"name": "a", "size": 0.2}, {"name": "b", "size": 0.2}, {"name": "c", "size": 0.2}],
    ),
    "feature_rollout": (RolloutVariantSet, [{"name": "a", "size": 0.3}]),
    "range_variant": (RangeVariantSet, [{"name": "a", "range_start": 0.1, "range_end": 0.4}]),
}


def r2(variants, exp_type="r2", **experiment):
    return {
        "id": 1,
        "name": "r2_test",
        "owner": "tests",
        "type": exp_type,
        "version": "1",
        "start_ts": 0,
        "stop_ts": FAR_FUTURE,
        "experiment": {"variants": variants, **experiment},
    }


def typed(exp_type, **experiment):
    _, variants = SIMPLE_TYPES[exp_type]
    return simple_config(
        "typed",
        type=exp_type.upper(),
        experiment={"variants": variants, "experiment_version": 1, **experiment},
    )


@pytest.mark.parametrize("exp_type", sorted(SIMPLE_TYPES))
def test_simple_types(exp_type):
    experiment = parse_experiment(typed(exp_type))
    assert isinstance(experiment, SimpleExperiment)
    assert isinstance(experiment.variant_set, SIMPLE_TYPES[exp_type][0])
    assert experiment.should_log_bucketing()
    assert experiment.version == 1
    assert experiment.num_buckets == 1000


def test_legacy_types():
    assert type(parse_experiment(r2({"a": 10}))) is R2Experiment
    flag = parse_experiment(r2({"active": 10}, exp_type="Feature_Flag"))
    assert type(flag) is FeatureFlag
    assert not flag.should_log_bucketing()
    assert flag.get_unique_id(user_id="t2_a") == "r2_test:user_id:t2_a"


def test_unknown_type_never_gives_a_variant(caplog):
    experiment = parse_experiment(simple_config("odd", type="quantum"))
    assert isinstance(experiment, ForcedVariantExperiment)
    assert experiment.variant(user_id="t2_a") is None
    assert not experiment.should_log_bucketing()
    assert "unknown experiment type <quantum>" in caplog.text


def test_global_override():
    assert parse_experiment(simple_config("g", global_override="b")).variant() == "b"
    assert parse_experiment(simple_config("g", global_override=None)).variant(user_id="x") is None
    stopped = simple_config("g", stop_ts=1000, global_override="b")
    assert parse_experiment(stopped).variant() == "b"
    # A legacy experiment that is disabled is None before its override counts.
    assert (
        parse_experiment(r2({"a": 10}) | {"enabled": False, "global_override": "a"}).variant()
        is None
    )
    missing = simple_config("g", global_override="b")
    del missing["experiment"]
    with pytest.raises(KeyError):
        parse_experiment(missing)


def test_integer_ids_and_times_are_required():
    with pytest.raises(TypeError):
        parse_experiment(simple_config("x", id="1"))
    config = simple_config("x")
    del config["start_ts"]
    with pytest.raises(ValueError, match="start_ts"):
        parse_experiment(config)


def test_missing_version_is_deprecated():
    config = r2({"a": 10})
    del config["version"]
    with pytest.warns(DeprecationWarning, match="version"):
        experiment = parse_experiment(config)
    assert isinstance(experiment, R2Experiment)
    assert experiment.version is None


def test_expires_is_deprecated_but_understood():
    config = simple_config("old", global_override=None)
    del config["global_override"]
    del config["start_ts"]
    del config["stop_ts"]
    tomorrow = time.strftime(ISO_DATE_FMT, time.gmtime(time.time() + 2 * 86400))
    with pytest.warns(DeprecationWarning, match="expires"):
        experiment = parse_experiment(config | {"expires": tomorrow})
    assert experiment.variant(user_id="t2_a") in ("treat", "control")
    with pytest.warns(DeprecationWarning, match="expires"):
        expired = parse_experiment(config | {"expires": "2001-01-01"})
    assert expired.variant(user_id="t2_a") is None
    # start_ts and stop_ts win over expires, without a warning.
    assert isinstance(parse_experiment(simple_config("x", expires="2001-01-01")), SimpleExperiment)


def test_simple_seeds():
    assert parse_experiment(typed("single_variant", shuffle_version=3)).seed == "1.typed.3"
    assert parse_experiment(typed("single_variant")).seed == "1.typed.None"
    seeded = parse_experiment(typed("single_variant", bucket_seed="custom"))
    assert seeded.seed == "custom"


def test_simple_bucket_value_and_unique_id():
    experiment = parse_experiment(typed("feature_rollout", bucket_val="device_id"))
    assert experiment.variant(user_id="t2_a") is None
    answers = {experiment.variant(DEVICE_ID=f"d{i}") for i in range(100)}
    assert answers == {"a", None}
    assert experiment.variant(device_id=None) is None
    assert experiment.get_unique_id(device_id="d1") == "typed:device_id:d1"
    assert experiment.get_unique_id(DEVICE_ID="d1") is None
    assert experiment.get_unique_id(device_id="") is None


def test_simple_overrides_and_targeting():
    overrides = [
        {"a": {"EQ": {"field": "user_id", "value": "t2_forced"}}},
        {"": {"EQ": {"field": "user_id", "value": "t2_empty"}}},
    ]
    experiment = parse_experiment(
        typed(
            "feature_rollout",
            overrides=overrides,
            targeting={"EQ": {"field": "beta", "value": True}},
        )
    )
    assert experiment.get_override(user_id="t2_forced") == "a"
    assert experiment.variant(user_id="t2_forced") == "a"
    assert experiment.is_targeted(beta=True)
    assert not experiment.is_targeted()
    # An override naming a falsy variant is passed over for targeting.
    assert experiment.get_override(user_id="t2_empty") == ""
    assert experiment.variant(user_id="t2_empty") is None
    targeted = {experiment.variant(user_id=u, beta=True) for u in USERS}
    assert targeted == {"a", None}
    assert {experiment.variant(user_id=u) for u in USERS} == {None}


def test_generate_overrides_and_targeting():
    assert _generate_overrides(None) is None
    assert _generate_overrides({"a": {"OVERRIDE": True}}) is None
    overrides = _generate_overrides(
        ["not an object", {"a": {"EQ": {"field": "x", "value": 1}}}, {"b": {"BOGUS": 1}}]
    )
    assert [list(entry) for entry in overrides] == [["a"], ["b"]]
    assert isinstance(overrides[0]["a"], EqualNode)
    assert isinstance(overrides[1]["b"], OverrideNode)
    assert not overrides[1]["b"].evaluate(x=1)
    assert _generate_targeting(None).evaluate()
    assert not _generate_targeting({"BOGUS": 1}).evaluate()


def test_a_targeting_of_ones_own():
    class OddUsers(Targeting):
        def evaluate(self, **kwargs):
            return int(kwargs["user_id"][3:]) % 2 == 1

    experiment = SimpleExperiment(
        id=1,
        name="own",
        owner="tests",
        start_ts=0,
        stop_ts=FAR_FUTURE,
        config={},
        experiment_version=1,
        shuffle_version=0,
        variant_set=RolloutVariantSet([{"name": "on", "size": 1.0}]),
        bucket_seed=None,
        bucket_val="user_id",
        targeting=OddUsers(),
        overrides=None,
    )
    assert [experiment.variant(user_id=f"t2_{i}") for i in range(4)] == [None, "on", None, "on"]


def test_simple_experiment_needs_a_version_and_buckets():
    with pytest.raises(ValueError, match="version"):
        parse_experiment(typed("feature_rollout", experiment_version=0))
    with pytest.raises(ValueError, match="num_buckets"):
        parse_experiment(typed("feature_rollout", num_buckets=-5))


def test_simple_disabled():
    experiment = parse_experiment(typed("feature_rollout") | {"enabled": False})
    assert {experiment.variant(user_id=u) for u in USERS[:100]} == {None}


# -- r2 and feature flags ------------------------------------------------------


def test_r2_interleaves_variants():
    """Bucket b goes to the (b mod n)-th variant by name if below its limit."""
    experiment = parse_experiment(
        r2({"larger": 5, "smaller": 10, "control": 10}, targeting={"logged_in": [True]})
    )
    names = ["control", "larger", "smaller"]
    limits = {"control": 300, "larger": 150, "smaller": 300}
    for bucket in range(1000):
        candidate = names[bucket % 3]
        expected = candidate if bucket < limits[candidate] else None
        assert experiment._choose_variant(bucket) == expected


def test_r2_caps_are_warned_of_when_parsed(caplog):
    experiment = parse_experiment(r2({"big": 60, "small": 10}, targeting={"logged_in": [True]}))
    for user in USERS[:200]:
        experiment.variant(user_id=user, logged_in=True)
    assert caplog.text.count("exceeds allowable percentage") == 1


def test_r2_without_targeting_only_overrides():
    experiment = parse_experiment(r2({"a": 50}, overrides={"user_name": {"Gary": "a"}}))
    assert {experiment.variant(user_id=u, logged_in=True) for u in USERS[:200]} == {None}
    assert experiment.variant(user_name="GARY") == "a"
    assert experiment.variant() is None


def test_r2_overrides():
    experiment = parse_experiment(
        r2(
            {"a": 1, "b": 1},
            overrides={
                "url_features": {"Test_A": "a", "test_b": "b", "test_none": "c"},
                "logged_in": {True: "b"},
            },
        )
    )
    assert experiment.variant(url_features=["nope", "TEST_A"]) == "a"
    assert experiment.variant(url_features=("test_b",)) == "b"
    assert experiment.variant(URL_Features="test_a") == "a"
    # An override naming no variant is ignored, and ends the search.
    assert experiment.variant(url_features="test_none", logged_in=True) is None
    assert experiment.variant(logged_in=True) == "b"


def test_r2_newer_than_applies_to_logged_in_targeting():
    experiment = parse_experiment(
        r2({"active": 100}, newer_than=1000, targeting={"logged_in": [True], "beta": [True]})
    )
    assert experiment.variant(user_id="t2_a", logged_in=True, user_created=1001) == "active"
    assert experiment.variant(user_id="t2_a", logged_in=True, user_created=999) is None
    assert experiment.variant(user_id="t2_a", logged_in=True) is None
    # Other targeting still matches whatever the account's age.
    assert experiment.variant(user_id="t2_a", logged_in=True, beta=True) == "active"


def test_r2_case_sensitive_parameters():
    experiment = parse_experiment(
        r2(
            {"active": 100},
            targeting={"__case_sensitive__": ["Country"], "COUNTRY": ["US"], "page": ["Front"]},
        )
    )
    assert experiment.variant(user_id="t2_a", country="US") == "active"
    assert experiment.variant(user_id="t2_a", country="us") is None
    assert experiment.variant(user_id="t2_a", PAGE="FRONT") == "active"


def test_r2_seed_and_bucket_value():
    seeded = parse_experiment(
        r2({"active": 50}, seed="s", bucket_val="post_id", targeting={"logged_in": [True]})
    )
    assert seeded.seed == "s"
    assert parse_experiment(r2({"active": 50})).seed == "r2_test"
    answers = {seeded.variant(post_id=f"t3_{i}", logged_in=True) for i in range(50)}
    assert answers == {"active", None}
    assert seeded.variant(user_id="t2_a", logged_in=True) is None
    assert seeded.get_unique_id(post_id="t3_1") == "r2_test:post_id:t3_1"


def test_r2_with_no_variants_gives_none():
    experiment = parse_experiment(r2({}, targeting={"logged_in": [True]}))
    assert experiment.variant(user_id="t2_a", logged_in=True) is None


@pytest.mark.parametrize(
    "config",
    [
        r2({"a": "10"}),
        r2({"a": 10}, targeting={"logged_in": True}),
        r2({"a": 10}, overrides={"user_id": ["t2_a"]}),
        r2({"active": 10, "other": 10}, exp_type="feature_flag"),
    ],
)
def test_invalid_r2_configs(config):
    with pytest.raises((TypeError, ValueError)):
        parse_experiment(config)


def test_disabled_r2_is_forced_none():
    for config in (r2({"a": 50}) | {"enabled": False}, r2({"a": 50}) | {"stop_ts": 10}):
        experiment = parse_experiment(config)
        assert isinstance(experiment, ForcedVariantExperiment)
        assert experiment.variant(user_id="t2_a", logged_in=True) is None


def test_the_experiment_interface():
    class Unfinished(Experiment):
        def should_log_bucketing(self):
            return True

    with pytest.raises(NotImplementedError):
        Unfinished().get_unique_id(user_id="t2_a")
    with pytest.raises(NotImplementedError):
        Unfinished().variant()
    assert ForcedVariantExperiment("x").get_unique_id(user_id="t2_a") is None


def test_parse_failures_are_not_logged_by_the_parser(caplog):
    with caplog.at_level(logging.DEBUG), pytest.raises(ValueError):
        parse_experiment(typed("single_variant") | {"experiment": {"variants": []}})
    assert "Invalid configuration" not in caplog.text
