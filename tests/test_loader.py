"""The training loader's speed features: worker defaults, persistent workers, reduced JPEG decode, uint8 batches.

* uint8 batches normalised by the model (``util.images.normalise_image``)
  equal the float32 batches of the host path bit for bit, for every level and
  for real items, also in a float64 model;
* persistent workers see ``set_epoch`` (the epoch lives in shared memory):
  batches of two epochs with one worker equal those without workers;
* a JPEG is decoded at a DCT scale only when the resize shrinks it by 2 or
  more, and the photo then differs from the full decode by what one
  antialiased downscale differs from another (bounds below);
* a photo decoded at a reduced scale is resampled only inside its crop
  window, within one level of resampling the whole and cropping; a photo
  decoded at full size, or given as a PIL image, takes the exact path;
* ``--nThreads -1`` resolves from the cores available per process.
"""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from data.custom_dataset import CustomDataset
from data.image_io import read_rgb, read_rgb_image_at_least
from data.loader import PREFETCH_BATCHES, collate, create_dataloader, default_workers
from data.transforms import transform_image, transform_image_uint8
from options import build_options
from tests._synthetic import build_synthetic_dataset
from util.images import normalise_image, tensor2im


def _literal_float_image(image, opt, params):
    """The host float path written out: PIL bicubic resize, crop, flip, ``float32 / 255``, ``* 2 - 1``."""
    pil = Image.fromarray(image)
    if tuple(params["scaled_size"]) != pil.size:
        pil = pil.resize(tuple(params["scaled_size"]), Image.BICUBIC)
    x, y = params["crop_pos"]
    pil = pil.crop((x, y, x + opt.crop_size, y + opt.crop_size))
    if params["flip"]:
        pil = pil.transpose(Image.FLIP_LEFT_RIGHT)
    arr = np.asarray(pil, dtype=np.float32) / 255.0
    return torch.from_numpy(arr.transpose(2, 0, 1).copy()) * 2.0 - 1.0


def _read_rgb_at_least(path, size_wh):
    """:func:`read_rgb_image_at_least` with the photo as an ``(H, W, 3)`` array."""
    image, stored = read_rgb_image_at_least(path, size_wh)
    return np.asarray(image), stored


def _opt(dirs, **kw):
    kw = {"label_nc": 4, "crop_size": 32, "load_size": 36, "gpu_ids": "-1", "nThreads": 0, "batchSize": 2,
          "label_dir": dirs[1], "image_dir": dirs[0], "instance_dir": dirs[2], **kw}
    return build_options(True, **kw)


@pytest.fixture()
def dirs(tmp_path):
    return build_synthetic_dataset(str(tmp_path / "data"), n=4, size=32, label_nc=4)


def test_every_level_normalises_to_the_host_float32_value():
    levels = np.arange(256, dtype=np.uint8)
    host = torch.from_numpy(levels.astype(np.float32) / 255.0) * 2.0 - 1.0
    assert torch.equal(normalise_image(torch.from_numpy(levels)), host)
    assert torch.equal(normalise_image(torch.from_numpy(levels), torch.float64), host.double())
    # the result pages read uint8 batches back as the levels themselves
    batch = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 3, 4, 5), dtype=np.uint8))
    assert np.array_equal(tensor2im(batch), tensor2im(normalise_image(batch)))
    assert np.array_equal(tensor2im(batch), np.moveaxis(batch.numpy(), 1, -1))


def test_uint8_items_normalised_by_the_model_equal_the_float_items(dirs):
    from models import create_model

    opt = _opt(dirs, no_vgg_loss=True, ngf=4, ndf=4, num_D=1, n_layers_D=1)
    floats, levels = CustomDataset(opt), CustomDataset(opt)
    levels.uint8_images = True
    for epoch in (0, 3):
        floats.set_epoch(epoch)
        levels.set_epoch(epoch)
        for i in range(len(floats)):
            a, b = floats[i], levels[i]
            assert b["image"].dtype == torch.uint8 and a["image"].dtype == torch.float32
            assert torch.equal(normalise_image(b["image"]), a["image"])
            rng = np.random.default_rng([int(opt.seed) & 0xFFFFFFFF, epoch, i])
            from data.transforms import load_label

            _, params = load_label(floats.label_paths[i], opt, rng)
            assert torch.equal(a["image"], _literal_float_image(read_rgb(floats.image_paths[i]), opt, params))
    model = create_model(opt).double()
    fb, lb = collate([floats[i] for i in range(2)]), collate([levels[i] for i in range(2)])
    for got, ref in zip(model.preprocess_input(lb), model.preprocess_input(fb)):
        assert got.dtype == torch.float64 and torch.equal(got, ref)


def test_persistent_workers_follow_set_epoch(dirs):
    def epochs(workers):
        loader = create_dataloader(_opt(dirs, nThreads=workers))
        assert loader.persistent_workers == (workers > 0)
        out = []
        for epoch in (1, 2):
            loader.sampler.set_epoch(epoch)
            loader.dataset.set_epoch(epoch)
            out.append([(b["image"].clone(), b["label"].clone()) for b in loader])
        return out

    ref, got = epochs(0), epochs(1)
    assert len(ref[0]) == 2
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(ref[0], ref[1]))  # the epochs do differ
    for e in range(2):
        for (ri, rl), (gi, gl) in zip(ref[e], got[e]):
            assert torch.equal(gi, ri) and torch.equal(gl, rl)


def _smooth_jpeg(path, size, seed=0):
    rng = np.random.default_rng(seed)
    small = (rng.random((6, 6, 3)) * 255).astype(np.uint8)
    Image.fromarray(small).resize((size, size), Image.BICUBIC).save(path, quality=95)


def test_jpeg_is_decoded_at_a_dct_scale_only_for_a_reduction_of_two_or_more(tmp_path):
    path = str(tmp_path / "p.jpg")
    _smooth_jpeg(path, 256)
    full = read_rgb(path)
    assert full.shape == (256, 256, 3)
    for wanted, decoded in (((200, 200), 256), ((129, 100), 256), ((128, 128), 128), ((100, 60), 128),
                            ((40, 40), 64), ((20, 20), 32), ((2, 2), 32)):
        image, stored = _read_rgb_at_least(path, wanted)
        assert stored == (256, 256) and image.shape == (decoded, decoded, 3), wanted
    assert np.array_equal(_read_rgb_at_least(path, None)[0], full)
    png = str(tmp_path / "p.png")
    Image.fromarray(full).save(png)
    assert np.array_equal(_read_rgb_at_least(png, (32, 32))[0], full)  # only JPEGs


def test_reduced_decode_changes_the_photo_by_at_most_a_resampling_difference(tmp_path):
    """A 256² JPEG resized to 72² from its 128² DCT decode against the full decode.

    Both are antialiased downscales of the same picture; on a smooth photo
    they agree to a few levels (mean < 1 level, max <= 6 of 255 here; the
    CelebAMask-HQ-shaped data of benchmarks/bench_loader.py measures the same
    figures at 1024² -> 286²).
    """
    path = str(tmp_path / "p.jpg")
    _smooth_jpeg(path, 256, seed=3)
    opt = build_options(True, label_nc=2, crop_size=64, load_size=72, gpu_ids="-1")
    params = {"scaled_size": (72, 72), "crop_pos": (3, 5), "flip": True}
    reduced, _ = _read_rgb_at_least(path, params["scaled_size"])
    assert reduced.shape == (128, 128, 3)
    a = transform_image_uint8(reduced, opt, params).numpy().astype(np.int64)
    b = transform_image_uint8(read_rgb(path), opt, params).numpy().astype(np.int64)
    diff = np.abs(a - b)
    assert a.shape == (3, 64, 64) and diff.mean() < 1.0 and diff.max() <= 6
    assert torch.equal(transform_image(reduced, opt, params), normalise_image(torch.from_numpy(a.astype(np.uint8))))


def test_window_only_resize_is_within_one_level_of_resize_then_crop():
    """Pillow places the window's taps from a single-precision box: positions move by about
    ``2**-24 * 128`` pixels, the weights by ~1e-5, each sum by < 0.01 of a level before rounding,
    so a value changes by at most one level, and only where it lies that close to a rounding edge."""
    rng = np.random.default_rng(5)
    image = (rng.random((128, 128, 3)) * 255).astype(np.uint8)  # noise: every value is a fresh test
    opt = build_options(True, label_nc=2, crop_size=64, load_size=72, gpu_ids="-1")
    changed = total = 0
    for x, y, flip in ((0, 0, False), (3, 5, True), (8, 8, False), (7, 1, True)):
        params = {"scaled_size": (72, 72), "crop_pos": (x, y), "flip": flip}
        whole = transform_image_uint8(image, opt, params).numpy().astype(np.int64)
        assert torch.equal(transform_image_uint8(Image.fromarray(image), opt, params), torch.from_numpy(whole).byte())
        window = transform_image_uint8(image, opt, params, window_only=True).numpy().astype(np.int64)
        assert window.shape == whole.shape and np.abs(window - whole).max() <= 1
        changed, total = changed + int((window != whole).sum()), total + whole.size
    assert changed <= 0.01 * total
    no_crop = build_options(True, label_nc=2, crop_size=64, preprocess_mode="scale_width", gpu_ids="-1")
    params = {"scaled_size": (64, 64), "crop_pos": (0, 0), "flip": False}
    assert torch.equal(transform_image_uint8(image, no_crop, params, window_only=True),
                       transform_image_uint8(image, no_crop, params))


def test_only_photos_decoded_at_a_reduced_scale_take_the_window_path(tmp_path):
    dirs = [str(tmp_path / k) for k in ("images", "labels", "codes")]
    build_synthetic_dataset(str(tmp_path / "png"), n=1, size=64, label_nc=2)
    for d in dirs:
        os.makedirs(d)
    _smooth_jpeg(os.path.join(dirs[0], "img0.jpg"), 256, seed=1)
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(os.path.join(dirs[1], "img0.png"))
    os.replace(str(tmp_path / "png" / "codes" / "img0.npy"), os.path.join(dirs[2], "img0.npy"))
    opt = _opt(dirs, label_nc=2, crop_size=32, load_size=40)
    dataset = CustomDataset(opt)
    dataset.uint8_images = True
    from data.transforms import load_label

    for epoch in (0, 1):
        dataset.set_epoch(epoch)
        _, params = load_label(dataset.label_paths[0], opt, np.random.default_rng([int(opt.seed), epoch, 0]))
        reduced, _ = _read_rgb_at_least(dataset.image_paths[0], params["scaled_size"])
        assert reduced.shape == (64, 64, 3)
        assert torch.equal(dataset[0]["image"], transform_image_uint8(reduced, opt, params, window_only=True))


def test_default_workers_share_the_available_cores():
    assert default_workers(1, on_gpu=False, cores=64) == 0
    assert default_workers(1, on_gpu=True, cores=16) == 15
    assert default_workers(8, on_gpu=True, cores=64) == 7
    assert default_workers(8, on_gpu=True, cores=16) == 1
    assert default_workers(4, on_gpu=True, cores=2) == 1
    assert default_workers(1, on_gpu=True, cores=128) == 16
    assert default_workers(1, on_gpu=True) == min(16, max(1, len(os.sched_getaffinity(0)) - 1))


def test_nthreads_default_resolves_in_the_loader(dirs):
    assert _opt(dirs, nThreads=-1).nThreads == -1 == build_options(True, label_nc=2, gpu_ids="-1").nThreads
    assert create_dataloader(_opt(dirs, nThreads=-1)).num_workers == 0  # CPU: the model's threads use the cores
    loader = create_dataloader(_opt(dirs, nThreads=2))
    assert loader.num_workers == 2 and loader.persistent_workers and loader.prefetch_factor == PREFETCH_BATCHES
