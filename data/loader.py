"""Dataset registry and data loading.

:data:`DATASETS` is the one registry of dataset classes (``--dataset_mode``
chooses from it; the options builder registers the chosen class's flags).
:func:`create_dataset` builds the dataset of ``opt.dataset_mode``;
:func:`create_dataloader` wraps it in a ``DataLoader`` with a
:class:`ResumableSampler`, which

* in training shuffles with a generator seeded by ``(seed, epoch)`` (no global
  RNG), unless ``--serial_batches``; test synthesis keeps the file order;
* splits each global batch across distributed ranks the way
  ``torch.utils.data.distributed.DistributedSampler`` does (rank ``r`` takes
  every ``world``-th index starting at ``r``), so the union of the ranks'
  batches ``b`` is exactly the single-process batch ``b``;
* can start part-way through an epoch (exact ``--continue_train``).

Workers (``--nThreads``; :func:`default_workers` when it is -1) stay alive
across epochs (``persistent_workers``) and each keeps :data:`PREFETCH_BATCHES`
batches ready. A training loader of a GPU run carries the photos as uint8
(:attr:`data.custom_dataset.CustomDataset.uint8_images`), normalised on the
device by the model.
"""
import math
import os

import numpy as np
import torch

from data.custom_dataset import CustomDataset
from util.errors import InputError, OptionError
from util.threads import available_cores

DATASETS = {"custom": CustomDataset}
PREFETCH_BATCHES = 4  # batches each worker keeps ready
MAX_DEFAULT_WORKERS = 16


def default_workers(processes, on_gpu, cores=None):
    """``--nThreads -1``: loader workers per training process.

    On a GPU each of ``processes`` training processes on this machine gets an
    equal share of the ``cores`` available (default :func:`available_cores`)
    and keeps one of them for itself: ``cores // processes - 1``, at least 1
    and at most :data:`MAX_DEFAULT_WORKERS`. On the CPU: 0 (the model's
    threads use every core; decoding in the training process competes least).
    """
    if not on_gpu:
        return 0
    cores = available_cores() if cores is None else int(cores)
    return max(1, min(MAX_DEFAULT_WORKERS, cores // max(1, int(processes)) - 1))


def create_dataset(opt):
    """Instantiate the dataset class registered for ``opt.dataset_mode``."""
    if opt.dataset_mode not in DATASETS:
        raise OptionError(f"--dataset_mode {opt.dataset_mode!r}: unknown; choose from {sorted(DATASETS)}")
    return DATASETS[opt.dataset_mode](opt)


class ResumableSampler(torch.utils.data.Sampler):
    """Per-rank index sampler with a deterministic per-epoch order and a start offset.

    ``n``: dataset length; ``global_batch``: samples per step over all ranks. In
    training (``drop_last``) the order is cut to a whole number of global
    batches, so all ranks make the same number of steps.
    """

    def __init__(self, n, shuffle, seed=0, rank=0, world_size=1, global_batch=1, drop_last=True):
        if global_batch % world_size:
            raise ValueError(f"batch size {global_batch} is not divisible by the number of processes {world_size}")
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.global_batch, self.drop_last = global_batch, drop_last
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch):
        """Use the order of ``epoch`` (int); resets the start offset."""
        self.epoch, self.start_batch = int(epoch), 0

    def set_start_batch(self, batch_index):
        """Skip the first ``batch_index`` batches of the current epoch (resume)."""
        self.start_batch = int(batch_index)

    def global_order(self):
        """All indices of the current epoch in order (before splitting across ranks)."""
        if self.shuffle:
            g = np.random.default_rng([self.seed & 0xFFFFFFFF, self.epoch, 7919])
            order = g.permutation(self.n)
        else:
            order = np.arange(self.n)
        if self.drop_last:
            order = order[: (self.n // self.global_batch) * self.global_batch]
        else:
            total = math.ceil(self.n / self.world_size) * self.world_size
            if total > self.n and self.n:
                order = np.concatenate([order, order[: total - self.n]])
        return order

    def batches_per_epoch(self):
        """Number of steps in one epoch."""
        return math.ceil(len(self.global_order()) / self.global_batch) if self.n else 0

    def __iter__(self):
        mine = self.global_order()[self.rank:: self.world_size]
        skip = self.start_batch * (self.global_batch // self.world_size)
        return iter(int(i) for i in mine[skip:])

    def __len__(self):
        mine = len(self.global_order()[self.rank:: self.world_size])
        return max(0, mine - self.start_batch * (self.global_batch // self.world_size))


def collate(items):
    """Stack a list of item dicts into the batch dict (``path`` stays a list of str).

    ``image`` is present only when the items carry one (a test set without photographs has none).
    """
    batch = {
        "label": torch.stack([it["label"] for it in items]),
        "codes": torch.stack([it["codes"] for it in items]),
        "path": [it["path"] for it in items],
    }
    if "image" in items[0]:
        batch["image"] = torch.stack([it["image"] for it in items])
    return batch


def create_dataloader(opt, rank=0, world_size=1, skip_record=None):
    """``DataLoader`` over :func:`create_dataset` for this rank.

    ``opt.batchSize`` is the global batch; each of ``world_size`` ranks loads
    ``batchSize / world_size`` samples per step. The loader's ``sampler`` and
    ``dataset`` expose ``set_epoch``; call both at each epoch start.
    ``opt.nThreads`` workers (-1: :func:`default_workers` for ``world_size``
    processes), persistent, prefetching.
    ``skip_record`` (a file path): items that fail to load are skipped and
    listed there (:class:`data.preflight.SkipUnreadable`).
    """
    dataset = create_dataset(opt)
    if opt.isTrain and opt.gpu_ids and hasattr(dataset, "uint8_images"):
        dataset.uint8_images = True  # normalised on the device (SuperStyleNetModel.preprocess_input)
    if skip_record is not None:
        from data.preflight import SkipUnreadable

        dataset = SkipUnreadable(dataset, skip_record)
    if len(dataset) == 0:
        raise InputError(f"{opt.label_dir}: dataset is empty")
    if opt.batchSize % world_size:
        raise OptionError(f"--batchSize {opt.batchSize} must be divisible by the number of processes {world_size}")
    if opt.isTrain and len(dataset) < opt.batchSize:
        raise OptionError(f"--batchSize {opt.batchSize} is larger than the dataset ({len(dataset)} samples)")
    workers = int(opt.nThreads)
    if workers < 0:  # one training process per listed GPU, or as many as torchrun started on this machine
        local = int(os.environ.get("LOCAL_WORLD_SIZE", 0) or 0) or min(world_size, max(1, len(opt.gpu_ids)))
        workers = default_workers(local, bool(opt.gpu_ids))
    more = {"persistent_workers": True, "prefetch_factor": PREFETCH_BATCHES} if workers > 0 else {}
    sampler = ResumableSampler(len(dataset), shuffle=opt.isTrain and not opt.serial_batches, seed=opt.seed,
                               rank=rank, world_size=world_size, global_batch=opt.batchSize,
                               drop_last=opt.isTrain)
    return torch.utils.data.DataLoader(
        dataset, batch_size=opt.batchSize // world_size, sampler=sampler, num_workers=workers,
        collate_fn=collate, drop_last=opt.isTrain, pin_memory=bool(opt.gpu_ids), **more,
        # a private generator: creating an iterator must not consume the global torch RNG,
        # which the model's noise injection uses (exact resume depends on it)
        generator=torch.Generator().manual_seed(int(opt.seed)))
