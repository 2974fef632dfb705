"""Every experiments vector: variants and bucketing events as the original gives them."""

from __future__ import annotations

import pytest

from baseplate.experiments import ExperimentsContextFactory
from tests import vectors
from tests.experiments.conftest import RecordingLogger, write_config

LOGGED_FIELDS = (
    "variant",
    "user_id",
    "logged_in",
    "cookie_created_timestamp",
    "app_name",
    "inputs",
)


@pytest.mark.parametrize("case", vectors.cases("experiments"))
def test_vector(case, config_path):
    write_config(config_path, case["config"])
    recorder = RecordingLogger()
    factory = ExperimentsContextFactory(str(config_path), event_logger=recorder)
    experiments = factory.make_object_for_context("experiments", None)

    for number, call in enumerate(case["calls"]):
        kwargs = dict(call["inputs"])
        if "bucketing_event_override" in call:
            kwargs["bucketing_event_override"] = call["bucketing_event_override"]
        before = len(recorder.events)

        variant = experiments.variant(call.get("name", case["name"]), **kwargs)

        assert variant == call["expected"], f"call {number}: {call}"
        logged = recorder.events[before:]
        if call["logged"] is None:
            assert logged == [], f"call {number}: {call}"
            continue
        assert len(logged) == 1, f"call {number}: {call}"
        (event,) = logged
        assert {field: event[field] for field in LOGGED_FIELDS} == {
            field: call["logged"][field] for field in LOGGED_FIELDS
        }
        assert event["event_type"].value == call["logged"]["event_type"]
        assert event["span"] is None
        assert event["experiment"].name == call.get("name", case["name"])


def test_vectors_cover_every_experiment_type():
    types = {
        config["type"].lower()
        for case in vectors.load("experiments")["cases"]
        for config in case["config"].values()
    }
    assert {
        "single_variant",
        "multi_variant",
        "feature_rollout",
        "range_variant",
        "r2",
        "feature_flag",
    } <= types
