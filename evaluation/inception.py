"""The FID Inception network (pool3 features), assembled from a loaded ``pytorch-fid`` trunk.

``pytorch_fid.inception.InceptionV3`` builds its trunk by calling
``fid_inception_v3()``, which downloads the weights. This project never
downloads: :func:`evaluation.metrics.build_fid_inception` builds the same
trunk (``fid_inception_skeleton``: torchvision's Inception v3 with
pytorch-fid's TensorFlow-ported ``FIDInception*`` blocks), loads the local
weights file into it, and wraps it here. :class:`FIDInception` groups the
layers exactly as ``InceptionV3`` does for its last output block (index 3,
the 2048-D average pool) and computes the same forward pass, so its
activations equal pytorch-fid's (tested against ``InceptionV3`` itself).
"""
import torch.nn as nn
import torch.nn.functional as F

INCEPTION_SIZE = 299  # pytorch-fid resizes every input to 299x299 (bilinear)


class FIDInception(nn.Module):
    """pytorch-fid's ``InceptionV3([3])`` around an already loaded trunk, in eval mode, without gradients.

    ``forward(x)``: ``x`` ``(B, 3, H, W)`` in [0, 1] -> ``[features (B, 2048, 1, 1)]`` (a one-element
    list, as ``InceptionV3`` returns). The input is resized to 299x299 (bilinear, ``align_corners=False``)
    and scaled to [-1, 1], as ``InceptionV3(resize_input=True, normalize_input=True)`` does.
    """

    def __init__(self, trunk):
        super().__init__()
        # the four blocks of InceptionV3: up to the first max pool, the second max pool, the
        # Mixed_6e output (fed to the auxiliary classifier) and the final average pool (pool3)
        self.blocks = nn.ModuleList([
            nn.Sequential(trunk.Conv2d_1a_3x3, trunk.Conv2d_2a_3x3, trunk.Conv2d_2b_3x3,
                          nn.MaxPool2d(kernel_size=3, stride=2)),
            nn.Sequential(trunk.Conv2d_3b_1x1, trunk.Conv2d_4a_3x3, nn.MaxPool2d(kernel_size=3, stride=2)),
            nn.Sequential(trunk.Mixed_5b, trunk.Mixed_5c, trunk.Mixed_5d, trunk.Mixed_6a, trunk.Mixed_6b,
                          trunk.Mixed_6c, trunk.Mixed_6d, trunk.Mixed_6e),
            nn.Sequential(trunk.Mixed_7a, trunk.Mixed_7b, trunk.Mixed_7c, nn.AdaptiveAvgPool2d(output_size=(1, 1))),
        ])
        self.requires_grad_(False)
        self.eval()

    def forward(self, x):
        x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
        x = 2 * x - 1
        for block in self.blocks:
            x = block(x)
        return [x]
