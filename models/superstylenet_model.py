"""SuperStyleNetModel: generator, discriminator and losses behind one ``forward(data, mode)``."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from models import networks
from util.errors import InputError, OptionError

MODES = ("generator", "discriminator", "inference")


class SuperStyleNetModel(nn.Module):
    """The full model (SPEC §3–§4).

    Attributes: ``netG`` (SuperStyleNetGenerator); in training also ``netD``
    (MultiscaleDiscriminator), ``criterionGAN``, and ``criterionVGG`` unless
    ``--no_vgg_loss``; ``loss_weights`` maps each raw loss name to its weight.

    ``forward(data, mode)`` with the dataset's batch dict ``data`` (``label``
    (B, 1, H, W) int64 class indices with don't-care already mapped to
    label_nc, ``image`` (B, 3, H, W) in [-1, 1], ``codes`` (B, J, 512)
    normalised float, ``path`` list of str):

    * ``'generator'`` -> ``(losses, generated)``: raw losses ``GAN``,
      ``GAN_Feat`` (unless --no_ganFeat_loss), ``VGG`` (unless --no_vgg_loss);
      ``generated`` (B, 3, H, W);
    * ``'discriminator'`` -> raw losses ``D_Fake``, ``D_real`` (D sees the
      generated image detached);
    * ``'inference'`` -> generated image (B, 3, H, W), computed without grad.

    The model does not move itself; call ``model.to(device)``. ``forward``
    moves the batch to the device of the parameters.

    Args:
        opt: options namespace (:mod:`options`; ``options.build_options`` outside the CLI).
        vgg: optional prebuilt VGG feature extractor (tests pass
            ``VGG19Features(vgg19_conv_stack())``, untrained); by default it is loaded from
            ``--vgg_path`` or torch's cache.
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
        self.netG = networks.SuperStyleNetGenerator(opt)
        self.loss_weights = {}
        if self.is_train:
            self.netD = networks.MultiscaleDiscriminator(opt)
            self.criterionGAN = networks.GANLoss(opt.gan_mode)
            self.loss_weights.update({"GAN": 1.0, "D_Fake": 1.0, "D_real": 1.0})
            if not opt.no_ganFeat_loss:
                self.loss_weights["GAN_Feat"] = float(opt.lambda_feat)
            if not opt.no_vgg_loss:
                if vgg is None:
                    vgg = networks.load_vgg19(opt.vgg_path)
                self.criterionVGG = networks.VGGLoss(vgg)
                self.loss_weights["VGG"] = float(opt.lambda_vgg)

    # ------------------------------------------------------------------ inputs
    def device(self):
        """Device of the model's parameters."""
        return next(self.netG.parameters()).device

    def preprocess_input(self, data):
        """Batch dict -> (one-hot segmap (B, J, H, W), image (B, 3, H, W) or None, codes (B, J, 512)).

        Tensors are moved to the parameters' device and cast to their dtype
        (float32 normally; ``model.double()`` gives a float64 model, which the
        equivalence tests use). Raises InputError (naming the batch's files)
        for labels outside [0, J) or misshaped codes.
        """
        device = self.device()
        dtype = next(self.netG.parameters()).dtype
        paths = data.get("path", [])
        label = data["label"].to(device, non_blocking=True).long()
        if label.dim() == 3:
            label = label.unsqueeze(1)
        if label.dim() != 4 or label.shape[1] != 1:
            raise InputError(f"{paths}: label batch must be (B, 1, H, W); got {tuple(data['label'].shape)}")
        lo, hi = int(label.min()), int(label.max())
        if lo < 0 or hi >= self.label_nc:
            hint = (" (255 is the don't-care label: use --contain_dontcare_label)"
                    if hi == int(self.opt.label_nc) and not self.opt.contain_dontcare_label
                    else "")
            raise InputError(f"{paths}: label values must lie in [0, {self.label_nc - 1}]; "
                             f"found range [{lo}, {hi}]{hint}")
        b, _, h, w = label.shape
        segmap = torch.zeros(b, self.label_nc, h, w, device=device, dtype=dtype)
        segmap.scatter_(1, label, 1.0)
        codes = data["codes"].to(device, dtype, non_blocking=True)
        if tuple(codes.shape) != (b, self.label_nc, 512):
            raise InputError(f"{paths}: codes batch must be {(b, self.label_nc, 512)}; got {tuple(codes.shape)}")
        image = data.get("image")
        if image is not None:
            image = image.to(device, dtype, non_blocking=True)
        return segmap, image, codes

    # ------------------------------------------------------------------ forward
    def forward(self, data, mode):
        if mode not in MODES:
            raise OptionError(f"SuperStyleNetModel.forward: unknown mode {mode!r}; choose from {MODES}")
        segmap, image, codes = self.preprocess_input(data)
        if mode == "inference":
            with torch.no_grad():
                return self.netG(segmap, codes)
        if not self.is_train:
            raise OptionError(f"mode {mode!r} needs a model built with isTrain=True")
        if image is None:
            raise InputError(f"{data.get('path', [])}: mode {mode!r} needs the real image in the batch")
        if mode == "generator":
            return self.generator_losses(segmap, image, codes)
        return self.discriminator_losses(segmap, image, codes)

    def discriminate(self, segmap, fake, real):
        """Run D once on [fake; real] (concatenated with the segmap); returns (pred_fake, pred_real)."""
        fake_and_real = torch.cat([torch.cat([segmap, fake], 1), torch.cat([segmap, real], 1)], 0)
        pred = self.netD(fake_and_real)
        b = fake.shape[0]
        pred_fake = [[f[:b] for f in scale] for scale in pred]
        pred_real = [[f[b:] for f in scale] for scale in pred]
        return pred_fake, pred_real

    def generator_losses(self, segmap, image, codes):
        """Raw G losses and the generated image."""
        fake = self.netG(segmap, codes)
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
            fake = self.netG(segmap, codes)
        fake = fake.detach().requires_grad_()
        pred_fake, pred_real = self.discriminate(segmap, fake, image)
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
