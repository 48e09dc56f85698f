"""A real part of the test environment (a server program) is not installed.

Such a test skips with a message naming the package to install; where the environment
promises every part (``SWDEPOT_REQUIRE_REAL_PARTS=1``, which ``.ci/run`` sets), the skip
is a failure instead, so CI always runs the PostgreSQL, S3 and browser tests.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

REQUIRED = "SWDEPOT_REQUIRE_REAL_PARTS"


def missing(message: str) -> NoReturn:
    """Skip, or fail where every real part is required."""
    if os.environ.get(REQUIRED) == "1":
        pytest.fail(f"{message} ({REQUIRED}=1: CI must run these tests)", pytrace=False)
    pytest.skip(message)
