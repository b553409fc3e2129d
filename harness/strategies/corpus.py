"""Corpora: `generate_specs` turns the `specs` strategy into a seeded list of distinct cases.

Hypothesis's own generation, seeded, generate phase only and without its
example database, so one Hypothesis version gives the same specs for the
same ``n`` and ``seed`` on every run and in every process. The load side
never calls it: generated specs travel as JSON.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any, Callable

from hypothesis.errors import InvalidArgument
from hypothesis.strategies import SearchStrategy

from harness.runtime.spec import Spec, walk_leaves
from harness.strategies.compose import specs

__all__ = ["generate_specs"]

def _model_key(data: dict[str, Any]) -> str:
    """Generated specs differ in their models: Hypothesis often mutates one
    example into the next, and a corpus of near-copies would test less."""
    return json.dumps(data["model"], sort_keys=True)


def _trivial(data: dict[str, Any]) -> bool:
    """The bare single-layer spec Hypothesis starts from: the curated cases cover it."""
    extras = ("tensors", "ties", "plant", "layout", "parametrize", "train", "state_dict_prefix", "checkpoint_extras")
    return len(list(walk_leaves(data["model"]))) == 1 and not any(data.get(k) for k in extras)


@contextlib.contextmanager
def _no_local_constants() -> Iterator[None]:
    """Keep Hypothesis from mixing the caller's source constants into its draws.

    Hypothesis (6.131 and later) sometimes draws a literal found in "local"
    modules, which is any module outside site-packages: harness itself when
    installed editable, but not from a wheel. A corpus would then change
    with harness's source, with how it is installed and with which modules
    happen to be imported. Empty that pool while a corpus is drawn, so the
    draws depend on the seed and the Hypothesis version alone. The pool is
    replaced whole, not filtered by module name, so it covers every module
    of this package (and the caller's) however they are laid out. These are
    Hypothesis internals: where they are missing there is nothing to undo,
    and the corpus determinism tests say whether that still holds.
    """
    try:
        from hypothesis.internal.conjecture import providers
        from hypothesis.internal.constants_ast import Constants
    except ImportError:  # pragma: no cover - another Hypothesis layout
        yield
        return
    original = getattr(providers, "_get_local_constants", None)
    cache = getattr(getattr(providers, "CONSTANTS_CACHE", None), "cache", None)
    if original is None:  # pragma: no cover - another Hypothesis layout
        yield
        return
    empty = Constants()
    providers._get_local_constants = lambda: empty
    if cache is not None:
        cache.clear()  # it holds each choice type's local constants
    try:
        yield
    finally:
        providers._get_local_constants = original
        if cache is not None:
            cache.clear()


def _collect(strategy: SearchStrategy[dict[str, Any]], seed: int, budget: int, keep: Callable[[dict[str, Any]], None]) -> None:
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings
    from hypothesis import seed as seed_decorator

    # Only the generate phase, no example database and a fixed seed: the
    # draws depend on nothing but the seed and the Hypothesis version.
    @settings(
        database=None, max_examples=budget, phases=(Phase.generate,), derandomize=False, deadline=None,
        suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet, print_blob=False,
        report_multiple_bugs=False,
    )
    @seed_decorator(seed)
    @given(strategy)
    def run(data: dict[str, Any]) -> None:
        keep(data)

    with _no_local_constants():
        run()


def generate_specs(n: int, seed: int, **options: Any) -> list[Spec]:
    """`n` distinct generated specs, the same for the same `n`, `seed` and Hypothesis version.

    Names are ``gen-<seed>-<index>``; `options` go to `specs`. Specs whose
    model repeats an earlier one, and the bare single-layer spec, are
    dropped, so the corpus is `n` different architectures.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        msg = f"n={n!r} must be an integer >= 0"
        raise InvalidArgument(msg)
    if not isinstance(seed, int) or isinstance(seed, bool):
        msg = f"seed={seed!r} must be an integer"
        raise InvalidArgument(msg)
    strategy = specs(**options)
    found: list[dict[str, Any]] = []
    seen: set[str] = set()

    def keep(data: dict[str, Any]) -> None:
        key = _model_key(data)
        if len(found) < n and key not in seen and not _trivial(data):
            seen.add(key)
            found.append(data)

    for attempt in range(16):
        if len(found) >= n:
            break
        # A later attempt (rare: only when most draws were duplicates) uses
        # a seed of its own, still a function of `seed` alone.
        _collect(strategy, seed if attempt == 0 else seed * 1_000_003 + attempt, 2 * (n - len(found)) + 10, keep)
    if len(found) < n:
        msg = f"could draw only {len(found)} distinct specs of the {n} asked for (options {options!r})"
        raise InvalidArgument(msg)
    out = []
    for i, data in enumerate(found):
        data = dict(data, name=f"gen-{seed}-{i}")
        out.append(Spec.from_dict(data))
    return out
