"""SuperStyleNetModel: generator, discriminator and losses behind one ``forward(data, mode)``."""
import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from models import networks
from util.errors import InputError, OptionError
from util.images import normalise_image

MODES = ("generator", "discriminator", "inference")


class SuperStyleNetModel(nn.Module):
    """Generator, discriminator and losses behind one ``forward(data, mode)`` (docs/method.md §4–§8).

    Args:
        opt: options namespace (:mod:`options`; ``options.build_options`` outside the CLI).
        vgg: prebuilt VGG feature extractor, or None to load ``--vgg_path`` / torch's
            cache (tests pass ``VGG19Features(vgg19_conv_stack())``, untrained).

    ``data`` is the dataset's batch dict: ``label`` (B, 1, H, W) int64 in [0, J),
    ``image`` (B, 3, H, W) in [-1, 1], ``codes`` (B, J, 512) normalised,
    ``path`` list of str. ``forward`` moves it to the parameters' device,
    dtype and memory format; the model never moves itself.

    * ``'generator'`` -> ``(raw losses, generated (B, 3, H, W))``: ``GAN``,
      ``GAN_Feat`` (unless --no_ganFeat_loss), ``VGG`` (unless --no_vgg_loss);
    * ``'discriminator'`` -> raw losses ``D_Fake``, ``D_real``;
    * ``'inference'`` -> generated image (B, 3, H, W), without grad.

    Attributes: ``netG``; in training ``netD``, ``criterionGAN``, ``criterionVGG``
    and ``loss_weights`` (raw loss name -> weight, applied by :meth:`weighted_sum`).
    Raises :class:`InputError` (naming the batch's files) for labels outside
    [0, J), checked on the CPU, or misshaped codes; :class:`OptionError` for an
    unknown mode or a training mode on a model built for testing.
    """

    @staticmethod
    def modify_commandline_options(parser, is_train):
        """Register the flags of the model's networks and losses."""
        return networks.modify_commandline_options(parser, is_train)

    def __init__(self, opt, vgg=None):
        super().__init__()
        self.opt = opt
        self.label_nc = opt.semantic_nc
        self.is_train = bool(opt.isTrain)
        self.netG = networks.SuperStyleNetGenerator.from_options(opt)
        self.loss_weights = {}
        if self.is_train:
            self.netD = networks.MultiscaleDiscriminator.from_options(opt)
            self.criterionGAN = networks.GANLoss(opt.gan_mode)
            self.loss_weights.update({"GAN": 1.0, "D_Fake": 1.0, "D_real": 1.0})
            if not opt.no_ganFeat_loss:
                self.loss_weights["GAN_Feat"] = float(opt.lambda_feat)
            if not opt.no_vgg_loss:
                if vgg is None:
                    vgg = networks.load_vgg19(opt.vgg_path)
                self.criterionVGG = networks.VGGLoss(vgg)
                self.loss_weights["VGG"] = float(opt.lambda_vgg)
        self.memory_format = torch.contiguous_format
        self._wrappers = {}
        # set by models.networks.compile_support.compile_model: spectral norm's power iteration runs
        # eagerly before each call of G or D, outside the compiled graphs
        self.spectral_norm_prestep = False

    # ------------------------------------------------------------ run settings
    def set_parallel_wrappers(self, netG=None, netD=None):
        """Use ``netG`` for the generator's forward in ``'generator'`` mode and ``netD`` for D in
        ``'discriminator'`` mode (e.g. ``DistributedDataParallel(self.netG)``).

        The wrappers must wrap ``self.netG`` / ``self.netD`` themselves. Every
        other call (G without grad in the D step, D with frozen parameters in
        the G step, inference) uses the modules directly, so a DDP wrapper only
        ever sees calls whose backward gives every parameter a gradient (no
        ``find_unused_parameters``). ``None`` removes a wrapper.
        """
        self._wrappers = {k: v for k, v in (("netG", netG), ("netD", netD)) if v is not None}

    def set_memory_format(self, memory_format):
        """Store the convolution weights of G, D (and VGG) in ``memory_format`` (e.g. ``torch.channels_last``)
        and feed ``forward``'s image tensors in it. Returns ``self``.

        Other 4-D parameters (GSAS's (1, 2, 1, 1) coefficient, read by
        indexing) stay contiguous: their gradients arrive contiguous, and
        DistributedDataParallel wants a gradient's strides to equal its
        parameter's (otherwise it warns and copies).
        """
        self.memory_format = memory_format
        self.to(memory_format=memory_format)
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.modules.conv._ConvNd):
                    continue
                for p in module.parameters(recurse=False):
                    if p.dim() == 4:  # clone: also the strides of size-1 dimensions become the contiguous ones
                        p.data = p.data.clone(memory_format=torch.contiguous_format)
        return self

    # ------------------------------------------------------------------ inputs
    def device(self):
        """Device of the model's parameters."""
        return next(self.netG.parameters()).device

    def check_label_range(self, label, paths):
        """Raise InputError (naming ``paths``) unless every value of the CPU tensor ``label`` is in [0, J).

        Only CPU tensors are checked: on an accelerator the check would make the
        host wait for the device in every step.
        """
        if label.device.type != "cpu" or label.numel() == 0:
            return
        lo, hi = int(label.min()), int(label.max())
        if lo < 0 or hi >= self.label_nc:
            hint = (" (255 is the don't-care label: use --contain_dontcare_label)"
                    if hi == int(self.opt.label_nc) and not self.opt.contain_dontcare_label
                    else "")
            raise InputError(f"{paths}: label values must lie in [0, {self.label_nc - 1}]; "
                             f"found range [{lo}, {hi}]{hint}")

    def preprocess_input(self, data):
        """Batch dict -> (one-hot segmap (B, J, H, W), image (B, 3, H, W) or None, codes (B, J, 512)).

        Tensors are moved to the parameters' device and memory format and cast
        to their dtype (float32 normally; ``model.double()`` gives a float64
        model, which the equivalence tests use). A uint8 ``image`` (levels
        0..255) is normalised on the device exactly as the loader's float path
        (:func:`util.images.normalise_image`). Raises InputError (naming the
        batch's files) for labels outside [0, J) (checked on the CPU, before the
        transfer) or misshaped codes.
        """
        device = self.device()
        dtype = next(self.netG.parameters()).dtype
        paths = data.get("path", [])
        label = data["label"]
        if label.dim() == 3:
            label = label.unsqueeze(1)
        if label.dim() != 4 or label.shape[1] != 1:
            raise InputError(f"{paths}: label batch must be (B, 1, H, W); got {tuple(data['label'].shape)}")
        self.check_label_range(label, paths)
        label = label.to(device, non_blocking=True).long()
        b, _, h, w = label.shape
        segmap = torch.zeros(b, self.label_nc, h, w, device=device, dtype=dtype)
        segmap.scatter_(1, label, 1.0)
        segmap = segmap.contiguous(memory_format=self.memory_format)
        codes = data["codes"].to(device, dtype, non_blocking=True)
        if tuple(codes.shape) != (b, self.label_nc, 512):
            raise InputError(f"{paths}: codes batch must be {(b, self.label_nc, 512)}; got {tuple(codes.shape)}")
        image = data.get("image")
        if image is not None and image.dtype == torch.uint8:  # levels from the loader: normalised here
            image = normalise_image(image.to(device, non_blocking=True), dtype)
        if image is not None:
            image = image.to(device, dtype, non_blocking=True).contiguous(memory_format=self.memory_format)
        return segmap, image, codes

    # ------------------------------------------------------------------ forward
    def forward(self, data, mode):
        if mode not in MODES:
            raise OptionError(f"SuperStyleNetModel.forward: unknown mode {mode!r}; choose from {MODES}")
        segmap, image, codes = self.preprocess_input(data)
        if mode == "inference":
            with torch.no_grad():
                return self.call_network("netG", segmap, codes)
        if not self.is_train:
            raise OptionError(f"mode {mode!r} needs a model built with isTrain=True")
        if image is None:
            raise InputError(f"{data.get('path', [])}: mode {mode!r} needs the real image in the batch")
        if mode == "generator":
            return self.generator_losses(segmap, image, codes)
        return self.discriminator_losses(segmap, image, codes)

    def call_network(self, name, *inputs, wrapper=None):
        """Call ``self.<name>`` (or ``wrapper``, e.g. its DDP wrapper) on ``inputs``.

        With ``spectral_norm_prestep`` (``--compile``) spectral norm's power
        iteration of that network runs first, eagerly
        (:func:`models.networks.compile_support.update_spectral_norms`).
        """
        net = getattr(self, name)
        if self.spectral_norm_prestep:
            networks.update_spectral_norms(net)
        return (wrapper or net)(*inputs)

    def discriminate(self, segmap, fake, real, netD=None):
        """Run D (``netD``, default ``self.netD``) once on [fake; real], each concatenated with the
        segmap; returns (pred_fake, pred_real)."""
        fake_and_real = torch.cat([torch.cat([segmap, fake], 1), torch.cat([segmap, real], 1)], 0)
        pred = self.call_network("netD", fake_and_real, wrapper=netD)
        b = fake.shape[0]
        pred_fake = [[f[:b] for f in scale] for scale in pred]
        pred_real = [[f[b:] for f in scale] for scale in pred]
        return pred_fake, pred_real

    def generator_losses(self, segmap, image, codes):
        """Raw G losses and the generated image (D's parameters get no gradient)."""
        fake = self.call_network("netG", segmap, codes, wrapper=self._wrappers.get("netG"))
        with frozen_parameters(self.netD):
            pred_fake, pred_real = self.discriminate(segmap, fake, image)
        losses = {"GAN": self.criterionGAN(pred_fake, True, for_discriminator=False)}
        if "GAN_Feat" in self.loss_weights:
            losses["GAN_Feat"] = networks.feature_matching_loss(pred_fake, pred_real)
        if "VGG" in self.loss_weights:
            losses["VGG"] = self.criterionVGG(fake, image)
        return losses, fake

    def discriminator_losses(self, segmap, image, codes):
        """Raw D losses; the generated image is computed without grad."""
        with torch.no_grad():
            fake = self.call_network("netG", segmap, codes)
        pred_fake, pred_real = self.discriminate(segmap, fake, image, self._wrappers.get("netD"))
        return {
            "D_Fake": self.criterionGAN(pred_fake, False, for_discriminator=True),
            "D_real": self.criterionGAN(pred_real, True, for_discriminator=True),
        }

    def weighted_sum(self, losses):
        """The one place where raw losses are weighted: ``Σ loss_weights[k] · losses[k]``.

        ``losses``: dict name -> scalar tensor, as returned by :meth:`forward`.
        Raises KeyError for a loss without a weight.
        """
        missing = [k for k in losses if k not in self.loss_weights]
        if missing:
            raise KeyError(f"model.loss_weights has no weight for losses {missing}")
        return sum(self.loss_weights[k] * v for k, v in losses.items())


@contextlib.contextmanager
def frozen_parameters(module):
    """Within the block, the parameters of ``module`` that require grad do not.

    Autograd records no weight-gradient work for ops run inside the block;
    gradients still flow through the module to its inputs. Restored on exit.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
