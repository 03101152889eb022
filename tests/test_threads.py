"""Torch threads capped for the cores this process may use (util/threads.py)."""
import torch

from util import threads


def test_thread_count_divides_the_cores_among_local_processes():
    assert threads.thread_count(default=8, cores=8) == 8
    assert threads.thread_count(default=8, cores=8, local_processes=4) == 2
    assert threads.thread_count(default=8, cores=3, local_processes=4) == 1  # never 0
    assert threads.thread_count(default=4, cores=16) == 4  # never above torch's default (physical cores)
    assert threads.thread_count(default=2, cores=2, limit=1) == 1


def test_cap_threads_keeps_the_users_choice_and_sets_the_rule_otherwise(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(1)
        assert threads.cap_threads(local_processes=1) == 1
        monkeypatch.delenv("OMP_NUM_THREADS")
        monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
        monkeypatch.setattr(threads, "available_cores", lambda: 6)
        torch.set_num_threads(4)
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
        assert threads.cap_threads() == 2 == torch.get_num_threads()
        torch.set_num_threads(4)
        assert threads.cap_threads(local_processes=1, limit=3) == 3 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
