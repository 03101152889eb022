"""Train the same tiny run with two checkouts and compare their checkpoint files bit for bit.

    python scripts/compare_training_runs.py --other /path/to/other/checkout [--keep DIR]

Both checkouts run their own ``train.py`` (each with its own code on
``PYTHONPATH``) on one synthetic dataset built here: 2 epochs of 3 steps,
stopped after 4 steps by ``--max_steps`` and resumed with ``--continue_train``
to the end, with the EMA generator, evaluation on a held-out set every 2 steps
(best checkpoints) and 'latest' saved every 2 steps. Every ``*.pth`` file and
``best.json`` of the two checkpoint folders is compared byte for byte (a
network file record by record, without the zip's top folder name; a
training state value by value, every tensor's bytes, without the
modification times it records of its network files); the
exit status is 0 when the folders hold the same files with the same bytes, 1
otherwise (the differing files are named).
"""
import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)

from tests._synthetic import build_synthetic_dataset  # noqa: E402

COMPARED_SUFFIXES = (".pth", ".json")
SKIPPED = ("opt.json",)  # names the checkpoints folder, which differs between the two runs


def train_argv(data, checkpoints_dir, steps, resume=False):
    images, labels, codes = data["train"]
    argv = ["--name", "cmp", "--checkpoints_dir", checkpoints_dir, "--gpu_ids", "-1", "--nThreads", "0",
            "--label_dir", labels, "--image_dir", images, "--instance_dir", codes,
            "--label_nc", "2", "--crop_size", "32", "--load_size", "36", "--ngf", "4", "--ndf", "8",
            "--no_vgg_loss", "--batchSize", "2", "--niter", "1", "--niter_decay", "1", "--seed", "5",
            "--max_steps", str(steps), "--print_freq", "1", "--display_freq", "100", "--save_latest_freq", "2",
            "--save_epoch_freq", "1", "--ema_bn_batches", "2", "--eval_dir", data["eval"], "--eval_freq", "2",
            "--eval_metric", "rmse", "--inception_path", os.path.join(data["root"], "no_inception.pth")]
    return argv + (["--continue_train"] if resume else [])


def run_checkout(checkout, data, checkpoints_dir):
    """Train with ``checkout``'s train.py: 4 steps, then resumed to the end (6 steps)."""
    env = dict(os.environ, PYTHONPATH=checkout, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    for steps, resume in ((4, False), (0, True)):
        cmd = [sys.executable, os.path.join(checkout, "train.py"), *train_argv(data, checkpoints_dir, steps, resume)]
        proc = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"error: training with {checkout} failed (exit status {proc.returncode}):\n{proc.stderr}")
    return os.path.join(checkpoints_dir, "cmp")


VOLATILE = ("mtime_ns",)  # the training state's records of its network files hold their modification times


def _digest_value(h, obj):
    """Feed ``obj`` (nested dicts, lists, tensors, plain values) into ``h``, leaving out :data:`VOLATILE` keys."""
    import torch

    if torch.is_tensor(obj):
        t = obj.detach().cpu().contiguous()
        h.update(f"tensor {t.dtype} {tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, dict):
        h.update(b"dict")
        for k in sorted(obj, key=repr):
            if k not in VOLATILE:
                h.update(repr(k).encode())
                _digest_value(h, obj[k])
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__} {len(obj)}".encode())
        for v in obj:
            _digest_value(h, v)
    else:
        h.update(repr(obj).encode())


def train_state_digest(path):
    """sha256 of a training state's content (every tensor's bytes, every value), without the files' mtimes."""
    import torch

    h = hashlib.sha256()
    _digest_value(h, torch.load(path, map_location="cpu", weights_only=True))
    return h.hexdigest()


def payload_digest(path):
    """sha256 of a file's bytes; for torch's zip format, of every record's name and bytes.

    ``torch.save`` names the zip's top folder after the file it writes to (a
    temporary name when the file is written atomically under a random name),
    so that folder name is left out of a record's name; the records' bytes are
    compared as they are.
    """
    h = hashlib.sha256()
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                h.update(info.filename.split("/", 1)[-1].encode() + b"\0")
                h.update(z.read(info))
    else:
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def digests(folder):
    """``{file name: digest}`` of the compared files of ``folder`` (:func:`payload_digest`)."""
    return {name: (train_state_digest if name.endswith("_train_state.pth") else payload_digest)(
                os.path.join(folder, name))
            for name in sorted(os.listdir(folder)) if name.endswith(COMPARED_SUFFIXES) and name not in SKIPPED}


def compare(this, other):
    """Names of the files that differ (or exist on one side only) between two digests."""
    return sorted(n for n in set(this) | set(other) if this.get(n) != other.get(n))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--other", required=True, help="the other checkout (its train.py is run)")
    parser.add_argument("--this", default=HERE, help="this checkout (default: the one holding this script)")
    parser.add_argument("--keep", default=None, help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.abspath(args.keep or tmp)
        data = {"root": root,
                "train": build_synthetic_dataset(os.path.join(root, "data"), n=6, size=32, label_nc=2),
                "eval": os.path.join(root, "eval")}
        build_synthetic_dataset(data["eval"], n=3, size=32, label_nc=2, seed=1)
        folders = {label: run_checkout(os.path.abspath(path), data, os.path.join(root, label))
                   for label, path in (("this", args.this), ("other", args.other))}
        this, other = digests(folders["this"]), digests(folders["other"])
        differ = compare(this, other)
        for name in sorted(set(this) | set(other)):
            print(f"{'DIFFERS' if name in differ else 'same   '} {name} {this.get(name, '-')[:16]} "
                  f"{other.get(name, '-')[:16]}")
        print(f"{len(this)} files compared: {'all identical' if not differ else f'{len(differ)} differ'}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
