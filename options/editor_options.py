"""Options of the browser style editor (``edit_app.py``): ``test.py``'s flags plus the editor's."""
import os
import sys

from options.test_options import TestOptions
from util.errors import OptionError
from util.net import is_loopback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_ARGS = ("--name", "demo", "--checkpoints_dir", os.path.join(ROOT, "checkpoints"),
             "--data", os.path.join(ROOT, "datasets", "demo"))


class EditorOptions(TestOptions):
    """``test.py``'s options plus the editor's (listening address, limits, ``--demo``, ``--data``)."""

    description = ("SuperStyleNet style editor in the browser: pick a region, give it another image's style, "
                   "paint the label map. Architecture flags default to those saved in checkpoints_dir/name/opt.json.")

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
        g.add_argument("--max_upload_mpix", type=float, default=64,
                       help="megapixels that uploads may decode at once, photo and label map together, over all "
                            "sessions (checked from the file headers before decoding)")
        g.add_argument("--max_connections", type=int, default=32,
                       help="connections served at once (one thread each); further ones wait a few seconds "
                            "for a free one, then get 503")
        g.add_argument("--request_timeout", type=float, default=60,
                       help="seconds a client has to send its whole request, and the longest wait on a stalled "
                            "connection")
        g.add_argument("--verbose", action="store_true", help="log every HTTP request to stderr")
        g.add_argument("--num_threads", type=int, default=0,
                       help="torch CPU threads (0: torch's default, one per core); 1 is faster on a machine "
                            "whose cores are busy with other work")
        return parser

    def parse(self, argv=None, save=False, overrides=None):
        """Parse ``argv``; ``--demo`` puts the demo's name, checkpoints and data first (explicit flags win)."""
        argv = list(sys.argv[1:] if argv is None else argv)
        if "--demo" in argv:
            argv = list(DEMO_ARGS) + argv
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
        if not is_loopback(opt.host) and not opt.allow_remote:
            raise OptionError(f"--host {opt.host}: not a loopback address; the editor has no authentication, so "
                              f"listening on {opt.host} also needs --allow_remote")
        if not 0 <= opt.port <= 65535:
            raise OptionError(f"--port {opt.port}: must lie in 0..65535")
        if opt.num_threads < 0:
            raise OptionError(f"--num_threads {opt.num_threads}: must be >= 0")
        for flag in ("spse_size", "max_sessions", "max_layouts", "max_connections"):
            if getattr(opt, flag) < 1:
                raise OptionError(f"--{flag} {getattr(opt, flag)}: must be at least 1")
        for flag in ("max_upload_mb", "max_upload_mpix", "request_timeout"):
            value = getattr(opt, flag)
            if not value > 0 or value == float("inf"):  # also refuses nan
                raise OptionError(f"--{flag} {value}: must be a positive finite number")
