"""Process memory readings shared by the CPU benchmarks (Linux), in MiB."""
import os
import resource


def rss_mib():
    """Current resident set size of this process in MiB (``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def peak_rss_mib():
    """Peak resident set size of this process so far in MiB (``getrusage``; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_parts_mib():
    """``(private, file-backed)`` resident memory of this process in MiB (``RssAnon``, ``RssFile`` of
    ``/proc/self/status``): private memory is this process's own; file-backed pages are the page cache,
    shared by every process that maps the same file."""
    parts = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("RssAnon:", "RssFile:")):
                key, value = line.split(":")
                parts[key] = int(value.split()[0]) / 1024.0
    return parts["RssAnon"], parts["RssFile"]
