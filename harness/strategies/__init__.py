"""Hypothesis strategies that draw specs, and seeded corpora of generated cases.

`specs()` draws one spec as plain JSON (a dict that `Spec.from_dict`
accepts): a tree of containers (``sequential``, ``module_list``,
``module_dict``, nested as deep as ``max_depth``) whose leaves are the layer
kinds of `harness.runtime.layers.KINDS` in the dtypes each allows, plus the extras a
spec can carry: extra parameters and (non-)persistent buffers of any dtype
and shape (zero-size and 0-dim included, sometimes a sparse COO buffer),
weight ties, planted special values, non-contiguous / offset /
channels_last layouts, parametrizations, a key prefix, a short training
run and, beside a trained model's checkpoint, what training scripts save
there (numpy objects, a Namespace, ...). `models()` draws the tree alone and `layers()` one leaf.

Chains fit by construction: each child of a ``sequential`` is drawn among
the kinds that accept the previous output's signature ``(space, features,
dtype)`` (see `harness.runtime.layers`), and that output is computed by the same
`harness.runtime.spec.chain_signature` that validation uses. Every extra is drawn
among the tensors the tree really has (`layer_tensors`), with the
constraints the builder enforces (ties join parameters of one shape and
dtype; special values go into contiguous floating point tensors that a load
restores; training only for float32/float64 models without planted values).

How examples shrink: every choice is ordered simplest first, so a failing
spec shrinks towards a ``sequential`` root holding one float32 ``linear``
with small features, no extras and no training; lists (children, extra
tensors, ties, plants, layouts) shrink towards fewer items.

`generate_specs(n, seed)` turns the strategy into a corpus: Hypothesis's own
generation, seeded and without its example database, so one Hypothesis
version gives the same specs for the same ``n`` and ``seed`` on every run.
The load side never calls it: generated specs travel as JSON.

One concept per module; each builds on the ones before it:

- `grammar`: the allowed kinds and dtypes, which kinds take a signature,
  and the checks of the strategies' options;
- `leaves`: one layer node (`layers`);
- `trees`: containers nested around the leaves (`models`);
- `tensors`: the tensor table of a tree (`layer_tensors`);
- `extras`: extra tensors, ties, layouts and training, drawn among those tensors;
- `compose`: a whole spec, tree then extras in a fixed order (`specs`);
- `corpus`: seeded corpora (`generate_specs`) and the Hypothesis-internals
  workaround that keeps them independent of harness's own source;
- `refactors`: a spec plus a refactor of it (its ``load_as``) and the truth
  about what moved, for the property tests of the remap and of migrations
  (never in the generated corpus).

What this module exports is the API; the submodules' other public names are
for each other.

The property tests' settings profiles (``dev``, ``ci``) live in
``tests/hypothesis_profiles.py``, chosen by TORCH_ROUNDTRIP_HYPOTHESIS_PROFILE.
"""

from __future__ import annotations

from harness.strategies.compose import specs
from harness.strategies.corpus import generate_specs
from harness.strategies.grammar import LAYER_DTYPES, LEAF_KINDS
from harness.strategies.leaves import layers
from harness.strategies.refactors import Refactor, refactors
from harness.strategies.tensors import layer_tensors
from harness.strategies.trees import models

__all__ = [
    "LAYER_DTYPES", "LEAF_KINDS", "Refactor", "generate_specs", "layer_tensors", "layers", "models", "refactors", "specs",
]
