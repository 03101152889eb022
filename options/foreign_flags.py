"""Flags of SPADE and SEAN that mean nothing here, each with a sentence saying what to use instead.

:func:`check_foreign_flags` runs before a command line is parsed, so
``--dataroot`` gets this sentence instead of argparse's bare "unrecognized
arguments". Only flags this project does not define are listed.
"""
from util.errors import OptionError

FOREIGN_FLAGS = {
    "--dataroot": "this project reads three folders instead: --label_dir (label maps), --image_dir (photos) "
                  "and --instance_dir (style codes written by save_style_vector.py)",
    "--no_instance": "there are no instance maps here, so there is nothing to turn off; --instance_dir names "
                     "the folder of style codes (save_style_vector.py)",
    "--netG": "the generator is SuperStyleNet's (--model superstylenet); its width is --ngf and its depth "
              "--num_upsampling_layers",
    "--netD": "the discriminator is the multiscale one of the paper; its size is --ndf, --num_D and --n_layers_D",
    "--use_vae": "styles come from the SPSE codes in --instance_dir (save_style_vector.py), not from a VAE "
                 "encoder; style_mixing.py and the editor change them",
    "--lambda_kld": "there is no VAE and so no KL loss; the loss weights are --lambda_feat and --lambda_vgg",
    "--z_dim": "there is no VAE latent; the style of each class is a 512-number code in --instance_dir",
    "--norm_E": "there is no style encoder network: SPSE (save_style_vector.py) computes the codes",
    "--label_nc_E": "there is no style encoder network: SPSE (save_style_vector.py) computes the codes",
    "--semantic_nc": "the one-hot channels follow from --label_nc (plus one with --contain_dontcare_label)",
    "--cache_filelist_read": "file lists are not cached; the folders are listed at start (quickly)",
    "--cache_filelist_write": "file lists are not cached; the folders are listed at start (quickly)",
    "--status": "train.py trains and test.py synthesises; there is no --status switch",
}

DATASET_MODE_SENTENCE = (
    "this project has one dataset class, custom, which reads --label_dir, --image_dir and --instance_dir; "
    "datasets/prepare_celebamask_hq.py, prepare_cityscapes.py and prepare_cmp_facade.py write that layout "
    "from the public datasets")


def check_foreign_flags(argv, dataset_modes):
    """Raise :class:`OptionError` for the first SPADE/SEAN flag of ``argv`` that means nothing here.

    ``dataset_modes``: the registered ``--dataset_mode`` values; another value
    (SPADE's ``coco``, ``ade20k``, ``cityscapes``...) gets its own sentence.
    """
    argv = list(argv)
    for i, token in enumerate(argv):
        if not token.startswith("--"):
            continue
        flag, _, value = token.partition("=")
        if flag in FOREIGN_FLAGS:
            raise OptionError(f"{flag}: a SPADE/SEAN flag that means nothing here; {FOREIGN_FLAGS[flag]}")
        if flag == "--dataset_mode":
            value = value or (argv[i + 1] if i + 1 < len(argv) else "")
            if value and value not in dataset_modes:
                raise OptionError(f"--dataset_mode {value}: {DATASET_MODE_SENTENCE}")
