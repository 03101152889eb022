"""The test session's own settings (tests/conftest.py): one thread per process, set once."""
import os
import subprocess
import sys

import torch


def test_one_thread_per_process_for_the_whole_session():
    threads = int(os.environ.get("SUPERSTYLENET_TEST_THREADS", "1"))
    assert torch.get_num_threads() == threads
    assert os.environ["OMP_NUM_THREADS"] == str(threads)
    # processes the tests start (DDP workers, the save_style_vector.py subprocess) inherit it
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                         capture_output=True, text=True, check=True)
    assert int(out.stdout) == threads
