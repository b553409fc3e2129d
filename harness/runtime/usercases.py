"""User cases: ``--user-case MODULE:FUNCTION`` turns a user's model factory into a case.

People test *their* model across envs: their own classes, or a library's
(a Hugging Face model from a small config with seeded weights). The factory
returns an ``nn.Module``, or a ``(module, example_inputs)`` pair; with inputs,
the forward check and tracing use them, without them those are skips with
the reason. The spec that travels between envs holds only the reference and
a seed: every env calls the factory itself, so the factory must be
importable in every env of the matrix (a result says so where it is not).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from harness.runtime.errors import InputError, SpecError
from harness.runtime.spec import Spec

__all__ = ["user_specs"]

_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def _name(ref: str) -> str:
    return "user-" + re.sub(r"[^A-Za-z0-9_.-]", "-", ref.replace(":", "."))


def user_specs(refs: Sequence[str], seed: int = 0) -> list[Spec]:
    """One spec per ``MODULE:FUNCTION``; the factory is checked to import here."""
    from harness.runtime.builder import from_factory

    specs = []
    for ref in refs:
        if not _REF.match(ref):
            msg = f"--user-case {ref!r} is not MODULE:FUNCTION, e.g. mypkg.models:make_model"
            raise InputError(msg)
        try:
            spec = Spec.from_dict({"name": _name(ref), "factory": ref, "seed": seed, "origin": "user",
                                   "description": f"user case {ref}"})
        except SpecError as e:
            raise InputError(f"--user-case {ref}: {e}") from None
        from_factory(spec)  # fail here, once, with the reason, rather than in every format
        specs.append(spec)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise InputError("--user-case given twice for the same factory")
    return specs
