"""The bound of SPSE's working resolution (``--size`` of extraction, ``--spse_size`` of mixing).

Memory grows with the square of the size: one extraction holds about
:data:`BYTES_PER_PIXEL` bytes per pixel of the ``size x size`` working image
at its peak, per worker process (the worst case, a class whose bounding box
is the whole image; ``benchmarks/bench_size_memory.py`` measured 107-111
bytes per pixel for both SLIC backends at 512, 1024 and 2048). The method
works at 512; :data:`MAX_SIZE` (4096, about 1.9 GB per worker) leaves room
for larger data without letting a typo exhaust the machine.
"""
from util.flag_rules import size_bound

MIN_SIZE = 8
MAX_SIZE = 4096
BYTES_PER_PIXEL = 111

SIZE_RULE, SIZE_HELP = size_bound(MIN_SIZE, MAX_SIZE, BYTES_PER_PIXEL, "one extraction (per worker)")
