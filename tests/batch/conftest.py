"""Fixtures of the senti-batch tests: generated input files, and one local Ray for the module that needs it.

Ray and pyarrow come with the batch extra (requirements/batch.in); CI installs them, so there a missing one
fails. Elsewhere the tests that need them are skipped with the reason.
"""
import importlib
import os

import pytest


def require(module: str):
    """The module, or a skip naming what to install (a failure under CI, which must have it)."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{module} is not installed (requirements/batch.in): {error}", allow_module_level=True)


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray on this machine (two CPUs, a small object store), shut down after the module."""
    ray = require("ray")
    require("ray.data")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 * 1024 * 1024,
                 logging_level="WARNING", log_to_driver=False)
    yield ray
    ray.shutdown()
