"""Tests of evaluation/metrics.py and evaluate.py."""
import json
import math
import os

import numpy as np
import pytest
import torch

import evaluate
from evaluation import metrics
from util.errors import CheckpointError, InputError
from util.io import save_image_atomic


def _rand_image(seed, h=24, w=20):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------- Fréchet distance, closed form
def test_frechet_distance_diagonal_covariances_closed_form():
    rng = np.random.default_rng(0)
    d = 6
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    v1, v2 = rng.uniform(0.1, 3.0, size=d), rng.uniform(0.1, 3.0, size=d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    got = metrics.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2))
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_frechet_distance_commuting_covariances_closed_form():
    # Covariances sharing an eigenbasis Q commute: sqrt(S1 S2) = Q diag(sqrt(l1 l2)) Q^T.
    rng = np.random.default_rng(1)
    d = 5
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    l1, l2 = rng.uniform(0.2, 2.0, size=d), rng.uniform(0.2, 2.0, size=d)
    s1, s2 = q @ np.diag(l1) @ q.T, q @ np.diag(l2) @ q.T
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(l1) - np.sqrt(l2)) ** 2)
    assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_one_dimensional_and_identical():
    # 1-D: (m1 - m2)^2 + (sd1 - sd2)^2
    assert metrics.frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + 1.0)
    s = np.array([[2.0, 0.5], [0.5, 1.0]])
    assert metrics.frechet_distance([0.3, -1.0], s, [0.3, -1.0], s) == pytest.approx(0.0, abs=1e-9)


def _spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T + 0.1 * np.eye(d)


def test_frechet_distance_non_commuting_covariances_closed_form():
    # Exactness on non-commuting covariances. For 2x2 SPD S1, S2 the product M = S1 S2 has positive
    # eigenvalues l1, l2, so Tr(M^(1/2)) = sqrt(l1) + sqrt(l2) = sqrt(Tr M + 2 sqrt(det M)). A
    # block-diagonal of such pairs, rotated by one orthogonal Q (a similarity of S1 S2), is a dense,
    # generic-looking D x D case with the same closed form.
    rng = np.random.default_rng(9)
    blocks = [(_spd(rng, 2), _spd(rng, 2)) for _ in range(3)]
    assert all(not np.allclose(a @ b, b @ a) for a, b in blocks)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    s1 = np.zeros((6, 6))
    s2 = np.zeros((6, 6))
    tr_covmean = 0.0
    for i, (a, b) in enumerate(blocks):
        s1[2 * i:2 * i + 2, 2 * i:2 * i + 2], s2[2 * i:2 * i + 2, 2 * i:2 * i + 2] = a, b
        m = a @ b
        tr_covmean += np.sqrt(np.trace(m) + 2 * np.sqrt(np.linalg.det(m)))
    s1, s2 = q @ s1 @ q.T, q @ s2 @ q.T
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_covmean
    # float64 throughout: eigendecompositions are backward stable (error ~ D u ||S||), so the result
    # is exact to a small multiple of u (1.1e-16) times the size of the terms that cancel.
    terms = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2)
    assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=0, abs=1e-12 * terms)


def test_frechet_distance_agrees_with_pytorch_fid_on_generic_covariances():
    # Non-commuting SPD covariances against pytorch-fid's formula, which takes the trace of
    # scipy.linalg.sqrtm(S1 S2). sqrtm's accuracy differs between SciPy versions and builds, so the
    # tolerance comes from the accuracy of the square root actually returned here: a computed root X
    # with X @ X = S1 S2 + E is the exact root of S1 S2 + E, whose trace differs from the true one by
    # tr(X^-1 E) / 2 to first order, i.e. at most ||X^-1||_F ||E||_F / 2. pytorch-fid subtracts twice
    # that trace; everything else is float64 rounding of the terms that cancel.
    import warnings

    import scipy.linalg
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(9)
    s1, s2 = _spd(rng, 6), _spd(rng, 6)
    assert not np.allclose(s1 @ s2, s2 @ s1)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        reference = calculate_frechet_distance(mu1, s1, mu2, s2)
        root = np.real(scipy.linalg.sqrtm(s1 @ s2))
        if isinstance(root, tuple):  # (root, error estimate) in older SciPy
            root = np.real(root[0])
    residual = np.linalg.norm(root @ root - s1 @ s2)
    sqrtm_trace_error = 0.5 * np.linalg.norm(np.linalg.inv(root)) * residual
    terms = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2)
    tol = 2 * 2 * sqrtm_trace_error + 1e-12 * terms  # x2: first-order estimate; 1e-12: float64 rounding
    got = metrics.frechet_distance(mu1, s1, mu2, s2)
    print(f"FID {got:.12g}, pytorch-fid {reference:.12g}, sqrtm residual {residual:.2g}, tolerance {tol:.2g}")
    assert got == pytest.approx(reference, rel=0, abs=tol)


def test_frechet_distance_shape_mismatch_is_input_error():
    with pytest.raises(InputError, match="inconsistent"):
        metrics.frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))


def test_activation_statistics_matches_literal_mean_and_covariance():
    a = np.random.default_rng(2).normal(size=(7, 3))
    mu, sigma = metrics.activation_statistics(a)
    centred = a - a.mean(0)
    np.testing.assert_allclose(mu, a.sum(0) / 7)
    np.testing.assert_allclose(sigma, centred.T @ centred / 6)
    with pytest.raises(InputError, match="at least 2"):
        metrics.activation_statistics(a[:1])


# ---------------------------------------------------------------- SSIM / PSNR / RMSE
def test_identical_images():
    img = _rand_image(3)
    m = metrics.reconstruction_metrics(img, img)
    assert m["rmse"] == 0.0
    assert math.isinf(m["psnr"]) and m["psnr"] > 0
    assert m["ssim"] == pytest.approx(1.0)


def test_constant_offset_gives_known_rmse_and_psnr():
    img = np.random.default_rng(4).integers(0, 200, size=(16, 16, 3), dtype=np.uint8)
    shifted = img + np.uint8(10)
    assert metrics.rmse(img, shifted) == pytest.approx(10 / 255)
    assert metrics.psnr(img, shifted) == pytest.approx(20 * math.log10(255 / 10))


def test_rmse_psnr_match_literal_formulas():
    a, b = _rand_image(5), _rand_image(6)
    x, y = a / 255.0, b / 255.0
    mse = np.mean((x - y) ** 2)
    assert metrics.rmse(a, b) == pytest.approx(math.sqrt(mse), rel=1e-12)
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(1.0 / mse), rel=1e-12)


def _literal_ssim_gray(x, y, win=7, data_range=1.0):
    """SSIM with a win x win uniform window and sample covariance, averaged over valid windows."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    n = win * win
    vals = []
    for i in range(x.shape[0] - win + 1):
        for j in range(x.shape[1] - win + 1):
            px, py = x[i:i + win, j:j + win].ravel(), y[i:i + win, j:j + win].ravel()
            mx, my = px.mean(), py.mean()
            vx = ((px - mx) ** 2).sum() / (n - 1)
            vy = ((py - my) ** 2).sum() / (n - 1)
            cxy = ((px - mx) * (py - my)).sum() / (n - 1)
            vals.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2)))
    return float(np.mean(vals))


def test_ssim_matches_literal_definition_gray_and_rgb():
    a = _rand_image(7, 14, 13)
    b = np.clip(a.astype(int) + np.random.default_rng(8).integers(-40, 40, a.shape), 0, 255).astype(np.uint8)
    ga, gb = metrics.to_gray(a / 255.0), metrics.to_gray(b / 255.0)
    assert metrics.ssim(a, b, gray=True, variant="uniform") == pytest.approx(_literal_ssim_gray(ga, gb), rel=1e-9)
    per_channel = [_literal_ssim_gray(a[..., c] / 255.0, b[..., c] / 255.0) for c in range(3)]
    assert metrics.ssim(a, b, variant="uniform") == pytest.approx(np.mean(per_channel), rel=1e-9)
    assert metrics.ssim(a, b, variant="uniform") < 0.99


def _literal_ssim_gaussian_gray(x, y, sigma=1.5, radius=5, data_range=1.0):
    """Wang et al.'s SSIM: 11x11 Gaussian weights (sum 1), population statistics, valid windows."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    g = np.exp(-np.arange(-radius, radius + 1) ** 2 / (2 * sigma ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    win = 2 * radius + 1
    vals = []
    for i in range(x.shape[0] - win + 1):
        for j in range(x.shape[1] - win + 1):
            px, py = x[i:i + win, j:j + win], y[i:i + win, j:j + win]
            mx, my = (w * px).sum(), (w * py).sum()
            vx = (w * px * px).sum() - mx ** 2
            vy = (w * py * py).sum() - my ** 2
            cxy = (w * px * py).sum() - mx * my
            vals.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2)))
    return float(np.mean(vals))


def test_gaussian_ssim_matches_wang_definition():
    a = _rand_image(12, 17, 16)
    b = np.clip(a.astype(int) + np.random.default_rng(13).integers(-30, 30, a.shape), 0, 255).astype(np.uint8)
    ga, gb = metrics.to_gray(a / 255.0), metrics.to_gray(b / 255.0)
    assert metrics.ssim(a, b, gray=True) == pytest.approx(_literal_ssim_gaussian_gray(ga, gb), rel=1e-6)
    assert metrics.ssim(a, a) == pytest.approx(1.0)
    with pytest.raises(InputError, match="11x11"):
        metrics.ssim(_rand_image(0, 9, 9), _rand_image(1, 9, 9))
    assert metrics.ssim(_rand_image(0, 9, 9), _rand_image(1, 9, 9), variant="uniform") < 1
    with pytest.raises(InputError, match="unknown SSIM variant 'box'"):
        metrics.ssim(a, b, variant="box")


def test_default_ssim_is_the_releases_call_of_scikit_image():
    """The default SSIM is scikit-image's structural_similarity as the release called it: Gaussian weights,
    sigma 1.5, population covariance, RGB channels averaged, on the uint8 images with their data range 255.

    This project scores on [0, 1] with data range 1. SSIM is invariant to scaling images and data range
    together (C1 = (0.01 L)^2 and C2 = (0.03 L)^2 scale with L^2 like every mean, variance and covariance
    term), so the two agree up to float64 rounding: each SSIM value is a ratio of sums of a few hundred
    products (the 11x11 window, filtered separably), each rounded with relative error 2^-53 = 1.1e-16;
    1e-12 relative leaves a wide margin over that accumulated rounding for images of this size.
    """
    from skimage.metrics import structural_similarity

    a = _rand_image(21, 40, 36)
    b = np.clip(a.astype(int) + np.random.default_rng(22).integers(-50, 50, a.shape), 0, 255).astype(np.uint8)
    release = structural_similarity(a, b, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, data_range=255)
    literal = structural_similarity(a.astype(np.float64) / 255, b.astype(np.float64) / 255, channel_axis=2,
                                    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
    assert metrics.ssim(a, b) == literal  # the same call on the same float64 arrays
    assert metrics.ssim(a, b) == pytest.approx(release, rel=1e-12)
    assert metrics.reconstruction_metrics(a, b)["ssim"] == literal
    # the uniform variant is scikit-image's defaults, and differs from the default on the same images
    uniform = structural_similarity(a.astype(np.float64) / 255, b.astype(np.float64) / 255, channel_axis=2,
                                    data_range=1.0)
    assert metrics.ssim(a, b, variant="uniform") == uniform
    assert uniform != literal


def test_size_mismatch_and_tiny_images_are_input_errors():
    with pytest.raises(InputError, match="differ in shape"):
        metrics.rmse(_rand_image(0, 8, 8), _rand_image(0, 9, 8))
    with pytest.raises(InputError, match="7x7"):
        metrics.ssim(_rand_image(0, 5, 5), _rand_image(1, 5, 5), variant="uniform")


def test_summarise_leaves_infinite_psnr_out_of_mean():
    s = metrics.summarise([{"ssim": 1.0, "psnr": math.inf, "rmse": 0.0},
                           {"ssim": 0.5, "psnr": 20.0, "rmse": 0.1},
                           {"ssim": 0.7, "psnr": 30.0, "rmse": 0.2}])
    assert s == {"ssim": pytest.approx(2.2 / 3), "psnr": 25.0, "rmse": pytest.approx(0.1),
                 "count": 3, "psnr_infinite": 1}


# ---------------------------------------------------------------- evaluate.py
def _make_folders(tmp_path, n=3, gt_size=None):
    res, gt = tmp_path / "results", tmp_path / "gt"
    for i in range(n):
        img = _rand_image(10 + i, 16, 16)
        out = np.clip(img.astype(int) + 5 * (i + 1), 0, 255).astype(np.uint8)
        save_image_atomic(str(res / f"{i}.png"), out)
        target = img if gt_size is None else np.asarray(
            __import__("PIL.Image", fromlist=["Image"]).fromarray(img).resize((gt_size, gt_size)))
        save_image_atomic(str(gt / f"{i}.png"), target)
    return res, gt


def test_evaluate_cli_writes_json_and_table(tmp_path, capsys):
    res, gt = _make_folders(tmp_path)
    out = tmp_path / "m.json"
    assert evaluate.main(["--results_dir", str(res), "--gt_dir", str(gt), "--output", str(out),
                          "--no_progress"]) == 0
    report = json.loads(out.read_text())
    assert set(report["per_image"]) == {"0", "1", "2"}
    # per-image values equal direct computation, and the mean is their mean
    from data.image_io import read_rgb
    direct = metrics.reconstruction_metrics(read_rgb(res / "1.png"), read_rgb(gt / "1.png"))
    assert report["per_image"]["1"]["rmse"] == pytest.approx(direct["rmse"])
    assert report["mean"]["rmse"] == pytest.approx(np.mean([v["rmse"] for v in report["per_image"].values()]))
    assert report["settings"]["ground_truth_resized_to_result"] == 0
    text = capsys.readouterr().out
    assert "SSIM" in text and "mean (3 images)" in text
    # every report names the SSIM variant, the data range and the image size
    assert report["settings"]["ssim_variant"] == "gaussian" and report["settings"]["image_sizes"] == {"16x16": 3}
    assert report["settings"]["description"] == metrics.describe_settings("gaussian", {(16, 16): 3})
    assert report["settings"]["description"] in text
    assert report["per_image"]["1"]["ssim"] == direct["ssim"] == metrics.ssim(read_rgb(res / "1.png"),
                                                                              read_rgb(gt / "1.png"))
    assert evaluate.main(["--results_dir", str(res), "--gt_dir", str(gt), "--output", str(out), "--no_progress",
                          "--ssim_variant", "uniform"]) == 0
    uniform = json.loads(out.read_text())
    assert uniform["settings"]["ssim_variant"] == "uniform" and "SSIM uniform" in capsys.readouterr().out
    assert uniform["per_image"]["1"]["ssim"] == metrics.ssim(read_rgb(res / "1.png"), read_rgb(gt / "1.png"),
                                                             variant="uniform")
    assert uniform["per_image"]["1"]["rmse"] == report["per_image"]["1"]["rmse"]


def test_evaluate_resizes_ground_truth_to_result_size(tmp_path):
    res, gt = _make_folders(tmp_path, n=2, gt_size=32)
    report = evaluate.evaluate(str(res), str(gt), progress=False)
    assert report["settings"]["ground_truth_resized_to_result"] == 2
    both = evaluate.evaluate(str(res), str(gt), size=24, progress=False)
    assert both["settings"]["ground_truth_resized_to_result"] == 0


def test_evaluate_unpaired_and_corrupt_files(tmp_path, capsys):
    res, gt = _make_folders(tmp_path)
    save_image_atomic(str(res / "extra.png"), _rand_image(0, 16, 16))
    with pytest.raises(InputError, match="extra.png"):
        evaluate.evaluate(str(res), str(gt), progress=False)
    assert evaluate.main(["--results_dir", str(res), "--gt_dir", str(gt), "--no_progress"]) == 2
    (res / "extra.png").unlink()
    (gt / "2.png").write_bytes(b"not a png")
    code = evaluate.main(["--results_dir", str(res), "--gt_dir", str(gt), "--no_progress",
                          "--output", str(tmp_path / "m.json")])
    assert code == 1
    report = json.loads((tmp_path / "m.json").read_text())
    assert set(report["per_image"]) == {"0", "1"}
    assert any("2.png" in f for f in report["failures"])
    assert "2.png" in capsys.readouterr().err


def test_identical_folders_store_infinite_psnr_as_null(tmp_path):
    res, _ = _make_folders(tmp_path, n=2)
    out = tmp_path / "m.json"
    assert evaluate.main(["--results_dir", str(res), "--gt_dir", str(res), "--output", str(out),
                          "--no_progress"]) == 0
    report = json.loads(out.read_text())  # strict JSON: no Infinity literal
    assert report["mean"]["psnr"] is None and report["mean"]["psnr_infinite"] == 2
    assert report["per_image"]["0"]["psnr"] is None


# ---------------------------------------------------------------- FID plumbing
def test_missing_inception_weights_give_instructions(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(CheckpointError) as e:
        metrics.build_fid_inception()
    msg = str(e.value)
    assert metrics.FID_WEIGHTS_URL in msg and "--inception_path" in msg and "never downloads" in msg
    with pytest.raises(CheckpointError, match="nowhere.pth"):
        metrics.build_fid_inception(str(tmp_path / "nowhere.pth"))


def test_wrong_inception_weights_file_is_checkpoint_error(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(CheckpointError, match="not the FID Inception weights"):
        metrics.build_fid_inception(str(bad))


def test_fid_from_activations_low_rank_form_equals_covariance_form():
    rng = np.random.default_rng(11)
    for n1, n2, d in [(5, 7, 20), (30, 25, 12)]:  # N < D (nuclear-norm form) and N > D (eigh form)
        x1 = rng.normal(size=(n1, d))
        x2 = rng.normal(loc=0.3, scale=1.5, size=(n2, d)) @ rng.normal(size=(d, d)) / np.sqrt(d)
        mu1, s1 = metrics.activation_statistics(x1)
        mu2, s2 = metrics.activation_statistics(x2)
        expected = metrics.frechet_distance(mu1, s1, mu2, s2)
        assert metrics.fid_from_activations(x1, x2) == pytest.approx(expected, rel=1e-7)
        assert metrics.fid_from_activations(x1, x1) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(InputError, match="at least 2"):
        metrics.fid_from_activations(x1[:1], x2)


def test_fid_inception_equals_pytorch_fids_inception_v3(random_inception_path):
    """The adapter computes pytorch-fid's own InceptionV3 forward pass with the same weights, bit for bit.

    pytorch-fid's InceptionV3 can only be built by downloading its trunk; here (in the test only) its
    fid_inception_v3 is replaced by the locally loaded trunk, which is what the adapter wraps.
    """
    import unittest.mock

    from pytorch_fid import inception as pfi

    ours = metrics.build_fid_inception(random_inception_path)
    trunk = metrics.fid_inception_skeleton()
    trunk.load_state_dict(torch.load(random_inception_path, weights_only=True))
    with unittest.mock.patch.object(pfi, "fid_inception_v3", lambda: trunk):
        reference = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    x = torch.rand(2, 3, 64, 80, generator=torch.Generator().manual_seed(0))  # any size: both resize to 299
    with torch.no_grad():
        got, expected = ours(x), reference(x)
    assert len(got) == len(expected) == 1 and got[0].shape == (2, 2048, 1, 1)
    assert torch.equal(got[0], expected[0])
    assert not any(p.requires_grad for p in ours.parameters())


def test_fid_inception_loads_local_weights(tmp_path, random_inception_path):
    random_model = metrics.build_fid_inception(random_inception_path)
    assert not random_model.training
    # weights saved from a skeleton load back, unchanged, through the local-file path
    skeleton = metrics.fid_inception_skeleton()
    path = tmp_path / metrics.FID_WEIGHTS_NAME
    torch.save(skeleton.state_dict(), path)
    model = metrics.build_fid_inception(str(path))
    assert torch.equal(model.blocks[0][0].conv.weight, skeleton.Conv2d_1a_3x3.conv.weight)
    assert torch.equal(model.blocks[3][2].branch1x1.conv.weight, skeleton.Mixed_7c.branch1x1.conv.weight)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in random_model.parameters())


def test_evaluate_cli_fid_plumbing_with_random_inception(tmp_path, random_inception_path):
    # random weights give meaningless FID values; this only exercises the pipeline
    res, gt = _make_folders(tmp_path, n=2)
    out = tmp_path / "m.json"
    assert evaluate.main(["--results_dir", str(res), "--gt_dir", str(gt), "--output", str(out),
                          "--no_progress", "--fid", "--inception_path", random_inception_path,
                          "--batch_size", "2"]) == 0
    report = json.loads(out.read_text())
    assert math.isfinite(report["mean"]["fid"]) and report["mean"]["fid"] >= 0
    assert report["settings"]["fid_weights"] == random_inception_path


def test_evaluate_rejects_bad_fid_device(tmp_path, capsys, random_inception_path):
    res, gt = _make_folders(tmp_path, n=2)
    argv = ["--results_dir", str(res), "--gt_dir", str(gt), "--no_progress", "--fid", "--inception_path",
            random_inception_path]
    assert evaluate.main(argv + ["--device", "toaster"]) == 2
    assert "--device 'toaster'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert evaluate.main(argv + ["--device", "cuda:0"]) == 2
        assert "not available" in capsys.readouterr().err


def test_fid_ground_truth_statistics_cache(tmp_path, monkeypatch, random_inception_path):
    # the cache logic does not depend on the network: stand-in activations keep this test fast
    calls = []

    def fake_activations(paths, model, batch_size=16, device="cpu", progress=True):
        calls.append(len(paths))
        rows = [metrics.read_rgb(p).astype(np.float64).ravel()[:16] for p in paths]  # 16-D stand-ins
        return np.stack(rows)

    monkeypatch.setattr(metrics, "inception_activations", fake_activations)
    monkeypatch.setattr(metrics, "build_fid_inception", lambda *a, **k: None)
    res, gt = _make_folders(tmp_path, n=3)
    stats = tmp_path / "gt_stats.npz"
    first = evaluate.evaluate(str(res), str(gt), fid=True, inception_path=random_inception_path, fid_gt_stats=str(stats),
                              progress=False)
    assert calls == [3, 3] and stats.is_file()
    assert first["settings"]["fid_gt_stats"]["loaded_from_cache"] is False
    second = evaluate.evaluate(str(res), str(gt), fid=True, inception_path=random_inception_path, fid_gt_stats=str(stats),
                              progress=False)
    assert calls == [3, 3, 3]  # only the results went through the network
    assert second["settings"]["fid_gt_stats"]["loaded_from_cache"] is True
    assert second["mean"]["fid"] == first["mean"]["fid"] > 0
    # the uncached path (nuclear-norm form) gives the same distance; with rank-deficient
    # covariances (3 samples) the eigendecomposition form loses a few digits
    plain = evaluate.evaluate(str(res), str(gt), fid=True, inception_path=random_inception_path, progress=False)
    assert plain["mean"]["fid"] == pytest.approx(first["mean"]["fid"], rel=1e-5)
    # another ground-truth set: the cache is recomputed, not trusted
    (gt / "2.png").unlink()
    (res / "2.png").unlink()
    third = evaluate.evaluate(str(res), str(gt), fid=True, inception_path=random_inception_path, fid_gt_stats=str(stats),
                              progress=False)
    assert third["settings"]["fid_gt_stats"]["loaded_from_cache"] is False
    assert metrics.load_statistics(str(stats))[2] == ["0", "1"]
    stats.write_bytes(b"garbage")
    with pytest.raises(InputError, match="gt_stats.npz"):
        metrics.load_statistics(str(stats))
    fourth = evaluate.evaluate(str(res), str(gt), fid=True, inception_path=random_inception_path, fid_gt_stats=str(stats),
                              progress=False)
    assert fourth["settings"]["fid_gt_stats"]["loaded_from_cache"] is False
