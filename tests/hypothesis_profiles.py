"""Hypothesis settings profiles for the strategy tests (``tests/test_strategies*.py``).

Two profiles, chosen by the environment variable
``TORCH_ROUNDTRIP_HYPOTHESIS_PROFILE`` (default ``dev``)::

    dev   few examples, Hypothesis's example database on: a quick local
          run that replays the last failure first.
    ci    many examples, derandomize=True (the same examples on every run,
          so a red build is reproducible), no database, no deadline, and
          the reproduction blob printed with a failure. Sized so that the
          strategy tests stay within about three minutes on two cores.

    TORCH_ROUNDTRIP_HYPOTHESIS_PROFILE=ci python -m pytest tests/test_strategies*.py

The profiles are registered as ``torch-roundtrip-dev`` and
``torch-roundtrip-ci`` (Hypothesis ships a ``ci`` profile of its own) and
applied per test with ``@PROFILE`` / ``scaled(...)``, never loaded
globally, so other test modules keep their own settings.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

__all__ = ["ENV_VAR", "NAME", "PROFILE", "scaled"]

ENV_VAR = "TORCH_ROUNDTRIP_HYPOTHESIS_PROFILE"

# A round trip saves seven formats and loads ~145 cells: seconds, not
# milliseconds, so no deadline and no "too slow" health check.
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile("torch-roundtrip-dev", max_examples=8, deadline=None, suppress_health_check=_SLOW_OK)
settings.register_profile(
    "torch-roundtrip-ci", max_examples=150, derandomize=True, deadline=None, database=None,
    print_blob=True, suppress_health_check=_SLOW_OK,
)

NAME = os.environ.get(ENV_VAR, "dev")
if NAME not in ("dev", "ci"):
    msg = f"{ENV_VAR}={NAME!r} is not a profile: use 'dev' (the default) or 'ci'"
    raise ValueError(msg)

#: The active profile; decorate a @given test with it.
PROFILE = settings.get_profile(f"torch-roundtrip-{NAME}")


def scaled(factor: float) -> settings:
    """The active profile with `factor` times its examples (cheap tests run more)."""
    return settings(PROFILE, max_examples=max(1, int(PROFILE.max_examples * factor)))
