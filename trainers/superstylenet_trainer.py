"""The training step, optimisers, learning-rate schedule and checkpoints.

One :meth:`SuperStyleNetTrainer.train_step` per batch follows the release:
a generator update on every ``--D_steps_per_G``-th step (counted over the
whole run), then one discriminator update. With the default 1 that is one G
step and one D step per batch. The weighted losses are formed in one
place, ``SuperStyleNetModel.weighted_sum``, from ``model.loss_weights``; the
raw losses are what gets logged.

Optimisers (SPEC §4): Adam; TTUR by default (G ``lr/2``, D ``2·lr``, betas
``(0, 0.9)``); ``--no_TTUR`` uses ``lr`` for both with ``(beta1, beta2)``.
Schedule: epochs are 1-based; epoch ``e`` trains at
``lr · (1 - max(0, e - 1 - niter) / niter_decay)`` -- constant for ``niter``
epochs, then a linear decay by ``lr/niter_decay`` after each further epoch,
exactly when the release's per-epoch update happened.

Fine-tuning (``--init_from``, :meth:`SuperStyleNetTrainer.init_from`) loads
plain ``net_G`` / ``net_D`` files (this project's or the release's) into a
fresh run; ``--continue_train`` (:meth:`SuperStyleNetTrainer.load_train_state`)
resumes this run exactly from its training state.

The averaged generator (``trainers/ema.py``, ``--ema_decay``) is updated after
every G step and written with every checkpoint (``*_net_G_ema.pth`` and inside
the training state); an evaluator (``trainers/evaluator.py``) attached as
``trainer.evaluator`` has its best-so-far record saved in the training state.
"""
import contextlib
import os

import torch

from models import checkpoints as ckpt
from models import create_model
from trainers.ema import GeneratorEMA
from util.errors import CheckpointError


def learning_rate_for_epoch(opt, epoch):
    """Base learning rate in effect during 1-based ``epoch`` (float)."""
    if opt.niter_decay <= 0:
        return opt.lr
    done = max(0, epoch - 1 - opt.niter)
    return opt.lr * max(0.0, 1.0 - done / opt.niter_decay)


def split_lr(opt, lr):
    """``(G lr, D lr)`` for base ``lr``: TTUR halves G and doubles D unless ``--no_TTUR``."""
    return (lr, lr) if opt.no_TTUR else (lr / 2.0, lr * 2.0)


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

    def __init__(self, opt, model=None, ddp_device_ids=False):
        self.opt = opt
        if model is None:
            model = create_model(opt)
        self.model = model.to(opt.device)
        self.model.train()
        self.module = self.model
        if ddp_device_ids is not False:
            self.module = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=ddp_device_ids, find_unused_parameters=True)
        self.use_amp = bool(opt.amp) and opt.device.type == "cuda"
        if opt.amp and not self.use_amp:
            print("[trainer] --amp needs CUDA; training in float32")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.optimizer_G, self.optimizer_D = self.create_optimizers()
        self.global_step = 0
        self.g_losses, self.d_losses = {}, {}
        self.generated = None
        self.set_epoch_lr(1)
        self.ema = GeneratorEMA.from_options(opt, self.model.netG)  # None with --ema_decay 0
        self.evaluator = None  # set by train.py with --eval_dir

    # ------------------------------------------------------------ optimisation
    def create_optimizers(self):
        """Adam for G and D with TTUR (or ``--no_TTUR``) settings."""
        opt = self.opt
        if opt.no_TTUR:
            betas = (opt.beta1, opt.beta2)
        else:
            betas = (0.0, 0.9)
        lr_g, lr_d = split_lr(opt, opt.lr)
        g_params = [p for p in self.model.netG.parameters() if p.requires_grad]
        d_params = [p for p in self.model.netD.parameters() if p.requires_grad]
        return (torch.optim.Adam(g_params, lr=lr_g, betas=betas),
                torch.optim.Adam(d_params, lr=lr_d, betas=betas))

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

    def weighted_loss(self, losses):
        """``Σ model.loss_weights[k] · losses[k]``, via the model's single weighting function."""
        return self.model.weighted_sum(losses)

    def _autocast(self):
        if self.use_amp:
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def run_generator_one_step(self, data):
        """One generator update on batch ``data``; returns the raw losses (dict of floats)."""
        self.optimizer_G.zero_grad(set_to_none=True)
        with self._autocast():
            losses, generated = self.module(data, "generator")
            total = self.weighted_loss(losses)
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer_G)
        self.scaler.update()
        if self.ema is not None:
            self.ema.step(self.model.netG)
        self.g_losses = {k: float(v.detach()) for k, v in losses.items()}
        self.generated = generated.detach()
        return self.g_losses

    def run_discriminator_one_step(self, data):
        """One discriminator update on batch ``data``; returns the raw losses (dict of floats)."""
        self.optimizer_D.zero_grad(set_to_none=True)
        with self._autocast():
            losses = self.module(data, "discriminator")
            total = self.weighted_loss(losses)
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer_D)
        self.scaler.update()
        self.d_losses = {k: float(v.detach()) for k, v in losses.items()}
        return self.d_losses

    def train_step(self, data):
        """G update (every ``D_steps_per_G``-th call) then one D update; increments ``global_step``."""
        if self.global_step % self.opt.D_steps_per_G == 0:
            self.run_generator_one_step(data)
        self.run_discriminator_one_step(data)
        self.global_step += 1

    def latest_losses(self):
        """Raw losses of the latest G and D steps (dict name -> float)."""
        return {**self.g_losses, **self.d_losses}

    # ------------------------------------------------------------ EMA generator
    def attach_ema_data(self, dataset, batch_size):
        """Give the EMA generator the training data (``batch_size`` per pass) for its BatchNorm statistics."""
        if self.ema is not None:
            self.ema.attach_data(dataset, batch_size, self.generator_inputs, num_workers=int(self.opt.nThreads))

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
        notes = ckpt.load_networks(self.model, folder, which_epoch, log=log)
        if self.ema is not None:
            self.ema.reset_to(self.model.netG)
        return notes

    def save(self, which_epoch, epoch, epoch_iter, save_state=True):
        """Write ``{which_epoch}_net_{G,D}.pth`` and (``save_state``) ``{which_epoch}_train_state.pth``.

        With the EMA generator also ``{which_epoch}_net_G_ema.pth`` (prepared: BatchNorm
        statistics recomputed), which is also part of the training state.

        ``epoch`` (1-based) and ``epoch_iter`` (batches done in it) say where to resume.
        """
        folder = os.path.join(self.opt.checkpoints_dir, self.opt.name)
        os.makedirs(folder, exist_ok=True)
        netG, netD = ckpt.cpu_state_dict(self.model.netG), ckpt.cpu_state_dict(self.model.netD)
        if save_state:
            state = {
                "version": ckpt.TRAIN_STATE_VERSION,
                "netG": netG, "netD": netD,
                "optimizer_G": self.optimizer_G.state_dict(),
                "optimizer_D": self.optimizer_D.state_dict(),
                "scaler": self.scaler.state_dict(),
                "epoch": int(epoch), "epoch_iter": int(epoch_iter), "global_step": int(self.global_step),
                "rng": ckpt.get_rng_state(),
            }
            if self.ema is not None:
                state["ema"] = self.ema.state_dict()
            if self.evaluator is not None:
                state["evaluation"] = self.evaluator.state_dict()
            ckpt.save_train_state(ckpt.train_state_path(folder, which_epoch), state)
        ckpt.torch_save_atomic(netG, ckpt.network_path(folder, which_epoch, "G"))
        ckpt.torch_save_atomic(netD, ckpt.network_path(folder, which_epoch, "D"))
        if self.ema is not None:
            ckpt.torch_save_atomic(self.ema.network_state_dict(self.model.netG, self.opt.device),
                                   ckpt.network_path(folder, which_epoch, ckpt.EMA_NET))

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
        ckpt.set_rng_state(state["rng"])
        self.global_step = int(state["global_step"])
        self.set_epoch_lr(int(state["epoch"]))
        return int(state["epoch"]), int(state["epoch_iter"])

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
