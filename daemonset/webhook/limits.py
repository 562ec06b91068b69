"""How much the webhook takes in at once, derived from the memory it is allowed. Pure.

The API server sends a review per pod creation, and anything that can create pods can make it
send large ones; a webhook killed by its memory limit fails open for everyone (failurePolicy
Ignore), so the bounds below keep the worst case inside the limit:

* at most `max_in_flight` reviews are read and answered at once (an asyncio semaphore); the
  others wait on their connection, unread, for `queue_timeout_s` and are then answered 503
  (the API server then applies the failure policy: the pod is admitted unmutated);
* a body is read within `body_timeout_s`, so a slow sender cannot hold a slot for long;
* a body up to `parse_inline_bytes` is decoded and answered on the event loop (a few hundred
  microseconds); a larger one goes to a single worker thread, so the loop keeps serving
  health checks and small reviews, and only one large body is ever decoded at a time.

Memory at full concurrency is then at most::

    baseline + in_flight * inline * (1 + amplification)     small bodies decoded on the loop
             + in_flight * cap                              raw bodies held by their slots
             + amplification * cap                          the one large body being decoded

`amplification` is what `json.loads` allocates per byte of input in the worst case: measured
with tracemalloc over the densest shapes (`[{"":{}},...]` 33x, `[[[]],...]` 31x, `[{},...]`
25x; scalars 4-12x) and checked by a test, so 36 leaves a margin. With the Deployment's limit
of 256 MiB, a 64 MiB baseline (an idle webhook measured 38 MiB RSS; the rest is TLS buffers
and allocator slack under load), four slots and 64 KiB inline, the cap comes out at about
4.4 MiB: above the API server's own 3 MiB request limit, so no legitimate review is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class LoadBudget:
    """Bounds on concurrent work; `max_body_bytes` follows from them."""

    #: the container's memory limit (deploy/base/webhook.yaml)
    memory_limit_bytes: int = 256 * MIB
    #: the process before any review: interpreter, aiohttp, TLS, allocator slack
    baseline_bytes: int = 64 * MIB
    #: reviews read and answered at once; the API server retries nothing, so a few suffice
    #: to keep p99 low at 500 reviews/s (each takes well under a millisecond)
    max_in_flight: int = 4
    #: bodies up to this size are decoded on the event loop; a pod is typically 2-20 KiB
    parse_inline_bytes: int = 64 * 1024
    #: worst case bytes allocated by json.loads per byte of input (see the module docstring)
    amplification: int = 36
    #: a body must arrive within this; the API server sends it at once
    body_timeout_s: float = 5.0
    #: a review waits this long for a slot before it is answered 503 (the webhook's own
    #: timeout in the MutatingWebhookConfiguration is longer, so the answer still arrives)
    queue_timeout_s: float = 5.0


def max_body_bytes(budget: LoadBudget) -> int:
    """The largest body accepted, so that full concurrency fits in the memory limit."""
    inline = budget.max_in_flight * budget.parse_inline_bytes * (1 + budget.amplification)
    room = budget.memory_limit_bytes - budget.baseline_bytes - inline
    return max(0, room // (budget.max_in_flight + budget.amplification))


def peak_bytes(budget: LoadBudget, body_cap: int) -> int:
    """The memory bound of the docstring for a given cap (what the cap is derived from)."""
    inline = budget.max_in_flight * budget.parse_inline_bytes * (1 + budget.amplification)
    held = (budget.max_in_flight + budget.amplification) * body_cap
    return budget.baseline_bytes + inline + held


def parse_off_loop(size: int, budget: LoadBudget) -> bool:
    """Is a body of `size` bytes decoded by the worker thread rather than the event loop?"""
    return size > budget.parse_inline_bytes
