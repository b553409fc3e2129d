"""Same kernels means the same CPU kernels: the compute key tells CPUs apart.

Golden files made on a CPU without AVX-512 and loaded with the same torch on
one with it compute forward outputs one ulp apart: that is drift between
kernels, and the compute key must say the kernels differ, or a harmless
difference fails the run as a same-kernel mismatch.
"""

from __future__ import annotations

import dataclasses

import pytest

pytest.importorskip("torch")

from harness.runtime.env import cpu_kernels, fingerprint  # noqa: E402


def test_cpu_kernels_names_torchs_dispatch_level_and_the_cpu():
    level, _, isa = cpu_kernels().partition("/")
    assert level and isa
    assert cpu_kernels() == cpu_kernels()


def test_another_cpu_is_another_compute_key():
    here = fingerprint("cpu")
    assert here.cpu == cpu_kernels()
    elsewhere = dataclasses.replace(here, cpu="AVX2/00000000")
    assert elsewhere.compute_key != here.compute_key
    assert dataclasses.replace(here).compute_key == here.compute_key


def test_an_older_fingerprint_without_the_cpu_never_claims_the_same_kernels():
    here = fingerprint("cpu")
    old = here.to_dict()
    del old["cpu"]
    from harness.runtime.env import Fingerprint

    assert Fingerprint.from_dict(old).compute_key != here.compute_key
