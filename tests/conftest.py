"""Shared pytest configuration: the repository root is importable; one thread per process; shared fixtures.

Thread count, set once for the whole session, here: the tests use tiny
tensors, where intra-op threads only add synchronisation, and on a busy
2-core machine every parallel region can stall on a descheduled OpenMP
thread (measured on this project's 2-core machine with another job running:
``test_learning`` 175 s with the default 2 threads against 20 s with 1,
``test_resume`` 129 s against 12 s). The thread variables are set before torch,
numpy or numba are imported, so they also hold for every process a test
spawns (DDP and sync-BatchNorm workers, the ``save_style_vector.py``
subprocess). ``SUPERSTYLENET_TEST_THREADS=N`` overrides the count.
"""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

TEST_THREADS = int(os.environ.get("SUPERSTYLENET_TEST_THREADS", "1"))
for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_name] = str(TEST_THREADS)

import torch  # noqa: E402  (after the thread variables)

torch.set_num_threads(TEST_THREADS)


def pytest_report_header(config):
    """Say in the header how many threads the session uses."""
    return f"threads per process: {torch.get_num_threads()} (tests/conftest.py; SUPERSTYLENET_TEST_THREADS)"


@pytest.fixture(scope="session")
def tiny_trained(tmp_path_factory):
    """The tiny trained generator, its dataset and checkpoint (tests/_tiny_model.py), built once per run.

    Shared by the style-mixing and editor tests, which only read it (a test that
    adds a file to its checkpoint folder removes it again).
    """
    from tests._tiny_model import build_tiny_trained

    return build_tiny_trained(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def random_inception_path(tmp_path_factory):
    """A FID Inception weights file with untrained weights (seed 0), for tests of the FID plumbing.

    Such a network gives meaningless FID values; the product code never builds
    one itself (it loads weights from --inception_path or torch's cache).
    """
    from evaluation import metrics

    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = metrics.fid_inception_skeleton()
    path = tmp_path_factory.mktemp("inception") / metrics.FID_WEIGHTS_NAME
    torch.save(net.state_dict(), path)
    return str(path)


@pytest.fixture(scope="session")
def bench_spse():
    """``benchmarks/bench_spse.py`` as a module: its images, label kinds and baseline extractor."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_spse", os.path.join(ROOT, "benchmarks", "bench_spse.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
