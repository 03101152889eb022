"""SPSE, the superpixel-based style encoder (docs/method.md §2), without torch.

* :mod:`spse.extractor`: the codes of one image, ``extract_style_codes``;
* :mod:`spse.masked_slic`: the numba-compiled mask SLIC that reproduces
  scikit-image's ``slic`` (the extractor's default backend when numba is there);
* :mod:`spse.job`: a whole dataset in a process pool, ``extract_dataset``
  (sharding, resume, per-file failures), behind ``save_style_vector.py``.

It reads and writes files through :mod:`data.image_io` and :mod:`data.codes`
(torch-free) and never imports torch, so its worker processes stay light.
"""
