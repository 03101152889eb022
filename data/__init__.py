"""Data: datasets and loading (``data.loader``), SPSE style codes (``data.spse``,
``data.spse_job``), code files (``data.codes``) and image/label IO (``data.image_io``).

``create_dataset``, ``create_dataloader`` and ``ResumableSampler`` are
re-exported lazily, so that the torch-free modules (SPSE extraction and its
worker processes) do not import torch.
"""

_LOADER_NAMES = ("create_dataset", "create_dataloader", "ResumableSampler")


def __getattr__(name):
    if name in _LOADER_NAMES:
        from data import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'data' has no attribute {name!r}")
