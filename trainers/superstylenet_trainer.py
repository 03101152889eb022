"""The training step, optimisers, learning-rate schedule and checkpoints (docs/training.md).

:class:`SuperStyleNetTrainer` owns the model (DDP-wrapped in a distributed
run), Adam for G and D (TTUR by default, docs/method.md §9), the AMP scaler
and the EMA generator. :meth:`~SuperStyleNetTrainer.train_step` runs a G
update on every ``--D_steps_per_G``-th step, then a D update; the losses stay
on the device until :meth:`~SuperStyleNetTrainer.latest_losses`.
:meth:`~SuperStyleNetTrainer.save` is called on every rank (rank 0 writes in
the background; :meth:`~SuperStyleNetTrainer.wait_for_saves`);
:meth:`~SuperStyleNetTrainer.resume` (``--continue_train``) and
:meth:`~SuperStyleNetTrainer.init_from` (``--init_from``) load files, raising
:class:`util.errors.CheckpointError` naming the file. The order in which run
settings are applied (batch norm, ``--channels_last``, EMA copy, DDP,
``--compile``) is described in docs/training.md, "Trainer and checkpoints".
"""
import contextlib
import os

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from models import checkpoints as ckpt
from models import create_model
from models.networks.sync_batchnorm import select_batchnorm
from trainers import parallel
from trainers.ema import EMAData, GeneratorEMA
from trainers.parallel import seed_rank_noise
from util import distributed as dist_util
from util.errors import CheckpointError, OptionError
from util.torch_io import load_torch_file


def learning_rate_for_epoch(opt, epoch):
    """Base learning rate in effect during 1-based ``epoch`` (float)."""
    if opt.niter_decay <= 0:
        return opt.lr
    done = max(0, epoch - 1 - opt.niter)
    return opt.lr * max(0.0, 1.0 - done / opt.niter_decay)


def split_lr(opt, lr):
    """``(G lr, D lr)`` for base ``lr``: TTUR halves G and doubles D unless ``--no_TTUR``."""
    return (lr, lr) if opt.no_TTUR else (lr / 2.0, lr * 2.0)


def amp_dtype(opt):
    """The autocast dtype of ``--amp`` / ``--amp_dtype`` on ``opt.device``, or None for float32.

    CUDA: bfloat16 where the GPU supports it (compute capability 8.0 and
    later), float16 otherwise; ``--amp_dtype`` forces one (bfloat16 on a GPU
    without it is an OptionError). CPU: float32 unless ``--amp_dtype`` names a
    dtype: CPU autocast is rarely faster for this model's convolutions without
    AMX-class hardware, and it would change the results of every CPU run.
    """
    if not opt.amp:
        return None
    choice = opt.amp_dtype
    if opt.device.type == "cuda":
        if choice == "auto":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if choice == "bfloat16" and not torch.cuda.is_bf16_supported():
            raise OptionError(f"--amp_dtype bfloat16: {torch.cuda.get_device_name(opt.device)} does not "
                              "support bfloat16; use --amp_dtype float16 (or auto)")
        return getattr(torch, choice)
    if choice == "auto":
        return None
    return getattr(torch, choice)


def configure_cuda():
    """TF32 for float32 matmuls and convolutions, cuDNN autotuning (fixed input sizes)."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True


class SuperStyleNetTrainer:
    """Owns the model (optionally DDP-wrapped), both Adam optimisers and the AMP scaler.

    Args:
        opt: training options.
        model: a built model (moved to ``opt.device`` here); built from ``opt``
            (:func:`models.create_model`) when None. Tests pass one, e.g. in
            float64 or with parameters frozen: only parameters that require
            grad are optimised.
        ddp_device_ids: set when running under DistributedDataParallel
            (``[local_rank]`` on CUDA, ``None`` on CPU); ``False`` for no DDP.
    """

    def __init__(self, opt, model=None, ddp_device_ids=False, ema_data=None, evaluator=None):
        self.opt = opt
        if model is None:
            model = create_model(opt)
        device = opt.device
        if device.type == "cuda":
            configure_cuda()
        self.model = model.to(device)
        distributed = ddp_device_ids is not False
        select_batchnorm(self.model, dist_util.get_world_size() if distributed else 1, device.type)
        if opt.channels_last:
            self.model.set_memory_format(torch.channels_last)
        self.model.train()
        # the averaged generator copies netG as it is now: batch norm chosen, memory format set, not compiled
        data = None if ema_data is None else EMAData(*ema_data, self.generator_inputs, int(opt.nThreads))
        self.ema = GeneratorEMA.from_options(opt, self.model.netG, data=data)  # None with --ema_decay 0
        if distributed:
            self.wrap_distributed(ddp_device_ids)
        if opt.compile:  # after DDP wrapping, as torch documents
            self.compile_networks()
        self.amp_dtype = amp_dtype(opt)
        if opt.amp and self.amp_dtype is None:
            print("[trainer] --amp: float32 on the CPU (pass --amp_dtype bfloat16 to autocast there anyway)")
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.optimizer_G, self.optimizer_D = self.create_optimizers()
        self.global_step = 0
        self.g_losses, self.d_losses = {}, {}
        self.generated = None
        self.set_epoch_lr(1)
        self.evaluator = evaluator  # its record is part of the training state
        self.writer = ckpt.CheckpointWriter(background=True)
        self.loaded_files = []  # the files the latest resume / init_from read
        self.resumed_at = None  # (epoch, epoch_iter) of the latest resume
        self.resumed_batch_size = None  # the global batch size the resumed training state was saved with

    # ------------------------------------------------------------ run settings
    def compile_networks(self):
        """``torch.compile`` G, D and the VGG loss in place, after DDP wrapping
        (:func:`models.networks.compile_support.compile_model`: spectral norm's
        power iteration runs eagerly before each network call, so each call is
        one graph). The backend is ``--compile_backend`` (inductor by default;
        ``aot_eager`` traces without generating code, which the CPU tests use
        because inductor's C++ compilation takes many minutes on a small CPU).
        """
        # here, not at the top: it imports torch._dynamo (about 1.5 s), needed with --compile only
        from models.networks.compile_support import compile_model

        compile_model(self.model, self.opt.compile_backend)

    def wrap_distributed(self, device_ids):
        """DistributedDataParallel around netG and netD, each on its own.

        Every parameter of G receives a gradient in the G step and every
        parameter of D in the D step; the calls without such a gradient (G
        under no_grad in the D step, D with frozen parameters in the G step)
        bypass the wrappers (see ``SuperStyleNetModel.set_parallel_wrappers``),
        so ``find_unused_parameters`` stays off. Buffers are broadcast only
        for a network holding one that is not kept equal otherwise
        (:func:`trainers.parallel.buffers_need_broadcast`); ``--ddp_comm_hook``
        compresses the gradients.
        """
        kw = dict(device_ids=device_ids, find_unused_parameters=False, gradient_as_bucket_view=True)
        self.ddp_G = DDP(self.model.netG, forward_sync_buffers=parallel.buffers_need_broadcast(self.model.netG), **kw)
        self.ddp_D = DDP(self.model.netD, forward_sync_buffers=parallel.buffers_need_broadcast(self.model.netD), **kw)
        for ddp in (self.ddp_G, self.ddp_D):
            parallel.register_comm_hook(ddp, self.opt.ddp_comm_hook)
        self.model.set_parallel_wrappers(netG=self.ddp_G, netD=self.ddp_D)

    # ------------------------------------------------------------ optimisation
    def create_optimizers(self):
        """Adam for G and D with TTUR (or ``--no_TTUR``) settings (fused kernels on CUDA)."""
        opt = self.opt
        if opt.no_TTUR:
            betas = (opt.beta1, opt.beta2)
        else:
            betas = (0.0, 0.9)
        lr_g, lr_d = split_lr(opt, opt.lr)
        g_params = [p for p in self.model.netG.parameters() if p.requires_grad]
        d_params = [p for p in self.model.netD.parameters() if p.requires_grad]
        kw = {"fused": True} if opt.device.type == "cuda" else {}
        return (torch.optim.Adam(g_params, lr=lr_g, betas=betas, **kw),
                torch.optim.Adam(d_params, lr=lr_d, betas=betas, **kw))

    def set_epoch_lr(self, epoch):
        """Apply the schedule's learning rates for 1-based ``epoch``; returns the base lr."""
        lr = learning_rate_for_epoch(self.opt, epoch)
        lr_g, lr_d = split_lr(self.opt, lr)
        for group in self.optimizer_G.param_groups:
            group["lr"] = lr_g
        for group in self.optimizer_D.param_groups:
            group["lr"] = lr_d
        self.current_lr = lr
        return lr

    def _autocast(self):
        if self.amp_dtype is not None:
            return torch.autocast(device_type=self.opt.device.type, dtype=self.amp_dtype)
        return contextlib.nullcontext()

    def run_generator_one_step(self, data):
        """One generator update on batch ``data``; returns the raw losses (dict of detached 0-dim tensors)."""
        self.optimizer_G.zero_grad(set_to_none=True)
        with self._autocast():
            losses, generated = self.model(data, "generator")
            total = self.model.weighted_sum(losses)
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer_G)
        self.scaler.update()
        if self.ema is not None:
            self.ema.step(self.model.netG)
        self.g_losses = {k: v.detach() for k, v in losses.items()}
        self.generated = generated.detach()
        return self.g_losses

    def run_discriminator_one_step(self, data):
        """One discriminator update on batch ``data``; returns the raw losses (dict of detached 0-dim tensors)."""
        self.optimizer_D.zero_grad(set_to_none=True)
        with self._autocast():
            losses = self.model(data, "discriminator")
            total = self.model.weighted_sum(losses)
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer_D)
        self.scaler.update()
        self.d_losses = {k: v.detach() for k, v in losses.items()}
        return self.d_losses

    def train_step(self, data):
        """G update (every ``D_steps_per_G``-th call) then one D update; increments ``global_step``."""
        if self.global_step % self.opt.D_steps_per_G == 0:
            self.run_generator_one_step(data)
        self.run_discriminator_one_step(data)
        self.global_step += 1

    def latest_losses(self):
        """Raw losses of the latest G and D steps (dict name -> float), read from the device in one transfer."""
        losses = {**self.g_losses, **self.d_losses}
        if not losses:
            return {}
        values = torch.stack([v.float() for v in losses.values()]).tolist()
        return dict(zip(losses, values))

    # ------------------------------------------------------------ EMA generator
    def generator_inputs(self, data):
        """``(segmap, codes)`` of batch ``data`` on the training device (the model's preprocessing)."""
        segmap, _, codes = self.model.preprocess_input(data)
        return segmap, codes

    def ema_generator(self):
        """The averaged generator, prepared for use (see trainers/ema.py), or None without EMA."""
        if self.ema is None:
            return None
        return self.ema.prepare(self.model.netG, device=self.opt.device)

    # ------------------------------------------------------------ checkpoints
    def init_from(self, folder, which_epoch, log=print):
        """Fine-tuning: load the plain ``{which_epoch}_net_G.pth`` (and ``_net_D.pth``) of ``folder``.

        This project's files or the release's (:func:`models.checkpoints.load_networks`).
        Optimisers, schedule and step count stay those of a new run; the EMA
        generator restarts from the loaded weights. Returns the notes.
        """
        self.loaded_files = [ckpt.network_path(folder, which_epoch, "G")]
        notes = ckpt.load_networks(self.model, folder, which_epoch, log=log)
        if self.ema is not None:
            self.ema.reset_to(self.model.netG)
        return notes

    def save(self, which_epoch, epoch, epoch_iter, save_state=True, snapshot=None):
        """Write ``{which_epoch}_net_{G,D}.pth`` and (``save_state``) ``{which_epoch}_train_state.pth``.

        With the EMA generator also ``{which_epoch}_net_G_ema.pth`` (prepared: BatchNorm
        statistics recomputed), which is also part of the training state.
        ``snapshot`` (e.g. ``"10"``): also the epoch snapshot ``{snapshot}_net_*.pth``
        of the same weights, written before the others.

        ``epoch`` (1-based) and ``epoch_iter`` (batches done in it) say where to resume.
        The training loop keeps the full state for ``latest`` only; epoch
        snapshots are ``net_G`` / ``net_D``, as in the release (the state holds
        both networks and both Adam states, about 3x their size).

        Called on every rank: with ``save_state`` every rank's RNG state is
        gathered (one small collective). Rank 0 then copies everything to the
        host (:meth:`checkpoint_files`) and hands the copies to the background
        writer, which writes them in order while training goes on; the other
        ranks return at once. :meth:`wait_for_saves` waits for the files.
        """
        rng_ranks = dist_util.all_gather_objects(ckpt.get_rng_state(self.opt.device)) if save_state else None
        if not dist_util.is_main_process():
            return
        self.writer.submit(self.checkpoint_files(which_epoch, epoch, epoch_iter, rng_ranks, snapshot=snapshot))

    def checkpoint_files(self, which_epoch, epoch, epoch_iter, rng_ranks=None, snapshot=None):
        """The ``(object, path)`` pairs of one save, in the order they are written, as private CPU copies.

        ``rng_ranks``: every rank's RNG state (:func:`models.checkpoints.get_rng_state`),
        or None for networks only (an epoch snapshot). The order makes a kill at
        any point harmless (models/checkpoints.py): ``snapshot``'s network
        files, then ``which_epoch``'s, then the training state, whose ``files``
        record the writer fills in.
        """
        folder = os.path.join(self.opt.checkpoints_dir, self.opt.name)
        os.makedirs(folder, exist_ok=True)
        netG, netD = ckpt.cpu_state_dict(self.model.netG), ckpt.cpu_state_dict(self.model.netD)
        state = None
        if rng_ranks is not None:  # built before the EMA is prepared for its file (as an uninterrupted run)
            state = {
                "version": ckpt.TRAIN_STATE_VERSION,
                "netG": netG, "netD": netD,
                "optimizer_G": ckpt.cpu_copy(self.optimizer_G.state_dict()),
                "optimizer_D": ckpt.cpu_copy(self.optimizer_D.state_dict()),
                "scaler": ckpt.cpu_copy(self.scaler.state_dict()),
                "epoch": int(epoch), "epoch_iter": int(epoch_iter), "global_step": int(self.global_step),
                "rng": rng_ranks[0],
                "files": None,  # the records of the network files below, filled in by the writer
                "batch_size": int(self.opt.batchSize),  # a resume with another batch size says what it does
            }
            if len(rng_ranks) > 1:
                state["rng_ranks"] = list(rng_ranks)
            if self.ema is not None:
                state["ema"] = self.ema.state_dict()
            if self.evaluator is not None:
                state["evaluation"] = ckpt.cpu_copy(self.evaluator.state_dict())
            ckpt.check_train_state(state)
        nets = [(netG, "G"), (netD, "D")]
        if self.ema is not None:
            nets.append((self.ema.network_state_dict(self.model.netG, self.opt.device), ckpt.EMA_NET))
        files = []
        for which in ([str(snapshot)] if snapshot is not None else []) + [which_epoch]:
            files += [(obj, ckpt.network_path(folder, which, net)) for obj, net in nets]
        if state is not None:
            files.append((state, ckpt.train_state_path(folder, which_epoch)))
        return files

    def repair_latest(self, which_epoch="latest", log=print):
        """Rewrite the network files of ``which_epoch`` that differ from its training state (rank 0).

        After a save was killed between its network files and its training
        state, the resumed run (which holds that state) writes the networks
        again, so the ``latest`` files agree. Returns the names rewritten.
        """
        folder = os.path.join(self.opt.checkpoints_dir, self.opt.name)
        if not dist_util.is_main_process():
            return []
        step, bad = ckpt.latest_mismatches(folder, which_epoch)
        if not bad:
            return []
        files = [(obj, path) for obj, path in self.checkpoint_files(which_epoch, 0, 0)
                 if os.path.basename(path) in bad]
        self.writer.submit(files)
        self.writer.wait()
        log(f"note: {', '.join(bad)} did not match {which_epoch}_train_state.pth (global step {step}; a save "
            "was interrupted): rewritten from the training state")
        return bad

    def wait_for_saves(self):
        """Block until every file handed to the background writer is on disk (raises a failed write)."""
        self.writer.wait()

    def resume(self, which_epoch, steps_per_epoch):
        """Restore a run for ``--continue_train``; returns ``(epoch, epoch_iter, exact)``.

        With ``{which_epoch}_train_state.pth`` present (always for ``latest``):
        :meth:`load_train_state`, an exact continuation. An epoch snapshot
        (``N_net_G.pth`` / ``N_net_D.pth`` only) is resumed as the release did:
        the weights are loaded, the Adam states start afresh, training goes on
        with epoch N+1 (global step N·steps_per_epoch); the EMA generator
        continues from ``N_net_G_ema.pth`` when that exists, else from the
        loaded weights. Raises :class:`CheckpointError` when neither exists.
        """
        folder = os.path.join(self.opt.checkpoints_dir, self.opt.name)
        which = str(which_epoch)
        if os.path.isfile(ckpt.train_state_path(folder, which)) or not which.isdigit():
            self.loaded_files = [ckpt.train_state_path(folder, which)]
            epoch, epoch_iter = self.load_train_state(which)
            self.resumed_at = (epoch, epoch_iter)
            return epoch, epoch_iter, True
        self.loaded_files = [ckpt.network_path(folder, which, net) for net in ("G", "D")]
        for net in ("G", "D"):
            path = ckpt.network_path(folder, which, net)
            if not os.path.isfile(path):
                raise CheckpointError(f"{path}: not found; --continue_train --which_epoch {which} needs "
                                      f"{which}_net_G.pth and {which}_net_D.pth (or {which}_train_state.pth)")
        ckpt.load_networks(self.model, folder, which)  # this project's files or the release's
        epoch = int(which)
        self.global_step = epoch * int(steps_per_epoch)
        self.set_epoch_lr(epoch)
        if self.ema is not None:
            ema_path = ckpt.network_path(folder, which, ckpt.EMA_NET)
            if os.path.isfile(ema_path):
                self.loaded_files.append(ema_path)
            self._resume_ema_from_snapshot(ema_path)
        self.resumed_at = (epoch, int(steps_per_epoch))
        return epoch, int(steps_per_epoch), False

    def held_state(self):
        """What must agree on all ranks after a load, and a short description: ``(state, summary)``.

        The weights and buffers of G and D, both optimisers, the scaler, the
        EMA generator and its counters, the global step, learning rate and the
        resumed (epoch, iteration); the tensors stay where they are
        (:func:`trainers.rank_agreement.state_digest` reads them there).
        """
        position = self.resumed_at
        state = {"netG": self.model.netG.state_dict(), "netD": self.model.netD.state_dict(),
                 "optimizer_G": self.optimizer_G.state_dict(), "optimizer_D": self.optimizer_D.state_dict(),
                 "scaler": self.scaler.state_dict(), "global_step": int(self.global_step),
                 "lr": float(self.current_lr), "position": position}
        if self.ema is not None:
            state["ema"] = self.ema.held_state()
        where = f"global step {self.global_step}"
        if position is not None:
            where = f"epoch {position[0]}, iteration {position[1]}, " + where
        return state, where

    def _resume_ema_from_snapshot(self, path):
        """Continue the average from the snapshot's ``*_net_G_ema.pth``, or restart it from netG."""
        if not os.path.isfile(path):
            print(f"note: {path} not found; the EMA generator restarts from the loaded weights")
            self.ema.reset_to(self.model.netG)
            return
        g_steps = -(-self.global_step // self.opt.D_steps_per_G)  # generator steps done so far
        self.ema.load_network(load_torch_file(path, "EMA generator"), g_steps, path)

    def load_train_state(self, which_epoch):
        """Restore everything from ``{which_epoch}_train_state.pth``; returns ``(epoch, epoch_iter)``.

        Raises :class:`CheckpointError` when the file is missing, corrupt or
        does not fit the model.
        """
        path = ckpt.train_state_path(os.path.join(self.opt.checkpoints_dir, self.opt.name), which_epoch)
        state = ckpt.load_train_state(path)
        try:
            self.model.netG.load_state_dict(state["netG"], strict=True)
            self.model.netD.load_state_dict(state["netD"], strict=True)
            self.optimizer_G.load_state_dict(state["optimizer_G"])
            self.optimizer_D.load_state_dict(state["optimizer_D"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"{path}: training state does not match the model or options ({e})") from e
        if "scaler" in state and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self._load_ema_and_evaluation(state, path)
        self._restore_rng(state, path)
        self.global_step = int(state["global_step"])
        self.resumed_batch_size = state.get("batch_size")
        self.set_epoch_lr(int(state["epoch"]))
        return int(state["epoch"]), int(state["epoch_iter"])

    def _restore_rng(self, state, path):
        """This rank's own RNG state from the training state (each rank saved its own)."""
        rank, world = dist_util.get_rank(), dist_util.get_world_size()
        rng, own = ckpt.rng_state_for_rank(state, rank, world)
        if rng is not None:
            ckpt.set_rng_state(rng, self.opt.device)
        else:
            seed_rank_noise(self.opt.seed, rank)
        if not own and rank == 0:
            saved = len(state["rng_ranks"]) if state.get("rng_ranks") is not None else 1
            print(f"note: {path} was saved by {saved} process(es) and is resumed by {world}: the ranks' noise "
                  "streams differ from those of the uninterrupted run, so this is not an exact continuation")

    def _load_ema_and_evaluation(self, state, path):
        """Restore the EMA generator and the evaluator's record from a training state."""
        if self.ema is not None:
            if state.get("ema"):
                self.ema.load_state_dict(state["ema"], path)
            else:
                print(f"note: {path} holds no EMA generator; the average starts from the loaded weights")
                self.ema.reset_to(self.model.netG)
        elif state.get("ema"):
            print(f"note: {path} holds an EMA generator; --ema_decay 0 drops it")
        if self.evaluator is not None:
            self.evaluator.load_state_dict(state.get("evaluation"))
