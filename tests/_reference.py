"""Locate the shared reference files (release key lists and the generator fixture).

Order: env ``SUPERSTYLENET_REFERENCE_DIR``; ``<repo>/../shared/reference``;
``<repo>/shared/reference``. When none exists the calling test is skipped,
except under CI (env ``CI`` set), where it fails.
"""
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def reference_dir():
    """Return the reference directory or skip/fail the test when it is absent."""
    candidates = []
    env = os.environ.get("SUPERSTYLENET_REFERENCE_DIR")
    if env:
        candidates.append(env)
    candidates += [os.path.join(REPO, os.pardir, "shared", "reference"), os.path.join(REPO, "shared", "reference")]
    for c in candidates:
        if os.path.isdir(c):
            return os.path.abspath(c)
    msg = "reference files not found (set SUPERSTYLENET_REFERENCE_DIR); looked in " + ", ".join(candidates)
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def reference_file(name):
    """Path of one reference file; skip/fail like :func:`reference_dir` when it is missing."""
    path = os.path.join(reference_dir(), name)
    if not os.path.isfile(path):
        msg = f"reference file {path} not found"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(autouse=True, scope="module")
def single_torch_thread():
    """Kept for modules that still import it: the thread count is now set once for the
    whole session in tests/conftest.py, so this fixture only checks that it is in effect."""
    import torch

    from tests.conftest import TEST_THREADS

    assert torch.get_num_threads() == TEST_THREADS
    yield
