"""``Experiments.variant()`` calls per second on a file of 200 experiments, beside the original.

A worker process writes nothing and reads one experiments file of 200
experiments of every type (single, multi, rollout and range variant sets,
targeting trees and overrides, r2 experiments and feature flags), then times
the same sequence of ``variant()`` calls, each for a random experiment and
user, in two ways:

``request``
    a new :class:`~baseplate.experiments.Experiments` from the context
    factory every 10 calls, as a service's requests get one each: the cost
    of looking experiments up in a new request is included.
``hot``
    one object for every call: what a request that has already used each
    experiment pays for the next call.

The floor is a lookup of the same answers, precomputed, in a dict. The
worker uses only the documented API, so the same script runs against the
original Baseplate 0.30.9 installed in a venv of its own (``pip install
baseplate==0.30.9.post0 gevent thrift posix_ipc requests 'redis<3'
'sqlalchemy<1.4' pymemcache``), given with ``--original PYTHON``; both must
give the same answers, which the report checks. The implementations take
turns, round by round, and medians are reported.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._compare import Medians, command_line, interpreters, run_worker

WORKER = r"""
import hashlib, json, random, sys, time

from baseplate.experiments import ExperimentsContextFactory

path, calls, per_request = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])


class NullLogger:
    def log(self, **kwargs):
        pass


factory = ExperimentsContextFactory(path, event_logger=NullLogger())
with open(path) as f:
    names = sorted(json.load(f))
rng = random.Random(7)
countries = ["US", "DE", "FR", "GB", "IN"]
plan = [
    (
        rng.choice(names),
        {
            "user_id": "t2_%x" % rng.randrange(10**7),
            "logged_in": rng.random() < 0.8,
            "country": rng.choice(countries),
            "karma": rng.randrange(100),
        },
    )
    for _ in range(calls)
]


def per_request_run():
    answers = []
    experiments = None
    for i, (name, inputs) in enumerate(plan):
        if i % per_request == 0:
            experiments = factory.make_object_for_context("experiments", None)
        answers.append(experiments.variant(name, **inputs))
    return answers


def hot_run():
    experiments = factory.make_object_for_context("experiments", None)
    return [experiments.variant(name, **inputs) for name, inputs in plan]


def timed(run):
    run()  # warm up: the file is loaded and every experiment parsed once
    started = time.perf_counter()
    answers = run()
    return calls / (time.perf_counter() - started), answers


request_rate, answers = timed(per_request_run)
hot_rate, hot_answers = timed(hot_run)
assert hot_answers == answers

table = {(name, inputs["user_id"]): answer for (name, inputs), answer in zip(plan, answers)}
keys = [(name, inputs["user_id"]) for name, inputs in plan]


def floor_run():
    return [table[key] for key in keys]


floor_rate, _ = timed(floor_run)
digest = hashlib.sha1(json.dumps(answers).encode()).hexdigest()
print(json.dumps({
    "request": request_rate,
    "hot": hot_rate,
    "floor": floor_rate,
    "answers": digest,
    "variants": sum(answer is not None for answer in answers),
}))
"""

MODES = ("request", "hot")
PER_REQUEST = 10
FAR_FUTURE = 4102444800


def _variants(kind: str, index: int) -> Any:
    if kind == "single_variant":
        return [{"name": "treat", "size": 0.1 + index % 4 / 10}, {"name": "control", "size": 0.2}]
    if kind == "multi_variant":
        return [{"name": f"arm_{arm}", "size": 0.15} for arm in range(3 + index % 3)]
    if kind == "feature_rollout":
        return [{"name": "on", "size": index % 10 / 10}]
    return [
        {"name": "low", "range_start": 0.0, "range_end": 0.25},
        {"name": "high", "range_start": 0.6, "range_end": 0.9},
    ]


def _targeting(index: int) -> dict[str, Any] | None:
    if index % 3 == 0:
        return None
    if index % 3 == 1:
        return {"EQ": {"field": "logged_in", "value": True}}
    return {
        "ALL": [
            {"NOT": {"EQ": {"field": "country", "values": ["DE", "FR"]}}},
            {
                "ANY": [
                    {"GE": {"field": "karma", "value": 20}},
                    {"EQ": {"field": "is_mod", "value": True}},
                ]
            },
        ]
    }


def experiments_file(count: int = 200) -> dict[str, Any]:
    """A file of ``count`` experiments of every type, as the config fetcher would write it."""
    kinds = (
        ["single_variant"] * 6
        + ["multi_variant"] * 4
        + ["feature_rollout"] * 4
        + ["range_variant"] * 2
        + ["r2"] * 2
        + ["feature_flag"] * 2
    )
    experiments = {}
    for index in range(count):
        kind = kinds[index % len(kinds)]
        name = f"{kind}_{index}"
        config: dict[str, Any] = {
            "id": index + 1,
            "name": name,
            "owner": "bench",
            "type": kind,
            "version": "1",
            "start_ts": 0,
            "stop_ts": FAR_FUTURE,
        }
        if kind == "r2":
            config["experiment"] = {
                "variants": {"treat": 10, "control_1": 10, "control_2": 10},
                "targeting": {"logged_in": [True]},
            }
        elif kind == "feature_flag":
            config["experiment"] = {
                "variants": {"active": 5 * (index % 20)},
                "targeting": {"logged_in": [True, False]},
                "overrides": {"user_id": {"t2_1": "active"}},
            }
        else:
            experiment: dict[str, Any] = {
                "variants": _variants(kind, index),
                "experiment_version": 1,
                "shuffle_version": index % 3,
            }
            targeting = _targeting(index)
            if targeting is not None:
                experiment["targeting"] = targeting
            if index % 5 == 0:
                experiment["overrides"] = [
                    {"treat": {"EQ": {"field": "user_id", "values": ["t2_1", "t2_2"]}}}
                ]
            config["experiment"] = experiment
        experiments[name] = config
    return experiments


def main(quick: bool = False, original: str | None = None) -> None:
    """Print ``variant()`` calls per second per mode and implementation, and the floor."""
    calls, rounds = (20_000, 3) if quick else (100_000, 5)
    pythons = interpreters(original)
    rates = Medians()
    answers: dict[str, set[str]] = {}
    with tempfile.TemporaryDirectory() as directory:
        path = str(Path(directory) / "experiments.json")
        Path(path).write_text(json.dumps(experiments_file()))
        for _ in range(rounds):
            for name, python in pythons.items():
                result = run_worker(python, WORKER, path, str(calls), str(PER_REQUEST))
                for mode in (*MODES, "floor"):
                    rates.add(mode, name, result[mode])
                answers.setdefault(name, set()).add(result["answers"])

    print(f"Experiments.variant() on 200 experiments (median of {rounds} rounds x {calls} calls)")
    floor = rates.median("floor")
    print(f"{'mode':<9} {'implementation':<18} {'calls/s':>11} {'share of floor':>15}")
    print(f"{'floor':<9} {'dict lookup':<18} {floor:>11,.0f} {1:>15.1%}")
    for mode in MODES:
        for name in pythons:
            rate = rates.median(mode, name)
            print(f"{mode:<9} {name:<18} {rate:>11,.0f} {rate / floor:>15.1%}")
    if original:
        same = len(set().union(*answers.values())) == 1
        print(f"same answers from both implementations: {'yes' if same else 'NO'}")
        for mode in MODES:
            ratio = rates.against_original(mode)
            verdict = "met" if ratio >= 1 else "NOT met"
            print(f"{mode}: this project / original = {ratio:.2f}x (target >= 1x: {verdict})")


if __name__ == "__main__":
    command_line(main, __doc__.splitlines()[0], quick="calls")
