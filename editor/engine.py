"""The editor's engine: the model, the samples, and everything cached between requests.

What does not change while people edit is computed once and kept:

* the model (built once, eval mode, on ``opt.device``);
* each sample's codes (read once from its code file), its preprocessed label
  map and its one-hot segmap (built by the model's own ``preprocess_input``);
* per label layout, everything the generator computes from the label map
  alone (:class:`editor.renderer.LayoutRenderer`);
* thumbnails, colourised label maps, and the codes of uploaded style images
  (SPSE runs once per distinct upload).

Renders run one at a time (one lock): they share the model, torch's RNG and
the renderer's caches. Everything else may run concurrently.
"""
import collections
import hashlib
import io
import threading
import types

import numpy as np
import torch
from PIL import Image

from data.class_names import find_class_names, read_class_names
from data.custom_dataset import CustomDataset
from data.image_io import check_aspect_ratio, check_label_values, read_label, read_rgb, stem
from editing.style_mixing import StyleMixer, normalise_codes
from editor.renderer import LayoutRenderer
from editor.uploads import PixelBudget, header_pixels, read_upload, upload_files
from models.inference import load_inference_model
from spse.extractor import extract_style_codes
from util.errors import InputError, OptionError
from util.images import label_colormap, tensor2im, tensor2label

THUMB_SIZE = 96


def encode_png(image):
    """``(H, W[, 3])`` uint8 array or PIL image -> PNG bytes."""
    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


class _LRU:
    """A small thread-safe least-recently-used cache: ``get(key, make)``."""

    def __init__(self, maxsize):
        self.maxsize = maxsize
        self._data = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key, make):
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        value = make()  # outside the lock: may be slow; a concurrent duplicate is harmless
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while self.maxsize is not None and len(self._data) > self.maxsize:
                self._data.popitem(last=False)
        return value

    def __len__(self):
        with self._lock:
            return len(self._data)


def class_name_list(names, label_nc):
    """``label_nc`` display names: those of ``names`` (a classes.txt), ``class_<j>`` for the rest."""
    names = list(names or ())[:label_nc]
    return names + [f"class_{j}" for j in range(len(names), label_nc)]


class EditorEngine:
    """Model, samples and caches behind the editor's web server.

    Args:
        model: a ``SuperStyleNetModel`` with loaded generator weights (put in eval mode).
        opt: its options (``label_nc``, ``semantic_nc``, ``contain_dontcare_label``,
            ``seed``, ``name`` and the test-time preprocessing flags).
        samples: list of ``(name, label_path, image_path or None, code_path)``.
        class_names: names of the label classes (index = label value) or None.
        spse_size: SPSE working resolution for uploads (512 as in the method).
        max_layouts: label layouts whose generator constants stay cached.
        max_upload_pixels: pixels that uploads of all sessions may decode at once
            (:class:`editor.uploads.PixelBudget`).

    A *label* here is a preprocessed ``(1, H, W)`` int64 map (don't care is
    ``label_nc``), the sample's own (:meth:`sample_label`) or a painted copy of it;
    the methods that take ``label=None`` use the sample's own.
    """

    def __init__(self, model, opt, samples, class_names=None, spse_size=512, max_layouts=2,
                 max_upload_pixels=64e6):
        if not samples:
            raise InputError("the editor needs at least one sample")
        self.model = model.eval()
        self.opt = opt
        self.samples = [types.SimpleNamespace(name=n, label_path=lp, image_path=ip, code_path=cp)
                        for n, lp, ip, cp in samples]
        self.label_nc = int(opt.label_nc)
        self.class_names = class_name_list(class_names, self.label_nc)
        self.spse_size = int(spse_size)
        self.upload_pixels = PixelBudget(max_upload_pixels)
        self.mixer = StyleMixer(model, opt, seed=opt.seed)  # test-time label preprocessing, code loading
        self.renderer = LayoutRenderer(model.netG, seed=opt.seed, max_layouts=max_layouts)
        self._render_lock = threading.Lock()
        self._codes = _LRU(None)
        self._labels = _LRU(64)
        self._segmaps = _LRU(8)
        self._pngs = _LRU(4096)
        self._uploads = _LRU(64)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_options(cls, opt, model=None):
        """Engine for ``opt`` (:class:`options.editor_options.EditorOptions`): samples from
        ``--label_dir``/``--image_dir``/``--instance_dir`` (paired as the custom dataset pairs them), class
        names from ``--class_names`` or the first ``classes.txt`` next to the labels, the model from
        ``checkpoints/<name>/<which_epoch>_net_G.pth`` unless ``model`` is given."""
        dataset = CustomDataset(opt)
        samples = [(stem(ip or lp), lp, ip, cp)  # without --image_dir (testing) there are no photographs
                   for lp, ip, cp in zip(dataset.label_paths, dataset.image_paths, dataset.code_paths)]
        names_path = opt.class_names or find_class_names(dataset.label_paths[0])
        names = read_class_names(names_path) if names_path else None
        if model is None:
            model = load_inference_model(opt)
        return cls(model.to(opt.device), opt, samples, names, spse_size=opt.spse_size,
                   max_layouts=opt.max_layouts, max_upload_pixels=opt.max_upload_mpix * 1e6)

    # ------------------------------------------------------------------ samples
    def check_index(self, index):
        """``index`` as an int; raises :class:`OptionError` when it names no sample."""
        try:
            index = int(index)
        except (TypeError, ValueError, OverflowError) as e:
            raise OptionError(f"sample {index!r}: expected an index") from e
        if not 0 <= index < len(self.samples):
            raise OptionError(f"sample {index} does not exist (there are {len(self.samples)})")
        return index

    def sample_label(self, index):
        """Preprocessed ``(1, H, W)`` int64 label map of sample ``index`` (shared: do not modify; don't care =
        label_nc)."""
        index = self.check_index(index)
        return self._labels.get(index, lambda: self.mixer.load_label(self.samples[index].label_path))

    def sample_codes(self, index):
        """Raw ``(label_nc, 512)`` float32 codes of sample ``index`` (read-only)."""
        index = self.check_index(index)

        def load():
            codes = self.mixer.load_codes(self.samples[index].code_path)
            codes.setflags(write=False)
            return codes

        return self._codes.get(index, load)

    def present_classes(self, index, label=None):
        """Sorted class indices (< label_nc) that occur in ``label`` (default: sample ``index``'s)."""
        label = self.sample_label(index) if label is None else label
        return [v for v in torch.unique(label).tolist() if v < self.label_nc]

    def pick(self, index, fx, fy, label=None):
        """Class at the fractional position (``fx``, ``fy`` in [0, 1]) of ``label`` (default: the sample's).

        Returns the class index, or None for a don't-care pixel.
        """
        label = self.sample_label(index) if label is None else label
        try:
            fx, fy = float(fx), float(fy)
        except (TypeError, ValueError, OverflowError) as e:
            raise OptionError(f"pick position ({fx!r}, {fy!r}): expected two numbers") from e
        if not (0 <= fx <= 1 and 0 <= fy <= 1):
            raise OptionError(f"pick position ({fx:g}, {fy:g}) lies outside the image")
        h, w = label.shape[-2:]
        value = int(label[0, min(int(fy * h), h - 1), min(int(fx * w), w - 1)])
        return value if value < self.label_nc else None

    def thumbnail_png(self, index):
        """PNG bytes of the sample's photo (its colourised label map without one), at most ``THUMB_SIZE`` pixels."""
        index = self.check_index(index)

        def make():
            path = self.samples[index].image_path
            picture = read_rgb(path) if path else tensor2label(self.sample_label(index), self.opt.semantic_nc)
            im = Image.fromarray(picture)
            im.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.BICUBIC)
            return encode_png(im)

        return self._pngs.get(("thumb", index), make)

    def label_png(self, index, label=None):
        """PNG bytes of ``label`` (default: sample ``index``'s, cached), colourised with :meth:`palette`."""
        if label is not None:
            return encode_png(tensor2label(label, self.opt.semantic_nc))
        index = self.check_index(index)
        return self._pngs.get(("label", index),
                              lambda: encode_png(tensor2label(self.sample_label(index), self.opt.semantic_nc)))

    def label_map_png(self, label):
        """A label file of ``label``: single-channel PNG of class indices (don't care written as 255).

        8-bit for up to 255 classes, else 16-bit; it reads back with ``data.image_io.read_label``.
        """
        values = label[0].cpu().numpy().astype(np.int64)
        values[values >= self.label_nc] = 255  # don't care, as label files store it
        return encode_png(values.astype(np.uint8 if self.label_nc < 255 else np.uint16))

    def palette(self):
        """``"#rrggbb"`` colour of each class in the colourised label maps (as in result pages)."""
        return ["#%02x%02x%02x" % tuple(int(v) for v in c) for c in label_colormap(self.opt.semantic_nc)]

    # ------------------------------------------------------------------ rendering
    def render(self, index, raw_codes, label=None):
        """Image ``(H, W, 3)`` uint8 of ``label`` (default: sample ``index``'s) with raw codes ``(label_nc, 512)``.

        The same as ``StyleMixer.generate(label, raw_codes)`` with the same
        seed, up to float rounding. The generator's work that depends only on
        the layout is cached per sample (:class:`editor.renderer.LayoutRenderer`);
        a painted label updates the cache where it differs.
        """
        index = self.check_index(index)
        codes = normalise_codes(raw_codes, self.opt.semantic_nc)[None]
        with self._render_lock:
            if label is None:
                segmap = self._segmaps.get(index, lambda: self._segmap(index, self.sample_label(index), codes))
            else:
                segmap = self._segmap(index, label, codes)
            out = self.renderer.render(("sample", index), segmap, codes.to(segmap.device, segmap.dtype))
        return tensor2im(out[0])

    def _segmap(self, index, label, codes):
        """One-hot ``(1, J, H, W)`` segmap of ``label`` on the model's device (the model's own rule)."""
        data = {"label": label[None], "codes": codes, "path": [self.samples[index].name]}
        segmap, _, _ = self.model.preprocess_input(data)
        return segmap

    # ------------------------------------------------------------------ uploads
    def upload_codes(self, image_bytes, image_name, label_bytes, label_name):
        """``(codes, present)`` of an uploaded photo and its label map (cached by content).

        ``codes``: SPSE codes ``(label_nc, 512)``; ``present``: sorted classes
        that occur in the label map.

        Raises :class:`InputError` naming the file for an unreadable image, a
        colour, multi-channel or lossy (JPEG) label map, label values out of
        range, or a photo and label map of different aspect ratios (the
        project's rules, ``data/image_io.py``; sizes may differ);
        :class:`editor.uploads.UploadTooLarge` when their headers announce
        more pixels than the budget, :class:`editor.uploads.Busy` when other
        uploads hold the budget.
        """
        key = hashlib.sha256(b"%d:" % len(image_bytes) + image_bytes + label_bytes).hexdigest()
        return self._uploads.get((key, self.spse_size),
                                 lambda: self._extract(image_bytes, image_name, label_bytes, label_name))

    def _extract(self, image_bytes, image_name, label_bytes, label_name):
        with upload_files([(image_bytes, image_name), (label_bytes, label_name)]) as (image_path, label_path):
            sizes = [header_pixels(image_path), header_pixels(label_path)]
            pixels = sum(w * h for w, h in filter(None, sizes))
            with self.upload_pixels.reserve(pixels, f"{image_name} with {label_name}"):
                image = read_upload(image_path, image_name, read_rgb)
                label = read_upload(label_path, label_name, read_label)
                check_aspect_ratio(image.shape[1::-1], label.shape[::-1], image_name, label_name)
                check_label_values(label, self.label_nc, label_name, allow_dontcare=self.opt.contain_dontcare_label)
                codes = extract_style_codes(image, label, self.label_nc, size=self.spse_size)
        codes.setflags(write=False)
        return codes, [int(v) for v in np.unique(label) if v < self.label_nc]
