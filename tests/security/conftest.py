"""The fuzzing budget of the security and robustness tests.

The service they attack is built by the shared fixtures of ``tests/conftest.py`` (``settings``:
production-like, both tokens, no dev mode; ``app``, ``client``, ``store``, ``rt``; a real Redis,
see there), with the tokens and credentials of ``tests/service.py``.

Fuzzing: every property test builds its hypothesis test inside the pytest test (so function-scoped
fixtures are fine) and decorates it with the ``fuzz`` fixture. By default that is a CI-sized,
derandomized run of ``DEFAULT_EXAMPLES`` examples per test, without hypothesis' example database
(its remaining caches go to ``.hypothesis/``, which it git-ignores itself). A long, randomized
run::

    LSP_TEST_REDIS_URL=redis://127.0.0.1:6379/10 .venv/bin/python -m pytest tests/security \\
        --fuzz-examples 20000

(``--fuzz-examples`` is registered in ``tests/conftest.py``.) A failure prints the smallest
example and a ``@reproduce_failure`` line.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

DEFAULT_EXAMPLES = 200


@pytest.fixture(scope="session")
def fuzz(request: pytest.FixtureRequest) -> hypothesis_settings:
    """The hypothesis settings every fuzz test runs under (see module doc)."""
    examples: int | None = request.config.getoption("fuzz_examples", default=None)
    if examples is not None and examples < 1:
        raise pytest.UsageError("--fuzz-examples must be at least 1")
    return hypothesis_settings(
        max_examples=examples or DEFAULT_EXAMPLES,
        deadline=None,
        derandomize=examples is None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
