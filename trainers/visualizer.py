"""Training logs: console, ``loss_log.txt``, tensorboardX scalars/images and an HTML sample page.

Only rank 0 creates a :class:`Visualizer` with ``enabled=True``; other ranks
get a disabled one whose methods do nothing.
"""
import os
import re
import time

from tqdm import tqdm

from util import html
from util.io import write_text_atomic
from util.images import tensor2im, tensor2label

_SAMPLE_RE = re.compile(r"^epoch(\d+)_iter(\d+)_(\w+)\.png$")
VISUAL_ORDER = ("input_label", "synthesized_image", "real_image")


def eval_settings(opt):
    """The metric conventions of evaluation during training in one line (SSIM variant, data range, size).

    The held-out images have the generator's output size: ``crop_size`` wide,
    the latent grid's rows times ``2**k`` high.
    """
    from evaluation.metrics import DEFAULT_SSIM, describe_settings
    from models.networks.generator import UPSAMPLING_LAYERS, latent_size

    sh, _ = latent_size(opt.crop_size, opt.num_upsampling_layers, opt.aspect_ratio)
    size = (sh * 2 ** UPSAMPLING_LAYERS[opt.num_upsampling_layers], int(opt.crop_size))
    return describe_settings(getattr(opt, "eval_ssim_variant", DEFAULT_SSIM), size)


class Visualizer:
    """Writes losses and samples under ``checkpoints_dir/name``.

    ``loss_log.txt`` is rewritten atomically with each appended line (it stays
    small: one line per ``--print_freq`` iterations). tensorboardX event files
    are written by tensorboardX itself.
    """

    def __init__(self, opt, enabled=True):
        self.opt = opt
        self.enabled = enabled
        self.folder = os.path.join(opt.checkpoints_dir, opt.name)
        self.log_name = os.path.join(self.folder, "loss_log.txt")
        self.web_dir = os.path.join(self.folder, "web")
        self.writer = None
        self.eval_settings_logged = False
        if not enabled:
            return
        os.makedirs(self.folder, exist_ok=True)
        if opt.tf_log:
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(log_dir=os.path.join(self.folder, "logs"))
        self._append(f"================ Training Loss ({time.strftime('%c')}) ================\n")

    def _append(self, text):
        old = ""
        if os.path.exists(self.log_name):
            with open(self.log_name, "r", encoding="utf-8") as f:
                old = f.read()
        write_text_atomic(self.log_name, old + text)

    def print_current_errors(self, epoch, i, errors, t_per_sample):
        """Print and log ``errors`` (dict name -> float) at ``epoch``, iteration ``i`` within the epoch."""
        if not self.enabled:
            return ""
        msg = f"(epoch: {epoch}, iters: {i}, time: {t_per_sample:.3f}) "
        msg += " ".join(f"{k}: {v:.3f}" for k, v in errors.items())
        tqdm.write(msg)
        self._append(msg + "\n")
        return msg

    def plot_current_errors(self, errors, step):
        """tensorboardX scalars ``loss/<name>`` at global ``step`` (with --tf_log)."""
        if self.writer is not None:
            for k, v in errors.items():
                self.writer.add_scalar(f"loss/{k}", v, step)

    def print_eval(self, epoch, i, step, values, count, improved=()):
        """Print and log one evaluation: ``values`` (name -> float or None) on ``count`` held-out images.

        ``improved`` lists what became the new best (e.g. ``["raw ssim"]``).
        """
        if not self.enabled:
            return ""
        if not self.eval_settings_logged:  # once per run (and per resumed run): the metric conventions
            self.eval_settings_logged = True
            settings = "(eval settings) " + eval_settings(self.opt)
            tqdm.write(settings)
            self._append(settings + "\n")
        msg = f"(eval, epoch: {epoch}, iters: {i}, step: {step}, images: {count}) "
        msg += " ".join(f"{k}: {'n/a' if v is None else format(v, '.4f')}" for k, v in values.items())
        if improved:
            msg += " [new best: " + ", ".join(improved) + "]"
        tqdm.write(msg)
        self._append(msg + "\n")
        return msg

    def plot_eval(self, values, step):
        """tensorboardX scalars ``eval/<name>`` at global ``step`` (with --tf_log)."""
        if self.writer is not None:
            for k, v in values.items():
                if v is not None:
                    self.writer.add_scalar(f"eval/{k}", v, step)

    def convert_visuals(self, visuals):
        """Map the first sample of each visual to an ``(H, W, 3)`` uint8 image."""
        out = {}
        for k, v in visuals.items():
            v = v[0] if v.dim() == 4 else v
            out[k] = tensor2label(v, self.opt.semantic_nc) if "label" in k else tensor2im(v)
        return out

    def display_current_results(self, visuals, epoch, step):
        """Write samples to tensorboard (``--tf_log``) and the HTML page (unless ``--no_html``).

        ``visuals``: dict name -> tensor (label ``(B,1,H,W)``, images ``(B,3,H,W)``).
        """
        if not self.enabled:
            return None
        images = self.convert_visuals(visuals)
        if self.writer is not None:
            for k, im in images.items():
                self.writer.add_image(k, im, step, dataformats="HWC")
        if self.opt.no_html:
            return None
        page = html.HTML(self.web_dir, f"Experiment name = {self.opt.name}", refresh=0)
        for k, im in images.items():
            page.save_image(f"epoch{epoch:03d}_iter{step:08d}_{k}.png", im)
        rows = {}
        for name in os.listdir(page.img_dir):
            m = _SAMPLE_RE.match(name)
            if m:
                rows.setdefault((int(m.group(1)), int(m.group(2))), []).append(m.group(3))
        for (ep, it) in sorted(rows, reverse=True):
            kinds = sorted(rows[(ep, it)], key=lambda k: VISUAL_ORDER.index(k) if k in VISUAL_ORDER else 99)
            page.add_header(f"epoch [{ep}] iteration [{it}]")
            names = [f"epoch{ep:03d}_iter{it:08d}_{k}.png" for k in kinds]
            page.add_images(names, kinds, names, width=self.opt.display_winsize)
        return page.save()

    def close(self):
        """Flush and close the tensorboard writer."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
