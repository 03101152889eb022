"""Data: file formats and the torch dataset.

* :mod:`data.image_io`: reading images and label maps, pairing files by stem,
  the input rules (torch-free);
* :mod:`data.codes`: style-code files (torch-free);
* :mod:`data.transforms`: the preprocessing of an image/label pair and the
  label pipeline shared by training, testing and style editing;
* :mod:`data.custom_dataset`: ``--dataset_mode custom``;
* :mod:`data.loader`: the dataset registry, ``create_dataloader`` and the
  resumable sampler.

This package imports nothing itself: ``import data.image_io`` loads no torch.
"""
