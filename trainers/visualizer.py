"""Training logs: console, ``loss_log.txt``, TensorBoard events and an HTML page with curves and samples.

Only rank 0 creates a :class:`Visualizer` with ``enabled=True``; other ranks
get a disabled one whose methods do nothing.

TensorBoard events (tensorboardX, on unless ``--no_tf_log``) go to
``checkpoints_dir/name/logs``: ``loss/<name>`` (raw losses), ``lr/G``,
``lr/D``, ``speed/step_time_s``, ``speed/images_per_s``, ``eval/<metric>``
and the sample images. ``loss_log.txt`` is appended to, one line per print
(with the global step) and per evaluation. The HTML page
(``web/index.html``, unless ``--no_html``) shows one small chart per loss
and per metric (``web/images/curves.svg``, drawn from the log's lines,
including those of the runs this one resumes), then the samples.
"""
import os
import re
import time

from tqdm import tqdm

from util import html
from util.images import tensor2im, tensor2label
from util.io import write_text_atomic
from util.svg_chart import small_multiples

_SAMPLE_RE = re.compile(r"^epoch(\d+)_iter(\d+)_(\w+)\.png$")
_LOSS_LINE = re.compile(r"^\(epoch: \d+, iters: \d+, step: (\d+), time: [^)]*\) (.*)$")
_EVAL_LINE = re.compile(r"^\(eval, epoch: \d+, iters: \d+, step: (\d+), images: \d+\) (.*?)(?: \[new best.*)?$")
_VALUE = re.compile(r"(\S+): (\S+)")
CURVES = "curves.svg"
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
    """Writes losses, curves and samples under ``checkpoints_dir/name`` (module docstring).

    ``loss_history`` / ``eval_history``: name -> ``[(step, value)]``, read
    back from ``loss_log.txt`` at start; a step at or before the last one
    (a resumed or restarted run) replaces the points from there on.
    """

    def __init__(self, opt, enabled=True):
        self.opt = opt
        self.enabled = enabled
        self.folder = os.path.join(opt.checkpoints_dir, opt.name)
        self.log_name = os.path.join(self.folder, "loss_log.txt")
        self.web_dir = os.path.join(self.folder, "web")
        self.writer = None
        self.eval_settings_logged = False
        self.loss_history, self.eval_history = {}, {}
        if not enabled:
            return
        os.makedirs(self.folder, exist_ok=True)
        if getattr(opt, "tf_log", True):
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(log_dir=os.path.join(self.folder, "logs"))
        self._read_history()
        self._append(f"================ Training Loss ({time.strftime('%c')}) ================\n")

    def _append(self, text):
        """Append ``text`` to ``loss_log.txt`` (one write; the file is never read back or rewritten)."""
        with open(self.log_name, "a", encoding="utf-8") as f:
            f.write(text)

    @staticmethod
    def _record(history, step, values):
        for name, value in values.items():
            points = history.setdefault(name, [])
            while points and points[-1][0] >= step:  # a resumed or restarted run: its points replace these
                points.pop()
            if value is not None:
                points.append((int(step), float(value)))

    def _read_history(self):
        """The curves of earlier lines of ``loss_log.txt`` (read once, at start)."""
        if not os.path.isfile(self.log_name):
            return
        with open(self.log_name, encoding="utf-8", errors="replace") as f:
            for line in f:
                for pattern, history in ((_LOSS_LINE, self.loss_history), (_EVAL_LINE, self.eval_history)):
                    m = pattern.match(line.rstrip("\n"))
                    if m:
                        values = {}
                        for k, v in _VALUE.findall(m.group(2)):
                            try:
                                values[k] = float(v)
                            except ValueError:
                                values[k] = None  # n/a
                        self._record(history, int(m.group(1)), values)

    def print_current_errors(self, epoch, i, errors, t_per_sample, step=None):
        """Print and log ``errors`` (dict name -> float) at ``epoch``, iteration ``i`` within the epoch.

        ``step`` (the global step) is written in the line and feeds the curves.
        """
        if not self.enabled:
            return ""
        where = f"epoch: {epoch}, iters: {i}, " + (f"step: {step}, " if step is not None else "")
        msg = f"({where}time: {t_per_sample:.3f}) " + " ".join(f"{k}: {v:.3f}" for k, v in errors.items())
        tqdm.write(msg)
        self._append(msg + "\n")
        if step is not None:
            self._record(self.loss_history, step, errors)
        return msg

    def plot_current_errors(self, errors, step):
        """TensorBoard scalars ``loss/<name>`` at global ``step``."""
        self.plot_scalars({f"loss/{k}": v for k, v in errors.items()}, step)

    def plot_scalars(self, values, step):
        """TensorBoard scalars ``values`` (tag -> float, e.g. ``lr/G``, ``speed/images_per_s``) at ``step``."""
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(k, v, step)

    def plot_speed(self, lr_g, lr_d, seconds_per_step, batch_size, step):
        """TensorBoard ``lr/G``, ``lr/D``, ``speed/step_time_s`` and ``speed/images_per_s`` at ``step``."""
        self.plot_scalars({"lr/G": lr_g, "lr/D": lr_d, "speed/step_time_s": seconds_per_step,
                           "speed/images_per_s": batch_size / seconds_per_step if seconds_per_step > 0 else 0.0},
                          step)

    def write_curves(self):
        """Write ``web/images/curves.svg`` (one chart per loss and per metric); returns its path or None."""
        if not self.enabled or self.opt.no_html:
            return None
        series = {**{f"loss {k}": v for k, v in self.loss_history.items()},
                  **{f"eval {k}": v for k, v in self.eval_history.items()}}
        svg = small_multiples(series, title=f"{self.opt.name}: raw losses and evaluation, by global step")
        if not svg:
            return None
        path = os.path.join(self.web_dir, "images", CURVES)
        write_text_atomic(path, svg)
        return path

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
        self._record(self.eval_history, step, values)
        self.write_curves()
        return msg

    def plot_eval(self, values, step):
        """TensorBoard scalars ``eval/<name>`` at global ``step``."""
        self.plot_scalars({f"eval/{k}": v for k, v in values.items() if v is not None}, step)

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
        if self.write_curves() is not None:
            from dominate.tags import img

            page.add_header("curves")
            with page.doc:
                img(src=f"images/{CURVES}", alt="loss and metric curves")
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
