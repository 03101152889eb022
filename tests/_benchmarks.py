"""Importing a script of ``benchmarks/`` in a test (they import each other by file name)."""
import importlib
import os
import sys

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


def import_benchmark(name):
    """The module ``benchmarks/<name>.py``; ``benchmarks/`` is on ``sys.path`` only while it is imported."""
    sys.path.insert(0, BENCHMARKS)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(BENCHMARKS)
