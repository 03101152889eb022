"""Install the original release's pretrained CelebAMask-HQ model and style codes, checked, in one command.

    python scripts/import_release.py --checkpoint ~/Downloads/checkpoint.zip \
        --codes ~/Downloads/<test codes>.zip --codes_dir datasets/celebamask_hq/test/codes

The release's README (https://github.com/BenjaminJonghyun/SuperStyleNet) links
``checkpoint.zip`` (the files its ``checkpoints/celeba/`` folder held:
``<epoch>_net_G.pth``, ``<epoch>_net_D.pth``, plain state_dicts) and archives
of style codes (one ``.npy`` per image, ``(19, 1, 1, 1, 512)``) on Google
Drive. Each input may be a ``.zip`` or the folder it was unpacked into.

What it does, in this order, before anything is written where you look:

1. prints the SHA-256 of every archive (``sha256sum`` format; ``--expect_sha256``
   compares the checkpoint archive's);
2. finds every ``<epoch>_net_G.pth`` / ``_net_D.pth`` in the checkpoint
   archive (in one folder of it), unpacks each into a staging folder, loads it
   (``weights_only``) and checks every key and shape against this project's
   networks of the release's configuration (``models/checkpoint_compat.py``:
   the release layout is mapped, the tensors it never used are named) and
   that all values are finite;
3. checks every code file (layout, ``--label_nc`` rows, finite values) while
   unpacking it into a staging folder, and counts how many pair with the
   label maps of a ``labels/`` folder next to ``--codes_dir``;
4. writes ``opt.json`` (the release's architecture: ``--label_nc 19 --ngf 64
   --crop_size 256``, the SPADE defaults otherwise) and ``release_import.json``
   (archives, checksums, files) next to the networks;
5. renames the staging folders to ``checkpoints_dir/<name>`` and the
   ``--codes_dir`` folders. An existing destination is an error unless
   ``--overwrite``; any error leaves every destination as it was.

Then ``test.py --name <name> --which_epoch <epoch>`` and ``edit_app.py --name
<name> --which_epoch <epoch> --data <folder of labels/ and codes/>`` use them
(the commands are printed).
"""
import argparse
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
import zipfile
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from util.errors import CheckpointError, InputError, OptionError  # noqa: E402

NET_FILE = re.compile(r"^(?P<epoch>[^/]+)_net_(?P<net>G|D)\.pth$")
RELEASE_CONFIG = {"label_nc": 19, "ngf": 64, "crop_size": 256}  # the release's CelebAMask-HQ model
RECORDED_FLAGS = ("label_nc", "ngf", "crop_size", "semantic_nc", "num_upsampling_layers", "norm_G", "ndf", "num_D",
                  "n_layers_D", "norm_D")
CHUNK = 1 << 20


# ---------------------------------------------------------------------------------------- archives
class Archive:
    """A ``.zip`` file or an unpacked folder: its file members (``/``-separated names) and their bytes.

    Raises :class:`InputError` naming ``path`` (and ``flag``) when it is missing or not a readable zip.
    """

    def __init__(self, path, flag):
        self.path, self.flag = os.fspath(path), flag
        self.zip = None
        if os.path.isdir(self.path):
            names = []
            for folder, _, files in os.walk(self.path):
                for f in files:
                    names.append(os.path.relpath(os.path.join(folder, f), self.path).replace(os.sep, "/"))
        elif os.path.isfile(self.path):
            try:
                self.zip = zipfile.ZipFile(self.path)
                names = [i.filename for i in self.zip.infolist() if not i.is_dir()]
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
                raise InputError(f"{flag} {self.path}: not a readable zip archive ({e}); download it again, or "
                                 f"pass the folder it was unpacked into") from e
        else:
            raise InputError(f"{flag} {self.path}: file not found")
        # macOS resource forks and hidden files are not content
        self.names = sorted(n for n in names if not n.startswith("__MACOSX/")
                            and not os.path.basename(n).startswith("."))

    def copy(self, name, dest):
        """Write member ``name`` to the file ``dest``; returns its SHA-256. Corrupt members raise InputError."""
        digest = hashlib.sha256()
        try:
            with self._open(name) as src, open(dest, "wb") as out:
                for block in iter(lambda: src.read(CHUNK), b""):
                    digest.update(block)
                    out.write(block)
        except (zipfile.BadZipFile, zlib.error, EOFError) as e:
            raise InputError(f"{self.flag} {self.path}: {name} is corrupt ({e}); download the archive again") from e
        return digest.hexdigest()

    def read(self, name):
        """The bytes of member ``name`` (corrupt members raise InputError)."""
        try:
            with self._open(name) as src:
                return src.read()
        except (zipfile.BadZipFile, zlib.error, EOFError) as e:
            raise InputError(f"{self.flag} {self.path}: {name} is corrupt ({e}); download the archive again") from e

    def _open(self, name):
        return self.zip.open(name) if self.zip is not None else open(os.path.join(self.path, name), "rb")

    def close(self):
        if self.zip is not None:
            self.zip.close()


def sha256_of(path):
    """Hex SHA-256 of a file, or of every file of a folder in name order (its content, not its layout)."""
    digest = hashlib.sha256()
    paths = [path] if os.path.isfile(path) else [os.path.join(path, *n.split("/")) for n in Archive(path, "").names]
    for p in paths:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(CHUNK), b""):
                digest.update(block)
    return digest.hexdigest()


def one_folder(names, archive, what):
    """The single folder (``""`` for the top) holding ``names``; InputError when they are spread over several."""
    folders = sorted({os.path.dirname(n) for n in names})
    if len(folders) > 1:
        raise InputError(f"{archive.flag} {archive.path}: {what} lie in {len(folders)} folders "
                         f"({', '.join(f or '<top>' for f in folders[:5])}); unpack it and pass the one folder "
                         f"you want")
    return folders[0]


# ---------------------------------------------------------------------------------------- checks
def release_options(args):
    """The training options of the release's architecture (``--label_nc``, ``--ngf``, ``--crop_size``)."""
    from options import build_options

    return build_options(True, gpu_ids="-1", name=args.name, checkpoints_dir=args.checkpoints_dir,
                         label_nc=args.label_nc, ngf=args.ngf, crop_size=args.crop_size)


def meta_networks(opt):
    """This project's generator and discriminator for ``opt`` on the meta device (keys and shapes only)."""
    import torch

    from models.networks import MultiscaleDiscriminator, SuperStyleNetGenerator

    with torch.device("meta"):
        return SuperStyleNetGenerator.from_options(opt), MultiscaleDiscriminator.from_options(opt)


def check_network(path, net, kind, notes):
    """Load the network file at ``path`` and check it against ``net`` (meta); raises CheckpointError."""
    import torch

    from models.checkpoint_compat import (check_state_against, convert_release_generator_state,
                                          is_release_generator_state, read_state_dict)

    state, _ = read_state_dict(path)
    if kind == "G" and is_release_generator_state(state):
        state, ignored = convert_release_generator_state(state, net.state_dict().keys(), net.label_nc, path)
        notes.extend(f"{os.path.basename(path)}: {n}" for n in ignored)
    check_state_against(net.state_dict(), state, path, "generator" if kind == "G" else "discriminator")
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{path}: {len(bad)} tensors hold NaN or infinite values ({', '.join(bad[:5])}); "
                              f"the file is damaged")


def stage_checkpoint(archive, staging, nets, notes):
    """Unpack and check the network files into ``staging``; returns ``{file name: sha256}``."""
    names = [n for n in archive.names if NET_FILE.match(os.path.basename(n))]
    if not any(NET_FILE.match(os.path.basename(n))["net"] == "G" for n in names):
        npy = [n for n in archive.names if n.endswith(".npy")]
        hint = (f"; it holds {len(npy)} .npy files: a style-code archive goes to --codes" if npy else
                f"; it holds: {', '.join(archive.names[:5]) or 'nothing'}")
        raise InputError(f"--checkpoint {archive.path}: no <epoch>_net_G.pth inside{hint}")
    one_folder(names, archive, "the network files")
    files = {}
    for name in sorted(names, key=lambda n: (NET_FILE.match(os.path.basename(n))["net"] != "G", n)):
        base = os.path.basename(name)
        dest = os.path.join(staging, base)
        files[base] = archive.copy(name, dest)
        kind = NET_FILE.match(base)["net"]
        try:
            check_network(dest, nets[kind], kind, notes)
        except CheckpointError as e:  # name the archive's member, not the staging copy
            raise CheckpointError(str(e).replace(dest, f"{archive.path}: {name}")) from e
        print(f"  {base}: keys and shapes fit (sha256 {files[base]})")
    return files


def stage_codes(archive, staging, label_nc):
    """Unpack and check the code files of ``archive`` into ``staging``; returns the list of stems."""
    import numpy as np

    from data.codes import check_code_layout

    names = [n for n in archive.names if n.lower().endswith(".npy")]
    if not names:
        nets = [n for n in archive.names if NET_FILE.match(os.path.basename(n))]
        hint = (": it holds network files, which go to --checkpoint" if nets else
                f"; it holds: {', '.join(archive.names[:5]) or 'nothing'}")
        raise InputError(f"--codes {archive.path}: no .npy code files inside{hint}")
    one_folder(names, archive, "the code files")
    stems = [os.path.splitext(os.path.basename(n))[0] for n in names]
    for name, stem in zip(names, stems):
        data = archive.read(name)
        where = f"{archive.path}: {name}"
        try:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise InputError(f"{where}: unreadable code file ({e})") from e
        check_code_layout(arr.shape, arr.dtype, where, (label_nc,))
        if not np.isfinite(arr).all():
            raise InputError(f"{where}: code file contains NaN or infinite values")
        with open(os.path.join(staging, stem + ".npy"), "wb") as f:
            f.write(data)  # as released: data/codes.py reads the (J, 1, 1, 1, 512) layout
    return stems


def pairing_note(codes_dir, stems):
    """How many of ``stems`` pair with the label maps in ``<codes_dir>/../labels`` (None without that folder)."""
    labels = os.path.join(os.path.dirname(os.path.abspath(codes_dir)), "labels")
    if not os.path.isdir(labels):
        return None
    label_stems = {os.path.splitext(f)[0] for f in os.listdir(labels)}
    paired = len(label_stems & set(stems))
    note = f"{paired} of {len(stems)} code files pair with a label map in {labels} ({len(label_stems)} there)"
    if paired < len(label_stems):
        note += f"; {len(label_stems) - paired} label maps have no code file (extract them: save_style_vector.py)"
    return note


# ---------------------------------------------------------------------------------------- installing
def check_destination(path, overwrite, flag):
    """Raise OptionError when ``path`` exists and is not empty, unless ``overwrite``."""
    if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)) and not overwrite:
        raise OptionError(f"{flag} {path}: already exists and is not empty; pass --overwrite to replace it, or "
                          f"choose another destination")


def staging_folder(dest):
    """A new empty folder next to ``dest`` (same file system, so the final rename is atomic)."""
    parent = os.path.dirname(os.path.abspath(dest))
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(dest))}.import-", dir=parent)


def commit(staging, dest):
    """Rename ``staging`` onto ``dest``; an existing ``dest`` is moved aside first and removed afterwards."""
    old = None
    if os.path.lexists(dest):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(dest))}.replaced-",
                               dir=os.path.dirname(os.path.abspath(dest)))
        os.rmdir(old)
        os.rename(dest, old)
    os.rename(staging, dest)
    if old is not None:
        shutil.rmtree(old) if os.path.isdir(old) else os.remove(old)


def write_options(staging, opt):
    """``opt.json`` / ``opt.txt`` of the release's architecture into ``staging``."""
    from options.base_options import BaseOptions
    from util.io import write_text_atomic

    saved = BaseOptions.options_to_json(opt)
    write_text_atomic(os.path.join(staging, "opt.json"), json.dumps(saved, indent=2, sort_keys=True) + "\n")
    write_text_atomic(os.path.join(staging, "opt.txt"),
                      "".join(f"{k:>25}: {saved[k]!s}\n" for k in sorted(saved)))


def epoch_to_use(files):
    """``latest`` when the archive has it, else the highest epoch of its generators."""
    epochs = [NET_FILE.match(f)["epoch"] for f in files if NET_FILE.match(f)["net"] == "G"]
    if "latest" in epochs:
        return "latest"
    numeric = sorted((int(e) for e in epochs if e.isdigit()), reverse=True)
    return str(numeric[0]) if numeric else sorted(epochs)[-1]


def check_arguments(args):
    """``[(codes archive, codes_dir)]`` after the checks that need no reading: pairing, destinations."""
    if len(args.codes or []) != len(args.codes_dir or []):
        raise OptionError(f"--codes ({len(args.codes or [])} archives) and --codes_dir "
                          f"({len(args.codes_dir or [])} folders) must pair up one to one, in order")
    check_destination(os.path.join(args.checkpoints_dir, args.name), args.overwrite, "--name: the checkpoint folder")
    codes = list(zip(args.codes or [], args.codes_dir or []))
    for _, codes_dir in codes:
        check_destination(codes_dir, args.overwrite, "--codes_dir")
    return codes


def checksums(archives, expected=None):
    """Print and return ``{path: SHA-256}`` of the archives; ``expected`` is compared with the first's."""
    digests = {}
    for a in archives:
        digests[a.path] = sha256_of(a.path)
        print(f"{digests[a.path]}  {a.path}")
    first = archives[0].path
    if expected and digests[first] != expected.lower():
        raise InputError(f"--checkpoint {first}: SHA-256 {digests[first]} differs from --expect_sha256 {expected}; "
                         f"the download is incomplete or another file")
    return digests


def install(args, archives, codes_dirs, digests):
    """Stage and check everything, then rename it into place; returns ``(files, {codes_dir: stems}, notes)``."""
    from util.io import write_text_atomic

    dest = os.path.join(args.checkpoints_dir, args.name)
    opt = release_options(args)
    netG, netD = meta_networks(opt)
    stagings, notes, installed = [], [], {}
    try:
        stagings.append((staging_folder(dest), dest))
        print(f"checking the networks of {args.checkpoint} (label_nc {args.label_nc}, ngf {args.ngf}, "
              f"crop {args.crop_size}):")
        files = stage_checkpoint(archives[0], stagings[0][0], {"G": netG, "D": netD}, notes)
        for archive, codes_dir in zip(archives[1:], codes_dirs):
            stagings.append((staging_folder(codes_dir), codes_dir))
            installed[codes_dir] = stage_codes(archive, stagings[-1][0], args.label_nc)
            print(f"  {archive.path}: {len(installed[codes_dir])} code files fit (label_nc {args.label_nc})")
        write_options(stagings[0][0], opt)
        record = {"checkpoint": {"archive": os.path.abspath(args.checkpoint), "sha256": digests[archives[0].path],
                                 "files": files},
                  "codes": [{"archive": os.path.abspath(a.path), "sha256": digests[a.path],
                             "codes_dir": os.path.abspath(d), "files": len(installed[d])}
                            for a, d in zip(archives[1:], codes_dirs)],
                  "architecture": {k: getattr(opt, k) for k in RECORDED_FLAGS}, "notes": notes}
        write_text_atomic(os.path.join(stagings[0][0], "release_import.json"), json.dumps(record, indent=2) + "\n")
        for staging, target in stagings:
            commit(staging, target)
        stagings = []
    finally:
        for staging, _ in stagings:
            shutil.rmtree(staging, ignore_errors=True)
    return files, installed, notes


def run(args):
    """Check and install; returns ``(checkpoint folder, {codes_dir: stems})``. Raises user errors."""
    codes = check_arguments(args)
    archives = [Archive(args.checkpoint, "--checkpoint")] + [Archive(c, "--codes") for c, _ in codes]
    try:
        files, installed, notes = install(args, archives, [d for _, d in codes],
                                          checksums(archives, args.expect_sha256))
    finally:
        for a in archives:
            a.close()
    for note in notes:
        print(f"note: {note}")
    for codes_dir, stems in installed.items():
        pairing = pairing_note(codes_dir, stems)
        print(f"codes: {codes_dir}" + (f" ({pairing})" if pairing else ""))
    dest, which = os.path.join(args.checkpoints_dir, args.name), epoch_to_use(files)
    data = os.path.dirname(os.path.abspath(codes[0][1])) if codes else "<folder with labels/ and codes/>"
    print(f"installed {dest} ({', '.join(sorted(files))}, opt.json)\n"
          f"results page: python test.py --name {args.name} --checkpoints_dir {args.checkpoints_dir} "
          f"--which_epoch {which} --label_dir {data}/labels --image_dir {data}/images --instance_dir {data}/codes\n"
          f"editor:       python edit_app.py --name {args.name} --checkpoints_dir {args.checkpoints_dir} "
          f"--which_epoch {which} --data {data}")
    return dest, installed


def build_parser():
    """Command-line options of import_release.py."""
    from util.cli import HelpFormatter

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--checkpoint", required=True, help="the release's checkpoint.zip (or the folder it unpacks to)")
    p.add_argument("--name", default="celeba", help="install as checkpoints_dir/<name>")
    p.add_argument("--checkpoints_dir", default="./checkpoints", help="checkpoint folders live here")
    p.add_argument("--codes", nargs="+", default=None, help="style-code archives (.zip or folders) of the release")
    p.add_argument("--codes_dir", nargs="+", default=None,
                   help="where each --codes archive's .npy files go, in order (the --instance_dir of test.py, the "
                        "codes/ folder next to labels/ that the editor's --data reads)")
    p.add_argument("--label_nc", type=int, default=RELEASE_CONFIG["label_nc"],
                   help="classes of the checkpoint and the code files (the release's CelebAMask-HQ model: 19)")
    p.add_argument("--ngf", type=int, default=RELEASE_CONFIG["ngf"], help="generator width of the checkpoint")
    p.add_argument("--crop_size", type=int, default=RELEASE_CONFIG["crop_size"],
                   help="image size the checkpoint was trained at")
    p.add_argument("--expect_sha256", default=None,
                   help="stop unless the checkpoint archive has this SHA-256 (e.g. one published next to it)")
    p.add_argument("--overwrite", action="store_true", help="replace existing destination folders")
    return p


def main(argv=None):
    """Parse ``argv`` and install; returns the checkpoint folder."""
    return run(build_parser().parse_args(argv))[0]


if __name__ == "__main__":
    from util.cli import run_cli

    sys.exit(run_cli(main))
