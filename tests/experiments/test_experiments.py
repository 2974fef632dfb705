"""The experiments client: the file, the request's user, bucketing events, and failures."""

from __future__ import annotations

import json
import logging
import threading
import time
import types

import jwt
import pytest

from baseplate import Baseplate
from baseplate.core import EdgeRequestContextFactory
from baseplate.experiments import (
    EventType,
    Experiments,
    ExperimentsContextFactory,
    experiments_client_from_config,
)
from baseplate.file_watcher import FileWatcher, WatchedFileNotAvailableError
from baseplate.secrets import SecretsStore
from tests import vectors
from tests.experiments.conftest import FAR_FUTURE, RecordingLogger, simple_config, write_config

EDGE = vectors.load("edge")


def r2_config(name, exp_id=1, **experiment):
    return {
        "id": exp_id,
        "name": name,
        "owner": "tests",
        "type": "r2",
        "version": "1",
        "start_ts": 0,
        "stop_ts": FAR_FUTURE,
        "experiment": experiment,
    }


def rollout_config(name, size, exp_id=1, **experiment):
    config = simple_config(name, exp_id, type="feature_rollout")
    config["experiment"] = {
        "variants": [{"name": "on", "size": size}],
        "experiment_version": 1,
        "shuffle_version": 0,
        **experiment,
    }
    return config


def request(factory):
    return factory.make_object_for_context("experiments", None)


def messages(caplog, text):
    return [record for record in caplog.records if text in record.getMessage()]


# -- the request's user, from a real edge context ---------------------------------


@pytest.fixture
def edge_factory(tmp_path):
    path = tmp_path / "secrets.json"
    secret = {"type": "versioned", **EDGE["keys"]}
    path.write_text(json.dumps({"secrets": {"secret/authentication/public-key": secret}}))
    return EdgeRequestContextFactory(SecretsStore(str(path)))


def edge_user(edge_factory, **claims):
    """The user of an edge context that went through its header, as a downstream service sees it."""
    token = None
    if claims:
        key = EDGE["test_private_keys"]["current"]
        token = jwt.encode({"exp": FAR_FUTURE, **claims}, key, algorithm="RS256")
    sent = edge_factory.new(authentication_token=token, loid_id="t2_loid", loid_created_ms=1234)
    return edge_factory.from_upstream(sent.header).user


def test_logged_in_user_buckets_and_logs_as_its_fields(
    factory, config_path, recorder, edge_factory
):
    write_config(config_path, {"exp": simple_config("exp")})
    user = edge_user(edge_factory, sub="t2_edgeuser", roles=["admin"])
    expected = request(factory).variant("exp", user_id="t2_edgeuser", logged_in=True)
    assert expected is not None
    recorder.events.clear()

    assert request(factory).variant("exp", user=user, app_name="ios") == expected

    (event,) = recorder.events
    assert event["user_id"] == "t2_edgeuser"
    assert event["logged_in"] is True
    assert event["cookie_created_timestamp"] == 1234
    assert event["app_name"] == "ios"
    # The event's inputs are the kwargs and the user's event fields.
    assert event["inputs"] == {
        "app_name": "ios",
        "user_id": "t2_edgeuser",
        "logged_in": True,
        "cookie_created_timestamp": 1234,
    }


def test_logged_out_user_buckets_by_loid(factory, config_path, recorder, edge_factory):
    write_config(config_path, {"exp": simple_config("exp")})
    user = edge_user(edge_factory)  # no token: logged out
    expected = request(factory).variant("exp", user_id="t2_loid", logged_in=False)
    recorder.events.clear()

    assert request(factory).variant("exp", user=user) == expected
    assert [(e["user_id"], e["logged_in"]) for e in recorder.events] == (
        [("t2_loid", False)] if expected else []
    )


def test_user_fields_win_over_kwargs(factory, config_path, recorder, edge_factory):
    write_config(config_path, {"exp": simple_config("exp")})
    user = edge_user(edge_factory, sub="t2_edgeuser")
    experiments = request(factory)
    assert experiments.variant("exp", user=user, user_id="t2_other") == request(factory).variant(
        "exp", user_id="t2_edgeuser"
    )


def test_user_roles_reach_targeting(factory, config_path, edge_factory):
    write_config(
        config_path,
        {
            "admins_only": r2_config(
                "admins_only", variants={"active": 100}, targeting={"user_roles": ["admin"]}
            )
        },
    )
    admin = edge_user(edge_factory, sub="t2_admin", roles=["employee", "admin"])
    member = edge_user(edge_factory, sub="t2_member", roles=["employee"])
    anonymous = edge_user(edge_factory)

    assert request(factory).variant("admins_only", user=admin) == "active"
    assert request(factory).variant("admins_only", user=member) is None
    assert request(factory).variant("admins_only", user=anonymous) is None


# -- the file ----------------------------------------------------------------------


def test_a_changed_file_is_read_by_the_next_request(factory, config_path):
    write_config(config_path, {"rollout": rollout_config("rollout", 0.0)})
    before = request(factory)
    assert before.variant("rollout", user_id="t2_a") is None

    write_config(config_path, {"rollout": rollout_config("rollout", 1.0)})
    assert request(factory).variant("rollout", user_id="t2_a") == "on"
    # A request keeps the version it started with.
    assert before.variant("rollout", user_id="t2_b") is None


def test_a_request_reads_the_file_once(factory, config_path, monkeypatch):
    write_config(config_path, {f"e{i}": simple_config(f"e{i}", i) for i in range(3)})
    calls = []
    real = FileWatcher.get_data

    def counting(self):
        calls.append(self)
        return real(self)

    monkeypatch.setattr(FileWatcher, "get_data", counting)
    experiments = request(factory)
    for i in range(3):
        experiments.variant(f"e{i}", user_id="t2_a")
        experiments.is_valid_experiment(f"e{i}")
    assert len(calls) == 1


def test_requests_share_the_parsed_experiment_until_the_file_changes(
    factory, config_path, recorder
):
    write_config(config_path, {"exp": simple_config("exp")})
    request(factory).expose("exp", "treat", user_id="t2_a")
    request(factory).expose("exp", "treat", user_id="t2_a")
    write_config(config_path, {"exp": simple_config("exp", 2)})
    request(factory).expose("exp", "treat", user_id="t2_a")

    first, second, third = (event["experiment"] for event in recorder.events)
    assert first is second
    assert third is not first
    assert third.id == 2


def test_a_broken_file_after_a_good_one_keeps_the_good_one(factory, config_path, caplog):
    write_config(config_path, {"rollout": rollout_config("rollout", 1.0)})
    assert request(factory).variant("rollout", user_id="t2_a") == "on"
    config_path.write_text("{not json")
    assert request(factory).variant("rollout", user_id="t2_a") == "on"


def test_an_unavailable_file_gives_no_experiments(tmp_path, recorder, caplog):
    factory = ExperimentsContextFactory(str(tmp_path / "missing.json"), event_logger=recorder)
    with caplog.at_level(logging.DEBUG, logger="baseplate.experiments"):
        for _ in range(3):
            experiments = request(factory)
            assert experiments.variant("exp", user_id="t2_a") is None
            assert not experiments.is_valid_experiment("exp")
            assert experiments.get_all_experiment_names() == []
    assert recorder.events == []
    unavailable = messages(caplog, "Experiment config unavailable")
    assert [record.levelno for record in unavailable] == [logging.WARNING] + [logging.DEBUG] * 2


def test_a_file_that_is_not_an_object_gives_no_experiments(factory, config_path, caplog):
    write_config(config_path, [simple_config("exp")])
    assert request(factory).variant("exp", user_id="t2_a") is None
    assert request(factory).get_all_experiment_names() == []
    assert len(messages(caplog, "expected a JSON object")) == 1


# -- bad experiments -----------------------------------------------------------


BAD_CONFIGS = {
    "string_id": simple_config("string_id", id="7"),
    "no_times": {k: v for k, v in simple_config("no_times").items() if k != "stop_ts"},
    "no_experiment": {k: v for k, v in simple_config("no_times").items() if k != "experiment"},
    "too_big": simple_config(
        "too_big",
        experiment={
            "variants": [{"name": "a", "size": 0.7}, {"name": "b", "size": 0.7}],
            "experiment_version": 1,
        },
    ),
    "size_is_text": simple_config(
        "size_is_text",
        experiment={
            "variants": [{"name": "a", "size": "0.5"}, {"name": "b", "size": 0.1}],
            "experiment_version": 1,
        },
    ),
    "zero_buckets": simple_config(
        "zero_buckets",
        experiment={
            "variants": [{"name": "a", "size": 0.5}, {"name": "b", "size": 0.5}],
            "experiment_version": 1,
            "num_buckets": 0,
        },
    ),
    "not_an_object": "single_variant",
    "r2_targeting_not_a_list": r2_config("r2_bad", variants={"a": 10}, targeting={"x": "y"}),
}


def test_a_bad_experiment_is_invalid_alone_and_logged_once(factory, config_path, caplog):
    good = {f"good{i}": simple_config(f"good{i}", i) for i in range(3)}
    write_config(config_path, {**good, **BAD_CONFIGS})
    expected = {name: request(factory).variant(name, user_id="t2_a") for name in good}

    for _ in range(3):
        experiments = request(factory)
        for name in BAD_CONFIGS:
            assert experiments.variant(name, user_id="t2_a") is None, name
            assert not experiments.is_valid_experiment(name)
        assert {name: experiments.variant(name, user_id="t2_a") for name in good} == expected
        assert sorted(experiments.get_all_experiment_names()) == sorted(good)

    invalid = messages(caplog, "Invalid configuration for experiment")
    assert sorted(record.args[0] for record in invalid) == sorted(BAD_CONFIGS)


def test_a_missing_experiment_is_logged_once_per_version(factory, config_path, caplog):
    write_config(config_path, {"exp": simple_config("exp")})
    for _ in range(3):
        assert request(factory).variant("nope", user_id="t2_a") is None
    assert len(messages(caplog, "not found in experiment config")) == 1


def test_an_experiment_that_fails_while_choosing_gives_none(factory, config_path, caplog):
    overrides = {"user_name": {"gary": "a"}}
    write_config(config_path, {"r2": r2_config("r2", variants={"a": 50}, overrides=overrides)})
    caplog.set_level(logging.DEBUG, logger="baseplate.experiments")
    experiments = request(factory)
    # An unhashable input cannot be looked up among the override values.
    assert experiments.variant("r2", user_id="t2_a", user_name=[{"not": "hashable"}]) is None
    assert experiments.variant("r2", user_id="t2_a", user_name=[{"not": "hashable"}]) is None
    assert experiments.variant("r2", user_id="t2_a", user_name="GARY") == "a"
    failures = messages(caplog, "Experiment r2 failed to choose a variant")
    assert [record.levelno for record in failures] == [logging.ERROR, logging.DEBUG]
    assert failures[0].exc_info is not None


def test_an_event_logger_that_fails_does_not_fail_the_request(config_path, caplog):
    class Failing(RecordingLogger):
        def log(self, **kwargs):
            super().log(**kwargs)
            raise OSError("queue full")

    failing = Failing()
    write_config(config_path, {"rollout": rollout_config("rollout", 1.0)})
    experiments = request(ExperimentsContextFactory(str(config_path), event_logger=failing))
    assert experiments.variant("rollout", user_id="t2_a") == "on"
    # Not marked as logged: the next call tries again.
    assert experiments.variant("rollout", user_id="t2_a") == "on"
    assert len(failing.events) == 2
    # Logged once as a warning; the ones after it are counted.
    assert len(messages(caplog, "could not be logged")) == 1


# -- bucketing events ----------------------------------------------------------


def test_bucketing_events_once_per_unique_id_per_request(factory, config_path, recorder):
    write_config(config_path, {"rollout": rollout_config("rollout", 1.0)})
    first = request(factory)
    first.variant("rollout", user_id="t2_a")
    first.variant("rollout", user_id="t2_a", bucketing_event_override=True)
    first.variant("rollout", user_id="t2_b")
    second = request(factory)
    second.variant("rollout", user_id="t2_a")

    assert [event["user_id"] for event in recorder.events] == ["t2_a", "t2_b", "t2_a"]
    assert all(event["event_type"] is EventType.BUCKET for event in recorder.events)


def test_override_false_logs_nothing_and_does_not_count(factory, config_path, recorder):
    write_config(config_path, {"rollout": rollout_config("rollout", 1.0)})
    experiments = request(factory)
    assert experiments.variant("rollout", user_id="t2_a", bucketing_event_override=False) == "on"
    assert recorder.events == []
    experiments.variant("rollout", user_id="t2_a")
    assert len(recorder.events) == 1


@pytest.mark.parametrize(
    "config",
    [
        simple_config("quiet", enabled=False),
        simple_config("quiet", global_override="treat"),
        simple_config("quiet", start_ts=FAR_FUTURE - 1),
        rollout_config("quiet", 1.0, log_bucketing=False),
        r2_config("quiet", variants={"active": 100}, targeting={"logged_in": [True]})
        | {"type": "feature_flag"},
    ],
    ids=["disabled", "global_override", "not_started", "log_bucketing_false", "feature_flag"],
)
def test_experiments_that_do_not_log(factory, config_path, recorder, config):
    write_config(config_path, {"quiet": config})
    experiments = request(factory)
    for user in ("t2_a", "t2_b", "t2_c", "t2_d"):
        experiments.variant("quiet", user_id=user, logged_in=True)
    assert recorder.events == []


def test_no_event_without_the_bucketing_value_under_its_exact_name(factory, config_path, recorder):
    overrides = [{"forced": {"EQ": {"field": "device", "value": "d1"}}}]
    write_config(
        config_path,
        {"rollout": rollout_config("rollout", 1.0, bucket_val="device", overrides=overrides)},
    )
    experiments = request(factory)
    assert experiments.variant("rollout", device="d1") == "forced"
    # The bucketing value is found in any case, the unique id only in its own.
    assert experiments.variant("rollout", DEVICE="d2") == "on"
    assert [event["variant"] for event in recorder.events] == ["forced"]


def test_expose_logs_an_exposure_event(factory, config_path, recorder, edge_factory):
    write_config(config_path, {"exp": simple_config("exp")})
    user = edge_user(edge_factory, sub="t2_x")
    experiments = request(factory)
    experiments.expose("exp", "treat", user=user, app_name="web")
    experiments.expose("exp", "treat", user=user, app_name="web")
    experiments.expose("missing", "treat", user=user)

    assert len(recorder.events) == 2
    event = recorder.events[0]
    assert event["event_type"] is EventType.EXPOSE
    assert event["variant"] == "treat"
    assert (event["user_id"], event["logged_in"], event["app_name"]) == ("t2_x", True, "web")
    assert event["experiment"].name == "exp"


def test_events_carry_the_request_span(config_path, recorder):
    write_config(config_path, {"rollout": rollout_config("rollout", 1.0)})
    baseplate = Baseplate()
    baseplate.add_to_context(
        "experiments", ExperimentsContextFactory(str(config_path), event_logger=recorder)
    )
    context = types.SimpleNamespace()
    span = baseplate.make_server_span(context, "request")
    with span:
        assert context.experiments.variant("rollout", user_id="t2_a") == "on"
    (event,) = recorder.events
    assert event["span"] is span


def test_without_an_event_logger_events_are_debug_lines(config_path, caplog):
    write_config(config_path, {"rollout": rollout_config("rollout", 1.0)})
    experiments = request(ExperimentsContextFactory(str(config_path)))
    with caplog.at_level(logging.DEBUG, logger="baseplate.events"):
        assert experiments.variant("rollout", user_id="t2_a") == "on"
    assert len(messages(caplog, "Would send event")) == 1


# -- the time window -------------------------------------------------------------


def test_experiments_start_and_stop_while_the_file_stays(factory, config_path, clock):
    clock.now = 1000.0
    write_config(
        config_path,
        {
            "r2": r2_config("r2", variants={"active": 100}, targeting={"logged_in": [True]})
            | {"type": "feature_flag", "start_ts": 2000, "stop_ts": 3000},
            "simple": rollout_config("simple", 1.0) | {"start_ts": 2000, "stop_ts": 3000},
        },
    )
    answers = []
    for now in (1000.0, 2000.0, 2999.0, 3000.0, 3000.5, 1500.0):
        clock.now = now
        experiments = request(factory)
        answers.append(
            (
                experiments.variant("r2", user_id="t2_a", logged_in=True),
                experiments.variant("simple", user_id="t2_a"),
            )
        )
    assert answers == [
        (None, None),
        ("active", "on"),
        ("active", "on"),
        # The simple experiment's own check stops at stop_ts; the parse keeps
        # it enabled through stop_ts.
        ("active", None),
        (None, None),
        (None, None),
    ]


# -- making the client -------------------------------------------------------------


def test_client_from_config(config_path, recorder):
    write_config(config_path, {"rollout": rollout_config("rollout", 1.0)})
    factory = experiments_client_from_config({"experiments.path": str(config_path)}, recorder)
    assert isinstance(factory, ExperimentsContextFactory)
    experiments = factory.make_object_for_context("experiments", None)
    assert isinstance(experiments, Experiments)
    assert experiments.variant("rollout", user_id="t2_a") == "on"


def test_client_from_config_defaults_to_the_fetchers_path(recorder):
    factory = experiments_client_from_config({}, recorder)
    assert factory._filewatcher.path == "/var/local/experiments.json"


def test_client_from_config_with_a_prefix_and_timeout(tmp_path, recorder):
    path = tmp_path / "other.json"
    write_config(path, {"rollout": rollout_config("rollout", 1.0)})
    factory = experiments_client_from_config(
        {"r2_experiments.path": str(path), "r2_experiments.timeout": "1 second"},
        recorder,
        prefix="r2_experiments.",
    )
    assert request(factory).variant("rollout", user_id="t2_a") == "on"

    with pytest.raises(WatchedFileNotAvailableError):
        experiments_client_from_config(
            {"experiments.path": str(tmp_path / "missing"), "experiments.timeout": "1 millisecond"},
            recorder,
        )
    with pytest.raises(ValueError, match="prefix"):
        experiments_client_from_config({}, recorder, prefix="experiments")


def test_experiments_made_directly_over_any_watcher(config_path, recorder):
    write_config(config_path, {"rollout": rollout_config("rollout", 1.0)})
    watcher = FileWatcher(str(config_path), json.load)
    experiments = Experiments(watcher, None, "experiments", event_logger=recorder)
    assert experiments.get_all_experiment_names() == ["rollout"]
    assert experiments.variant("rollout", user_id="t2_a") == "on"
    assert len(recorder.events) == 1


# -- concurrency -------------------------------------------------------------------


def test_concurrent_requests_each_see_one_version(factory, config_path):
    """Threads share the factory's parsed experiments while the file keeps changing."""
    names = [f"e{i}" for i in range(20)]
    versions = [
        {name: rollout_config(name, size, i) for i, name in enumerate(names)} for size in (0.0, 1.0)
    ]
    write_config(config_path, versions[0])
    answers = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            experiments = request(factory)
            answers.append({experiments.variant(name, user_id="t2_a") for name in names})

    threads = [threading.Thread(target=serve) for _ in range(2)]
    for thread in threads:
        thread.start()
    for flip in range(20):
        write_config(config_path, versions[flip % 2])
        time.sleep(0.005)
    stop.set()
    for thread in threads:
        thread.join()

    assert answers
    # Every request answered from one version of the file: all on or all off.
    assert {frozenset(answer) for answer in answers} <= {frozenset({None}), frozenset({"on"})}
