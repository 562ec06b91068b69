"""The simulation models of benchmarks/hitrate.py hold the property R5 measures."""

import random

from benchmarks.models import LRUCacheModel, StickyCacheModel


def simulate(model, n_items, epochs, seed):
    rng = random.Random(seed)
    rates = []
    for _ in range(epochs):
        order = list(range(n_items))
        rng.shuffle(order)
        hits = sum(model.access(str(i), 1) for i in order)
        rates.append(hits / n_items)
    return rates


def test_sticky_policy_reaches_the_bound_where_lru_thrashes():
    n, cap = 2000, 1000
    sticky = simulate(StickyCacheModel(cap), n, 4, seed=1)
    lru = simulate(LRUCacheModel(cap), n, 4, seed=1)
    bound = cap / n
    assert sticky[0] == 0.0
    assert all(abs(r - bound) < 0.05 for r in sticky[1:])
    assert all(r < 0.7 * bound for r in lru[1:])
