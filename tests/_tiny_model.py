"""A tiny trained generator and its dataset, shared by the style-mixing and editor tests.

:func:`build_tiny_trained` writes 16 samples of 32x32 scenes (background, a
box, a disc; every class a random flat colour per image) with stand-in
mean-colour codes and a ``classes.txt``, saves the options (``opt.json``) and
trains a generator (ngf 4, crop 32) for 25 Adam steps on an L1
reconstruction loss, in float64 (then stored in float32), so that the
trained weights do not depend on the order of float32 sums: with float32,
a change in rounding alone (fused elementwise ops in ACE) moved the disc's
red response to a colour edit from 42 to 6 grey levels; in float64 the two
arithmetic orders give the same model to the printed digit. Because the class colours differ per image, the
generator has to read them from the codes; untrained, codes change almost
nothing (the style path starts near zero). Single-threaded: a few seconds.
"""
import contextlib
import os
import threading
import types

import numpy as np
import torch

from data.codes import save_codes
from data.class_names import write_class_names
from editing.style_mixing import normalise_codes
from tests._synthetic import mean_colour_codes
from util.io import save_image_atomic

SIZE, LABEL_NC, N_SAMPLES = 32, 3, 16
CLASS_NAMES = ("background", "box", "disc")


def tiny_sample(rng):
    """A 32x32 scene: background, a box, a disc; every class gets a random flat colour."""
    label = np.zeros((SIZE, SIZE), np.uint8)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    y0, x0 = rng.integers(2, 14, 2)
    label[y0:y0 + rng.integers(8, 16), x0:x0 + rng.integers(8, 16)] = 1
    cy, cx = rng.integers(8, 24, 2)
    r = rng.integers(4, 8)
    label[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = 2
    palette = rng.integers(0, 256, (LABEL_NC, 3))
    return palette[label].astype(np.uint8), label


def build_tiny_trained(root, name="tiny"):
    """Dataset under ``root/ds`` (images/, labels/, codes/, classes.txt), checkpoint ``root/checkpoints/<name>``.

    Returns a namespace with ``root``, ``ds``, ``ckpt`` (checkpoints_dir), ``name``,
    ``opt``, ``model`` (eval mode, CPU) and ``samples`` (each with ``image``,
    ``label``, ``codes`` and the three paths).
    """
    from models import create_model
    from models.checkpoints import network_path, save_network
    from options.test_options import TestOptions

    rng = np.random.default_rng(0)
    ds = root / "ds"
    samples = []
    for i in range(N_SAMPLES):
        image, label = tiny_sample(rng)
        codes = mean_colour_codes(image, label, LABEL_NC)
        paths = {f"{k}_path": str(ds / folder / f"s{i}.{ext}") for k, folder, ext in
                 (("image", "images", "png"), ("label", "labels", "png"), ("code", "codes", "npy"))}
        save_image_atomic(paths["image_path"], image)
        save_image_atomic(paths["label_path"], label)
        save_codes(paths["code_path"], codes)
        samples.append(types.SimpleNamespace(image=image, label=label, codes=codes, **paths))
    write_class_names(str(ds), CLASS_NAMES)

    ckpt = str(root / "checkpoints")
    options = TestOptions()
    opt = options.parse(["--name", name, "--checkpoints_dir", ckpt, "--label_nc", str(LABEL_NC),
                         "--crop_size", str(SIZE), "--ngf", "4", "--gpu_ids", "-1",
                         "--display_winsize", str(SIZE)])
    options.save_options(opt)  # opt.json: the CLIs reload the architecture from it
    torch.manual_seed(0)
    # trained in float64, then stored in float32: Adam turns float32 rounding noise in parameters whose true
    # gradient is zero (conv biases before BatchNorm) into steps of about lr, which made the trained model,
    # and the edit effects the tests measure, depend on the order of float32 sums (kernels, fused ops)
    model = create_model(opt).double()
    images = torch.stack([torch.from_numpy(s.image).permute(2, 0, 1).double() / 127.5 - 1 for s in samples])
    labels = torch.stack([torch.from_numpy(s.label.astype(np.int64))[None] for s in samples])
    codes = torch.stack([normalise_codes(s.codes, LABEL_NC) for s in samples]).double()
    optimiser = torch.optim.Adam(model.netG.parameters(), lr=2e-3, betas=(0.5, 0.999))
    model.train()
    for _ in range(25):
        idx = torch.from_numpy(rng.choice(N_SAMPLES, 4, replace=False))
        segmap = torch.zeros(4, LABEL_NC, SIZE, SIZE, dtype=torch.float64).scatter_(1, labels[idx], 1.0)
        loss = (model.netG(segmap, codes[idx]) - images[idx]).abs().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.float().eval()
    with torch.no_grad():  # spectral norm's weights recomputed without autograd history: the model can be deep-copied
        model.netG(segmap[:1].float(), codes[:1].float())
    save_network(model.netG, network_path(os.path.join(ckpt, name), "latest", "G"))
    return types.SimpleNamespace(root=root, ds=ds, ckpt=ckpt, name=name, opt=opt, model=model, samples=samples)


@contextlib.contextmanager
def running_editor(tiny, *extra_args):
    """The editor (``edit_app.build``) on ``tiny``'s model and data, on a free loopback port, in a thread."""
    import edit_app

    server = edit_app.build(["--name", tiny.name, "--checkpoints_dir", tiny.ckpt, "--data", str(tiny.ds),
                             "--gpu_ids", "-1", "--port", "0", *extra_args])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
