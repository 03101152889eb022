"""Interactive style editor in the browser: pick a region, give it another image's style, see the result.

    python edit_app.py --demo                                   # the model `make demo` trains (or: make editor)
    python edit_app.py --name celeba --data datasets/celeba/test
    python edit_app.py --name release --label_nc 19 --crop_size 256 --data datasets/celeba/test
        # checkpoints/release/latest_net_G.pth from the original release

It prints a local URL (http://127.0.0.1:8765/ by default); open it in a
browser. ``--data D`` is a folder with ``images/``, ``labels/`` and ``codes/``
as the dataset preparation scripts write them (or give ``--image_dir``,
``--label_dir``, ``--instance_dir``); its ``classes.txt`` names the classes.
The architecture is reloaded from ``checkpoints/<name>/opt.json`` as in
``test.py`` (flags on the command line win; a release checkpoint has no
``opt.json``, so give ``--label_nc``, ``--crop_size`` and, if not 64, ``--ngf``).

The server listens on 127.0.0.1 only. ``--host 0.0.0.0`` (or any address
that is not loopback) also needs ``--allow_remote``: the editor has no
authentication. See docs/editor.md.
"""
import os
import sys

from options.test_options import TestOptions
from util.cli import run_cli
from util.errors import OptionError

ROOT = os.path.dirname(os.path.abspath(__file__))
DEMO_ARGS = ["--name", "demo", "--checkpoints_dir", os.path.join(ROOT, "checkpoints"),
             "--data", os.path.join(ROOT, "datasets", "demo")]


class EditorOptions(TestOptions):
    """``test.py``'s options plus the editor's."""

    description = ("SuperStyleNet style editor in the browser: pick a region, give it another image's style. "
                   "Architecture flags default to those saved in checkpoints_dir/name/opt.json.")

    def initialize(self, parser):
        """Add the editor flags to the test flags."""
        parser = super().initialize(parser)
        g = parser.add_argument_group("style editor")
        g.add_argument("--demo", action="store_true",
                       help="edit with the model and data of `make demo` (checkpoints/demo, datasets/demo)")
        g.add_argument("--data", default=None,
                       help="folder holding labels/, codes/ and (optional, for thumbnails) images/; sets "
                            "--label_dir, --instance_dir, --image_dir unless given")
        g.add_argument("--class_names", default=None,
                       help="classes.txt naming the classes; when left out, the first one found next to the labels")
        g.add_argument("--host", default="127.0.0.1", help="address to listen on")
        g.add_argument("--port", type=int, default=8765, help="port to listen on (0: any free port)")
        g.add_argument("--allow_remote", action="store_true",
                       help="allow --host to be a non-loopback address (the editor has no authentication)")
        g.add_argument("--spse_size", type=int, default=512, help="SPSE working resolution for uploaded photos")
        g.add_argument("--max_sessions", type=int, default=32, help="editing sessions (tabs) kept")
        g.add_argument("--max_layouts", type=int, default=2,
                       help="label layouts whose generator constants stay cached (about 400 MB each at "
                            "256x256, ngf 64)")
        g.add_argument("--max_upload_mb", type=float, default=40, help="largest upload accepted (MB)")
        g.add_argument("--verbose", action="store_true", help="log every HTTP request to stderr")
        g.add_argument("--num_threads", type=int, default=0,
                       help="torch CPU threads (0: torch's default, one per core); 1 is faster on a machine "
                            "whose cores are busy with other work")
        return parser

    def parse(self, argv=None, save=False, overrides=None):
        """Parse ``argv``; ``--demo`` puts the demo's name, checkpoints and data first (explicit flags win)."""
        argv = list(sys.argv[1:] if argv is None else argv)
        if "--demo" in argv:
            argv = DEMO_ARGS + argv
        return super().parse(argv, save=save, overrides=overrides)

    def resolve(self, opt):
        """The derived fields of :class:`TestOptions`, and the folders of ``--data`` where none is given."""
        super().resolve(opt)
        if opt.data:
            for flag, sub in (("label_dir", "labels"), ("image_dir", "images"), ("instance_dir", "codes")):
                if not getattr(opt, flag) and (flag != "image_dir" or os.path.isdir(os.path.join(opt.data, sub))):
                    setattr(opt, flag, os.path.join(opt.data, sub))  # photographs are optional (thumbnails)
        return opt

    def validate(self, opt):
        """The test checks, the listening address and the editor's limits."""
        super().validate(opt)
        from editor.server import is_loopback

        if not is_loopback(opt.host) and not opt.allow_remote:
            raise OptionError(f"--host {opt.host}: not a loopback address; the editor has no authentication, so "
                              f"listening on {opt.host} also needs --allow_remote")
        if not 0 <= opt.port <= 65535:
            raise OptionError(f"--port {opt.port}: must lie in 0..65535")
        if opt.num_threads < 0:
            raise OptionError(f"--num_threads {opt.num_threads}: must be >= 0")
        for flag in ("spse_size", "max_sessions", "max_layouts"):
            if getattr(opt, flag) < 1:
                raise OptionError(f"--{flag} {getattr(opt, flag)}: must be at least 1")
        if opt.max_upload_mb <= 0:
            raise OptionError(f"--max_upload_mb {opt.max_upload_mb}: must be positive")


def build(argv=None, model=None):
    """Parse ``argv`` and return a ready :class:`editor.server.EditorServer` (not yet serving).

    ``model`` (optional): a prebuilt model whose generator weights are used as
    they are (tests); by default it is built from the options and checkpoint.
    """
    from editor.engine import EditorEngine
    from editor.server import EditorServer
    from models.checkpoints import network_path

    options = EditorOptions()
    opt = options.parse(argv)
    if options.loaded_opt_file:
        print(f"architecture options from {options.loaded_opt_file} (command-line flags win)")
    if opt.num_threads:
        import torch

        torch.set_num_threads(opt.num_threads)
    ckpt = network_path(os.path.join(opt.checkpoints_dir, opt.name), opt.which_epoch, "G")
    if opt.demo and model is None and not os.path.isfile(ckpt):
        raise OptionError(f"--demo: {ckpt} not found; run `make demo` first (about 4 minutes on 2 CPU cores), "
                          f"or `make editor`, which trains the demo model when it is missing and starts the editor")
    engine = EditorEngine.from_options(opt, model=model, max_layouts=opt.max_layouts)
    try:
        return EditorServer(engine, opt.host, opt.port, max_sessions=opt.max_sessions,
                            max_body_mb=opt.max_upload_mb * 4 / 3 + 1, verbose=opt.verbose)
    except OSError as e:
        raise OptionError(f"cannot listen on {opt.host}:{opt.port} ({e}); choose another --port") from e


def main(argv=None):
    """Start the editor and serve until Ctrl-C."""
    from editor.server import serve

    serve(build(argv))


if __name__ == "__main__":
    sys.exit(run_cli(main))
