"""Interactive style editor in the browser: pick a region, give it another image's style, paint the layout.

    python edit_app.py --demo                                   # the model `make demo` trains (or: make editor)
    python edit_app.py --name celeba --data datasets/celeba/test
    python edit_app.py --name release --label_nc 19 --crop_size 256 --data datasets/celeba/test
        # checkpoints/release/latest_net_G.pth from the original release

It prints a local URL (http://127.0.0.1:8765/ by default); open it in a
browser. The options are :class:`options.editor_options.EditorOptions`
(``test.py``'s plus the editor's); the server listens on 127.0.0.1 only
unless ``--host`` and ``--allow_remote`` say otherwise. See docs/editor.md.
"""
import os
import sys

import torch

from editor.engine import EditorEngine
from editor.server import EditorServer, serve
from models.checkpoints import network_path
from options.editor_options import EditorOptions
from util.cli import run_cli
from util.errors import OptionError


def build(argv=None, model=None):
    """Parse ``argv`` and return a ready :class:`editor.server.EditorServer` (not yet serving).

    ``model`` (optional): a prebuilt model whose generator weights are used as
    they are (tests, benchmarks); by default it is built from the options and checkpoint.
    """
    options = EditorOptions()
    opt = options.parse(argv)
    if options.loaded_opt_file:
        print(f"architecture options from {options.loaded_opt_file} (command-line flags win)")
    if opt.num_threads:
        torch.set_num_threads(opt.num_threads)
    ckpt = network_path(os.path.join(opt.checkpoints_dir, opt.name), opt.which_epoch, "G")
    if opt.demo and model is None and not os.path.isfile(ckpt):
        raise OptionError(f"--demo: {ckpt} not found; run `make demo` first (about 4 minutes on 2 CPU cores), "
                          f"or `make editor`, which trains the demo model when it is missing and starts the editor")
    return EditorServer.from_options(EditorEngine.from_options(opt, model=model), opt)


def main(argv=None):
    """Start the editor and serve until Ctrl-C."""
    serve(build(argv))


if __name__ == "__main__":
    sys.exit(run_cli(main))
