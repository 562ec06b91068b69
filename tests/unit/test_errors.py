"""The error tree and its one table of kinds: every kind a caller can meet has an HTTP status,
a gRPC code and an exit status, and the agent client raises the class the agent named."""

from __future__ import annotations

import inspect

import pytest
from shardcache import errors


def _tree() -> list[type[errors.CacheError]]:
    return [
        c
        for _, c in inspect.getmembers(errors, inspect.isclass)
        if issubclass(c, errors.CacheError)
    ]


def test_every_kind_of_the_tree_is_in_the_table():
    kinds = {c.kind for c in _tree()}
    assert kinds <= set(errors.CODES), kinds - set(errors.CODES)
    assert {"timeout", "mount", "opt_in", "already_exists"} <= kinds


def test_every_leaf_round_trips_through_its_kind():
    for cls in _tree():
        if cls is errors.CacheError or cls is errors.StalledError:
            continue  # the root, and a stall (reported as the unavailable store it is)
        assert errors.CLASSES[cls.kind] is cls


@pytest.mark.parametrize(
    ("kind", "http", "grpc", "exit"),
    [
        ("config", 400, "INVALID_ARGUMENT", 2),
        ("not_found", 404, "NOT_FOUND", 1),
        ("unavailable", 503, "UNAVAILABLE", 1),
        ("over_capacity", 507, "RESOURCE_EXHAUSTED", 1),
        ("error", 409, "INTERNAL", 1),
        ("timeout", 504, "DEADLINE_EXCEEDED", 1),
        ("no-such-kind", 500, "INTERNAL", 1),
    ],
)
def test_codes_of_a_kind(kind, http, grpc, exit):
    assert errors.codes_of(kind) == errors.Codes(http, grpc, exit)


def test_leaves_are_also_the_builtins_they_resemble():
    assert isinstance(errors.WaitTimeoutError("x"), TimeoutError)
    assert isinstance(errors.MountError(16, "busy"), OSError)
    assert errors.MountError(16, "busy").errno == 16
    assert isinstance(errors.OptInError("x"), ValueError)
    assert isinstance(errors.TargetConflictError("x"), FileExistsError)
    assert errors.kind_of(errors.StalledError("x")) == "unavailable"
    assert errors.kind_of(KeyError("x")) == "KeyError"
