"""``--dataset_mode custom``: label maps, photographs and style-code files (docs/method.md §3).

Three folders are paired by file stem after a natural sort:
``--label_dir`` (single-channel PNG class maps), ``--image_dir`` (photos) and
``--instance_dir`` (one ``.npy`` code file per image, as written by
``save_style_vector.py``; the flag keeps the release's name).

Without ``--image_dir`` (test synthesis only, not training) labels and codes
are paired alone and items carry no ``image``.

Construction validates cheaply and early: empty or missing folders, lossy
(JPEG) label maps, stems without a partner and every code file's shape (read from the ``.npy``
header with ``mmap_mode='r'``). Each item goes through the label pipeline
(:func:`data.transforms.load_label`, shared with style mixing and the editor:
label values checked, don't care mapped) and the aspect-ratio rule of
``data/image_io.py``, shared with SPSE extraction and style mixing. A JPEG
photo is decoded at the smallest DCT scale (1/2, 1/4, 1/8) that still covers
the size the preprocessing resizes it to
(:func:`data.image_io.read_rgb_image_at_least`); docs/training.md ("Data loading")
gives the effect on the pixels.

A batch is a dict (DESIGN.md):

* ``label``: ``(B, 1, H, W)`` int64; 255 already mapped to ``label_nc``;
* ``image``: ``(B, output_nc, H, W)`` float32 in [-1, 1] (absent without ``--image_dir``); uint8
  levels 0..255 instead when :attr:`CustomDataset.uint8_images` is set (the training loader of a GPU
  run: a quarter of the bytes to move; the model normalises them on the device with
  :func:`util.images.normalise_image`, bit for bit the float32 values);
* ``codes``: ``(B, J, 512)`` float32, ``(x - 0.5) / 0.5`` of the stored codes;
* ``path``: list of image paths (label paths without ``--image_dir``).

With ``--contain_dontcare_label`` ``J = label_nc + 1`` and the extra row (the
don't-care class) holds the normalised value of an all-zero raw code, i.e.
``-1`` everywhere, exactly what an absent class gets. A code file may also
already hold ``label_nc + 1`` rows; it is then used as it is.
"""
import os

import numpy as np
import torch

from data.codes import check_code_header, load_codes, model_codes
from data.image_io import check_aspect_ratio, group_by_stem, list_files, list_label_files, read_rgb_image_at_least, unpaired_error
from data.transforms import load_label, transform_image, transform_image_uint8
from util.errors import InputError

CODE_EXTENSIONS = (".npy",)


class CustomDataset(torch.utils.data.Dataset):
    """Paired label/image/code dataset; ``len`` is the number of pairs (capped by ``max_dataset_size``).

    Augmentation parameters of item ``i`` are drawn from a generator seeded by
    ``(seed, epoch, i)``, so results do not depend on worker processes or on
    where a run was resumed. Call :meth:`set_epoch` at each epoch start; the
    epoch lives in shared memory, so persistent loader workers see it.
    ``uint8_images`` (default False): items carry the photo as uint8 levels.
    """

    uint8_images = False

    @staticmethod
    def modify_commandline_options(parser, is_train):
        """Add the custom dataset's flags to ``parser``."""
        g = parser.add_argument_group("dataset (--dataset_mode custom)")
        g.add_argument("--label_dir", type=str, default=None, help="folder of label maps (PNG class indices)")
        g.add_argument("--image_dir", type=str, default=None, help="folder of photographs")
        g.add_argument("--instance_dir", type=str, default=None,
                       help="folder of style-code .npy files (release flag name)")
        g.add_argument("--no_pairing_check", action="store_true",
                       help="pair files by position instead of by stem (counts must still match)")
        return parser

    def __init__(self, opt):
        # test synthesis may go without photographs: labels and codes are all the generator needs
        self.has_images = bool(opt.image_dir) or opt.isTrain
        flags = ["label_dir", "image_dir", "instance_dir"] if self.has_images else ["label_dir", "instance_dir"]
        for flag in flags:
            if not getattr(opt, flag):
                raise InputError(f"--{flag} is required for --dataset_mode custom")
            if not os.path.isdir(getattr(opt, flag)):
                raise InputError(f"--{flag} {getattr(opt, flag)}: folder not found")
        self.opt = opt
        self.label_nc = opt.label_nc
        self.semantic_nc = opt.semantic_nc
        labels = list_label_files(opt.label_dir)  # refuses lossy (JPEG) label maps
        codes = list_files(opt.instance_dir, extensions=CODE_EXTENSIONS)
        lists, kinds = [labels, codes], ["label", "code file"]
        if self.has_images:
            lists, kinds = [labels, list_files(opt.image_dir), codes], ["label", "image", "code file"]
        folders = [getattr(opt, f) for f in flags]
        if opt.no_pairing_check:
            if len({len(x) for x in lists}) != 1:
                raise InputError("unequal file counts with --no_pairing_check (files pair by position): "
                                 + ", ".join(f"{len(x)} {k}s in {f}" for x, k, f in zip(lists, kinds, folders)))
            triples = list(zip(*lists))
        else:
            groups = group_by_stem(lists, [k.split()[0] for k in kinds])
            error = unpaired_error(groups, kinds, folders)
            if error is not None:
                raise error
            triples = [paths for _, paths, _ in groups]
        if not self.has_images:
            triples = [(label, None, code) for label, code in triples]
        triples = triples[: opt.max_dataset_size]
        for _, _, code_path in triples:
            check_code_header(code_path, (self.label_nc, self.semantic_nc))
        self.label_paths = [t[0] for t in triples]
        self.image_paths = [t[1] for t in triples]
        self.code_paths = [t[2] for t in triples]
        # shared with worker processes (persistent workers keep their copy of the dataset)
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def epoch(self):
        """The epoch whose augmentation stream items are drawn from (int)."""
        return int(self._epoch)

    def set_epoch(self, epoch):
        """Select the augmentation stream of ``epoch`` (int), in this process and its loader workers."""
        self._epoch.fill_(int(epoch))

    def __len__(self):
        return len(self.label_paths)

    def load_codes(self, index):
        """Normalised ``(J, 512)`` float32 codes of item ``index``."""
        raw = load_codes(self.code_paths[index], (self.label_nc, self.semantic_nc))
        return torch.from_numpy(model_codes(raw, self.semantic_nc))

    def __getitem__(self, index):
        opt = self.opt
        label_path, image_path = self.label_paths[index], self.image_paths[index]
        rng = np.random.default_rng([int(opt.seed) & 0xFFFFFFFF, self.epoch, index])
        label, params = load_label(label_path, opt, rng)
        item = {"label": label, "codes": self.load_codes(index), "path": image_path or label_path}
        if image_path is not None:
            image, stored_size = read_rgb_image_at_least(image_path, params["scaled_size"])
            check_aspect_ratio(stored_size, params["label_size"], image_path, label_path)
            transform = transform_image_uint8 if self.uint8_images else transform_image
            item["image"] = transform(image, opt, params, window_only=image.size != stored_size)
        return item
