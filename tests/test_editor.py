"""The style editor: the layout renderer against the literal generator, the engine, the HTTP API, the options."""
import base64
import io
import json
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image

import edit_app
from spse.extractor import extract_style_codes
from editor.painting import paint_stroke, painted_label, parse_stroke
from editor.renderer import LayoutRenderer
from editor.session import apply_edits, class_mean_colours
from models.networks import SuperStyleNetGenerator
from options import build_options
from options.editor_options import EditorOptions
from tests._tiny_model import LABEL_NC, running_editor
from util.errors import OptionError
from editing.style_mixing import StyleMixer, replace_class_codes

# Equivalence is tested in float64 (docs/testing.md, "Numerics"). The renderer reorders the
# arithmetic (batch norm folded into cached maps, the style convolution as one GEMM, cached sums);
# each reordered step rounds differently by a few units of 2^-53 relative, on values of order 1 to
# 1e2, through about thirty layers: differences of order 1e-13 at most (measured: up to 3.4e-15).
RENDER_TOL = 1e-10


# ------------------------------------------------------------------------------- renderer
def _random_generator(mode, norm_G, label_nc=4, crop=64):
    """A generator whose every cached term matters: noise, blending, running statistics, GSAS."""
    torch.manual_seed(1)
    opt = build_options(False, label_nc=label_nc, ngf=4, crop_size=crop, num_upsampling_layers=mode,
                        norm_G=norm_G, init_variance=0.5, gpu_ids="-1")  # larger than 0.02: codes and layout matter
    net = SuperStyleNetGenerator.from_options(opt)
    with torch.no_grad():
        for m in net.modules():
            if hasattr(m, "noise_var"):
                m.noise_var.normal_(0, 0.5)
            if hasattr(m, "blending_gamma"):
                m.blending_gamma.normal_(0, 1)
                m.blending_beta.normal_(0, 1)
            if hasattr(m, "coefficient"):
                m.coefficient.weight.normal_(0, 2)
            if hasattr(m, "momentum"):
                m.momentum = 1.0  # one training pass sets the running statistics to batch statistics
    seg = torch.zeros(2, label_nc, crop, crop).scatter_(1, torch.randint(0, label_nc, (2, 1, crop, crop)), 1.0)
    net.train()
    with torch.no_grad():
        net(seg, torch.rand(2, label_nc, 512) * 2 - 1)
    return net.eval().double()


def _layout(label_nc, crop, absent):
    """One-hot (1, J, H, W) segmap of blobs; class ``absent`` does not occur."""
    g = torch.Generator().manual_seed(2)
    small = torch.randint(0, label_nc - 1, (1, 1, crop // 8, crop // 8), generator=g)
    label = torch.nn.functional.interpolate(small.float(), size=(crop, crop), mode="nearest").long()
    label[label >= absent] += 1
    return torch.zeros(1, label_nc, crop, crop, dtype=torch.float64).scatter_(1, label, 1.0)


def _literal(net, segmap, codes, seed):
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        return net(segmap, codes)


@pytest.mark.parametrize("mode,norm_G", [("normal", "spectralspadesyncbatch3x3"), ("more", "spadebatch3x3")])
def test_layout_renderer_matches_the_literal_generator(mode, norm_G):
    net = _random_generator(mode, norm_G)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    segmap = _layout(4, 64, absent=2)
    codes = torch.rand(1, 4, 512, dtype=torch.float64) * 2 - 1
    renderer = LayoutRenderer(net, seed=5, max_layouts=2)
    reference = _literal(net, segmap, codes, 5)
    first = renderer.render("a", segmap, codes)
    assert (first - reference).abs().max() < RENDER_TOL
    assert reference.std() > 0.05 and reference.abs().max() < 0.999  # neither flat nor saturated

    # a changed code (present class), a changed absent class, all codes changed: replays of the cached layout
    one = codes.clone()
    one[0, 1] = torch.rand(512)
    absent = one.clone()
    absent[0, 2] = torch.rand(512)
    for new in (one, absent, torch.rand(1, 4, 512, dtype=torch.float64) * 2 - 1, codes):
        expected = _literal(net, segmap, new, 5)
        assert (renderer.render("a", segmap, new) - expected).abs().max() < RENDER_TOL
    assert (_literal(net, segmap, one, 5) - reference).abs().max() > 0.01  # the code matters

    # the model is untouched: same modules, keys and values, same literal output
    after = net.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    assert torch.equal(_literal(net, segmap, codes, 5), reference)

    # a second layout, then a third: least recently used is dropped
    other = _layout(4, 64, absent=3).flip(-1)
    assert (renderer.render("b", other, codes) - _literal(net, other, codes, 5)).abs().max() < RENDER_TOL
    renderer.render("a", segmap, codes)
    renderer.render("c", other.flip(-2), codes)
    assert renderer.cached_layouts() == ["a", "c"]


def _paint(segmap, value, rows, cols):
    """A copy of the one-hot ``segmap`` with class ``value`` painted into ``[rows, cols]``."""
    label = segmap.argmax(1)
    label[0, rows, cols] = value
    return torch.zeros_like(segmap).scatter_(1, label[:, None], 1.0)


@pytest.mark.parametrize("mode,norm_G", [("normal", "spectralspadesyncbatch3x3"), ("more", "spadebatch3x3")])
def test_layout_renderer_follows_a_painted_layout(mode, norm_G):
    """Changing the layout under one key re-renders exactly what the literal generator gives for it."""
    net = _random_generator(mode, norm_G)
    segmap = _layout(4, 64, absent=2)
    codes = torch.rand(1, 4, 512, dtype=torch.float64) * 2 - 1
    renderer = LayoutRenderer(net, seed=5, max_layouts=1)
    renderer.render("a", segmap, codes)
    stroke = _paint(segmap, 1, slice(20, 27), slice(30, 41))            # a stroke inside the image
    corner = _paint(stroke, 2, slice(0, 5), slice(58, 64))               # the absent class 2, at a corner
    gone = _paint(corner, 0, slice(None), slice(None))                  # every class but 0 removed
    scattered = _paint(_paint(segmap, 3, slice(0, 2), slice(0, 2)), 3, slice(62, 64), slice(62, 64))
    new_codes = codes.clone()
    new_codes[0, 2] = torch.rand(512)  # the absent class's code changes while it is absent...
    for painted, c in [(stroke, codes), (corner, codes), (segmap, codes), (gone, codes), (corner, new_codes),
                       (scattered, new_codes), (segmap, codes)]:  # ...and is used when it is painted in
        expected = _literal(net, painted, c, 5)
        assert (renderer.render("a", painted, c) - expected).abs().max() < RENDER_TOL
    assert renderer.cached_layouts() == ["a"]
    # the layout matters, and a stroke changes the image around it far more than in a distant corner
    diff = (_literal(net, stroke, codes, 5) - _literal(net, segmap, codes, 5)).abs().amax(dim=1)[0]
    assert diff[20:27, 30:41].mean() > 0.01 and diff[20:27, 30:41].mean() > 10 * diff[50:, :15].mean()


def test_layout_renderer_refuses_batches_and_training_mode():
    net = _random_generator("normal", "spectralspadesyncbatch3x3", crop=32)
    renderer = LayoutRenderer(net)
    seg = _layout(4, 32, absent=1)
    codes = torch.rand(2, 4, 512, dtype=torch.float64)
    with pytest.raises(ValueError, match="one image at a time"):
        renderer.render("x", seg.repeat(2, 1, 1, 1), codes)
    net.train()
    with pytest.raises(ValueError, match="eval mode"):
        renderer.render("x", seg, codes[:1])


# ------------------------------------------------------------------------------- server fixture
@pytest.fixture(scope="module")
def app(tiny_trained):
    """The tiny trained model (tests/_tiny_model.py) served by the editor on a free port, in a thread."""
    tiny = tiny_trained
    with running_editor(tiny, "--spse_size", "32", "--max_upload_mb", "1") as server:
        yield tiny, server


def call(server, path, body=None, raw=None):
    """(status, parsed JSON or bytes) of one request."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(server.url.rstrip("/") + path, data=data,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status, payload, ctype = resp.status, resp.read(), resp.headers.get("Content-Type", "")
            headers = dict(resp.headers)
    except urllib.error.HTTPError as e:
        status, payload, ctype, headers = e.code, e.read(), e.headers.get("Content-Type", ""), dict(e.headers)
    if ctype.startswith("application/json"):
        return status, json.loads(payload)
    return status, (payload, headers)


def session(server):
    status, out = call(server, "/api/sessions", {})
    assert status == 200
    return out["session"]


def act(server, sid, action, **body):
    return call(server, f"/api/sessions/{sid}/{action}", body)


def image_of(state):
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(state["image"].split(",", 1)[1]))).convert("RGB"))


def data_url(array):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def most_different(tiny, sample, j):
    """Index of the sample whose class-j colour differs most from ``sample``'s (a clear restyle)."""
    own = tiny.samples[sample].codes[j]
    return int(np.argmax([np.abs(s.codes[j] - own).mean() if i != sample else -1
                          for i, s in enumerate(tiny.samples)]))


# ------------------------------------------------------------------------------- engine and API
def test_server_listens_on_loopback_and_serves_the_page(app):
    tiny, server = app
    assert server.server_address[0] == "127.0.0.1"
    status, (page, headers) = call(server, "/")
    assert status == 200 and b'id="result-view"' in page and headers["Content-Type"].startswith("text/html")
    status, info = call(server, "/api/info")
    assert [c["name"] for c in info["classes"]] == ["background", "box", "disc"]
    assert [s["name"] for s in info["samples"]][:3] == ["s0", "s1", "s2"] and len(info["samples"]) == 16
    import http.client

    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
    conn.request("GET", "/api/info", headers={"Host": "attacker.example:80"})  # as after DNS rebinding
    answer = conn.getresponse()
    assert answer.status == 403 and "loopback" in json.loads(answer.read())["error"]
    conn.close()
    status, (png, _) = call(server, "/api/samples/3/thumb.png")
    assert status == 200 and png.startswith(b"\x89PNG")
    status, (png, _) = call(server, "/api/samples/3/label.png")
    label_rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    colours = {c["index"]: c["colour"] for c in info["classes"]}
    centre = "#%02x%02x%02x" % tuple(label_rgb[16, 16])
    assert centre == colours[int(tiny.samples[3].label[16, 16])]  # colourised with the legend's colours


def test_engine_render_equals_style_mixer(app):
    """The engine's images are StyleMixer's (the literal forward pass), compared in float64."""
    from editor.engine import EditorEngine
    from models.inference import load_inference_model

    tiny, server = app
    model = load_inference_model(tiny.opt).double()  # the checkpoint's weights
    samples = [(s.name, s.label_path, s.image_path, s.code_path) for s in server.engine.samples]
    engine = EditorEngine(model, tiny.opt, samples, server.engine.class_names)
    mixer = StyleMixer(model, tiny.opt, seed=tiny.opt.seed)
    for i in (4, 5):
        label = mixer.load_label(tiny.samples[i].label_path)
        mixed = replace_class_codes(tiny.samples[i].codes, tiny.samples[7].codes, [1])
        for codes in (mixed, tiny.samples[i].codes):  # first render (recording), then a replay
            assert np.array_equal(engine.render(i, codes), mixer.generate(label, codes))
        # painted label maps (a stroke of the box class, then the disc painted over with background)
        stroke = painted_label(label, [{"op": "paint", "class": 1, "size": 4, "points": [[2, 3], [20, 9]]}])
        no_disc = torch.where(label == 2, 0, label)
        for painted in (stroke, no_disc, label):
            assert np.array_equal(engine.render(i, mixed, painted), mixer.generate(painted, mixed))


def test_restyling_a_class_changes_mainly_its_region_and_undo_reset_restore(app):
    tiny, server = app
    sid = session(server)
    status, st = act(server, sid, "sample", sample=0)
    assert status == 200 and st["sample_name"] == "s0" and st["present"] == [0, 1, 2] and not st["can_undo"]
    original = image_of(st).astype(float)
    label = tiny.samples[0].label
    ys, xs = np.nonzero(label == 2)
    status, hit = act(server, sid, "pick", x=(xs.mean() + 0.5) / 32, y=(ys.mean() + 0.5) / 32)
    assert hit == {"class": 2, "name": "disc"}

    style = most_different(tiny, 0, 2)
    status, st = act(server, sid, "style", classes=[2], source=f"sample:{style}", alpha=1)
    assert status == 200 and st["edits"] == [f"disc \u2190 style of s{style}"] and st["can_undo"]
    change = np.abs(image_of(st) - original).mean(-1)
    disc = label == 2
    assert change[disc].mean() > 3 and change[disc].mean() > 3 * change[~disc].mean()

    # the slider amends the edit it just made; alpha 0 gives back the original
    status, st = act(server, sid, "style", classes=["disc"], source=f"sample:{style}", alpha=0.0, amend=True)
    assert len(st["edits"]) == 1 and "alpha 0" in st["edits"][0]
    assert np.abs(image_of(st) - original).max() <= 1
    status, st = act(server, sid, "style", classes=[2], source=f"sample:{style}", alpha=0.5, amend=True)
    half = np.abs(image_of(st) - original).mean(-1)[disc].mean()
    assert 0.1 * change[disc].mean() < half < 0.9 * change[disc].mean()

    # colour: the disc takes on the chosen red
    status, st = act(server, sid, "colour", classes=[2], colour="#ff0000")
    assert len(st["edits"]) == 2
    red = image_of(st).astype(float)
    # the disc's red rises clearly (as the restyle above: > 3 grey levels) and far more than anywhere else
    redder = (red[..., 0] - original[..., 0])
    assert redder[disc].mean() > 3 and redder[disc].mean() > 10 * np.abs(redder[~disc]).mean()
    assert np.abs(np.array([int(st["colours"]["2"][i:i + 2], 16) for i in (1, 3, 5)]) - [255, 0, 0]).max() <= 2
    mean = class_mean_colours(apply_edits(tiny.samples[0].codes, [{"op": "colour", "classes": [2], "rgb": [1, 0, 0]}]))
    assert np.abs(mean[2] - [1, 0, 0]).max() < 0.01 and np.array_equal(mean[:2], class_mean_colours(
        tiny.samples[0].codes)[:2])

    status, (png, headers) = call(server, f"/api/sessions/{sid}/image.png?download=1")
    assert headers["Content-Disposition"] == 'attachment; filename="s0_edited.png"'
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png)).convert("RGB")), red.astype(np.uint8))

    status, st = act(server, sid, "undo")
    assert len(st["edits"]) == 1
    status, st = act(server, sid, "reset")
    assert st["edits"] == [] and np.abs(image_of(st) - original).max() <= 1
    status, err = act(server, sid, "undo")
    assert status == 400 and "nothing to undo" in err["error"]


def test_upload_extracts_codes_and_restyles(app):
    tiny, server = app
    sid = session(server)
    base = image_of(act(server, sid, "sample", sample=1)[1]).astype(float)
    src = tiny.samples[most_different(tiny, 1, 1)]
    status, st = act(server, sid, "upload", image=data_url(src.image), image_name="photo.png",
                     label=data_url(src.label), label_name="photo_label.png")
    assert status == 200 and st["uploads"] == [st["upload"]] and st["upload"]["name"] == "photo.png"
    codes, present = server.engine.upload_codes(base64.b64decode(data_url(src.image).split(",")[1]), "photo.png",
                                                base64.b64decode(data_url(src.label).split(",")[1]), "l.png")
    np.testing.assert_array_equal(codes, extract_style_codes(src.image, src.label, LABEL_NC, size=32))
    assert present == [0, 1, 2]
    status, st = act(server, sid, "style", classes=["box"], source=f"upload:{st['upload']['id']}", alpha=1)
    assert status == 200 and "photo.png" in st["edits"][0]
    box = tiny.samples[1].label == 1
    change = np.abs(image_of(st).astype(float) - base).mean(-1)
    assert change[box].mean() > 3 * change[~box].mean()


def test_bad_uploads_and_requests_give_messages_and_the_server_keeps_running(app):
    tiny, server = app
    sid = session(server)
    s = tiny.samples[2]
    text = "data:text/plain;base64," + base64.b64encode(b"not an image").decode()
    cases = [
        (dict(image=text, image_name="notes.txt", label=data_url(s.label), label_name="l.png"),
         "notes.txt: unreadable or corrupt image"),
        (dict(image=data_url(s.image), image_name="p.png", label=data_url((s.label + 5).astype(np.uint8)),
              label_name="bad_label.png"), "bad_label.png: label values 5, 6, 7 are out of range for label_nc=3"),
        (dict(image=data_url(s.image[:16]), image_name="half.png", label=data_url(s.label), label_name="l.png"),
         "half.png: image is 32x16 (aspect 2.000) but its label map l.png is 32x32 (aspect 1.000)"),
        (dict(image=data_url(s.image), image_name="p.png", label=data_url(s.label), label_name="label.jpg"),
         "label.jpg: label map in a lossy format"),
        (dict(image=data_url(s.image), image_name="p.png", label=data_url(s.image), label_name="rgb.png"),
         "rgb.png: label map is a colour image"),
        (dict(image="data:image/png;base64,@@@", image_name="p.png", label=data_url(s.label), label_name="l.png"),
         "p.png: the upload is not valid base64"),
    ]
    for body, message in cases:
        status, err = act(server, sid, "upload", **body)
        assert status == 400 and message in err["error"], err
    # the project's rule: sizes may differ when the aspect ratios agree (CelebAMask-HQ: 1024² photos, 512² maps)
    status, st = act(server, sid, "upload", image=data_url(np.kron(s.image, np.ones((2, 2, 1), np.uint8))),
                     image_name="double.png", label=data_url(s.label), label_name="l.png")
    assert status == 200 and st["upload"]["name"] == "double.png"
    status, err = act(server, sid, "style", classes=[1], source="sample:1")
    assert status == 400 and "pick a sample first" in err["error"]
    act(server, sid, "sample", sample=2)
    for body, message in [(dict(classes=["wheel"], source="sample:1"), "unknown class name 'wheel'"),
                          (dict(classes=[1], source="sample:99"), "sample 99 does not exist"),
                          (dict(classes=[1], source="upload:nope"), "unknown style source"),
                          (dict(classes=[1], source="sample:1", alpha=2), "must lie in [0, 1]")]:
        status, err = act(server, sid, "style", **body)
        assert status == 400 and message in err["error"], err
    # a source without the class has no style for it
    no_disc = np.where(tiny.samples[2].label == 2, 0, tiny.samples[2].label).astype(np.uint8)
    status, st = act(server, sid, "upload", image=data_url(s.image), image_name="nodisc.png",
                     label=data_url(no_disc), label_name="nodisc_label.png")
    assert status == 200 and st["uploads"][-1]["name"] == "nodisc.png"
    for body, message in [(dict(classes=[2], source=f"upload:{st['upload']['id']}"), "nodisc.png has no disc")]:
        status, err = act(server, sid, "style", **body)
        assert status == 400 and message in err["error"], err
    assert call(server, f"/api/sessions/{sid}/style", raw=b"{not json")[0] == 400
    assert call(server, "/api/sessions/unknown/state", {})[0] == 404
    assert call(server, "/api/nothing")[0] == 404
    status, err = call(server, f"/api/sessions/{sid}/upload", raw=b" " * (3 * 2 ** 20))
    assert status == 413 and "larger than the limit" in err["error"]
    # still serving, state intact: one sample, no edits
    status, st = act(server, sid, "state")
    assert status == 200 and st["sample"] == 2 and st["edits"] == []


def _literal_stroke(label, points, size, value):
    """The brush rule written out pixel by pixel: centres within size/2 of the polyline through the points' centres."""
    out = label.copy()
    centres = [(x + 0.5, y + 0.5) for x, y in points]
    segments = list(zip(centres, centres[1:])) or [(centres[0], centres[0])]
    for r in range(label.shape[0]):
        for c in range(label.shape[1]):
            px, py = c + 0.5, r + 0.5
            for (ax, ay), (bx, by) in segments:
                length2 = (bx - ax) ** 2 + (by - ay) ** 2
                t = 0.0 if length2 == 0 else min(max(((px - ax) * (bx - ax) + (py - ay) * (by - ay)) / length2, 0), 1)
                if (px - ax - t * (bx - ax)) ** 2 + (py - ay - t * (by - ay)) ** 2 <= (size / 2) ** 2:
                    out[r, c] = value
    return out


def test_brush_strokes_follow_the_literal_rule():
    rng = np.random.default_rng(3)
    for size in (1, 2, 3, 8):
        label = rng.integers(0, 3, (20, 24))
        points = [[int(x), int(y)] for x, y in zip(rng.integers(-2, 26, 4), rng.integers(-2, 22, 4))]
        points = [[min(max(x, 0), 23), min(max(y, 0), 19)] for x, y in points]
        for stroke in (points, points[:1]):
            painted = label.copy()
            paint_stroke(painted, stroke, size, 7)
            assert np.array_equal(painted, _literal_stroke(label, stroke, size, 7)), (size, stroke)
    edit = parse_stroke({"class": 1, "size": 3, "points": [[0, 0], [0.001, 0.001], [1, 1], [0.5, 0.25]]}, (20, 24),
                        int)
    assert edit == {"op": "paint", "class": 1, "size": 3, "points": [[0, 0], [23, 19], [12, 5]]}


def test_painting_renders_from_the_painted_layout_and_downloads_as_a_label_file(app):
    from data.image_io import read_label

    tiny, server = app
    sid = session(server)
    original = image_of(act(server, sid, "sample", sample=0)[1]).astype(float)
    label = tiny.samples[0].label
    cx, cy = (int(v) for v in np.argwhere(label == 2).mean(0)[::-1])
    points = [[(cx - 8 + 0.5) / 32, (cy + 0.5) / 32], [(cx + 8 + 0.5) / 32, (cy + 0.5) / 32]]
    status, st = act(server, sid, "paint", **{"class": "box", "size": 3, "points": points})
    assert status == 200 and st["edits"] == ["painted box (brush 3)"] and st["painted"] and st["can_undo"]
    assert st["label_url"].startswith(f"/api/sessions/{sid}/label.png")
    expected = _literal_stroke(label, [[max(cx - 8, 0), cy], [min(cx + 8, 31), cy]], 3, 1)
    assert (expected != label).sum() > 10

    # the label file: single-channel class indices, named after the sample, readable by the project's reader
    status, (png, headers) = call(server, f"/api/sessions/{sid}/label_map.png")
    assert status == 200 and headers["Content-Disposition"] == 'attachment; filename="s0_label.png"'
    assert Image.open(io.BytesIO(png)).mode == "L" and np.array_equal(np.asarray(Image.open(io.BytesIO(png))), expected)
    path = tiny.root / "painted_label.png"
    path.write_bytes(png)
    try:
        assert np.array_equal(read_label(str(path)), expected)
    finally:
        path.unlink()
    _, (colour_png, _) = call(server, st["label_url"])
    colours = {c["index"]: c["colour"] for c in call(server, "/api/info")[1]["classes"]}
    assert "#%02x%02x%02x" % tuple(np.asarray(Image.open(io.BytesIO(colour_png)).convert("RGB"))[cy, cx]) == colours[1]

    # the image is the literal generator's for the painted map; the stroke changed the image around it
    mixer = StyleMixer(server.engine.model, tiny.opt, seed=tiny.opt.seed)
    literal = mixer.generate(torch.from_numpy(expected.astype(np.int64))[None], tiny.samples[0].codes)
    assert np.abs(image_of(st).astype(int) - literal).max() <= 1
    assert np.abs(image_of(st) - original).mean(-1)[expected != label].mean() > 3
    assert act(server, sid, "pick", x=(cx + 0.5) / 32, y=(cy + 0.5) / 32)[1]["class"] == 1

    # painted over with background, box and disc are absent: recolouring or restyling them is refused
    status, st = act(server, sid, "paint", **{"class": 0, "size": 64, "points": [[0.5, 0.5]]})
    assert status == 200 and st["present"] == [0] and sorted(st["colours"]) == ["0"]
    for action, body in [("colour", dict(classes=["box"], colour="#ff0000")),
                         ("style", dict(classes=[2], source="sample:3"))]:
        status, err = act(server, sid, action, **body)
        assert status == 400 and "does not occur in the label map of s0" in err["error"], err
    assert len(act(server, sid, "state")[1]["edits"]) == 2  # nothing logged
    status, st = act(server, sid, "paint", **{"class": 2, "size": 5, "points": [[0.5, 0.5]]})
    status, st = act(server, sid, "colour", classes=[2], colour="#00ff00")
    assert status == 200 and len(st["edits"]) == 4

    for _ in range(3):
        status, st = act(server, sid, "undo")
    assert st["edits"] == ["painted box (brush 3)"]
    assert np.abs(image_of(st).astype(int) - literal).max() <= 1
    status, st = act(server, sid, "reset")
    assert not st["painted"] and st["label_url"] == "/api/samples/0/label.png"
    assert np.abs(image_of(st) - original).max() <= 1
    for body, message in [({"class": 1, "size": 0, "points": points}, "brush size 0"),
                          ({"class": 1, "size": 65, "points": points}, "brush size 65"),
                          ({"class": 1, "size": "big", "points": points}, "whole number"),
                          ({"class": 1, "points": []}, "at least one point"),
                          ({"class": 1, "points": [[1.5, 0.5]]}, "outside the label map"),
                          ({"class": 1, "points": [["a", 0.5]]}, "expected [x, y]"),
                          ({"class": 1, "points": [[0.5, 0.5]] * 5000}, "at most 4096 points"),
                          ({"class": "wheel", "points": points}, "unknown class name 'wheel'"),
                          ({"class": True, "points": points}, "is not a class index or name"),
                          ({"class": 9, "points": points}, "out of range")]:
        status, err = act(server, sid, "paint", **body)
        assert status == 400 and message in err["error"], (body, err)
    assert act(server, sid, "state")[1]["edits"] == []


def test_two_tabs_editing_at_once_keep_their_own_state(app):
    tiny, server = app
    a, b = session(server), session(server)
    alone = image_of(act(server, b, "sample", sample=3)[1])
    act(server, a, "sample", sample=3)
    errors = []

    def edit_a():
        for i in range(4):
            status, out = act(server, a, "style", classes=[1, 2], source=f"sample:{4 + i}")
            if status != 200:
                errors.append(out)

    def edit_b():
        for colour in ("#ff0000", "#00ff00", "#0000ff"):
            status, out = act(server, b, "colour", classes=[2], colour=colour)
            if status != 200:
                errors.append(out)

    threads = [threading.Thread(target=edit_a), threading.Thread(target=edit_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    st_a, st_b = act(server, a, "state")[1], act(server, b, "state")[1]
    assert len(st_a["edits"]) == 4 and all("style of" in e for e in st_a["edits"])
    assert len(st_b["edits"]) == 3 and all("colour" in e for e in st_b["edits"])
    engine = server.engine
    codes_b = apply_edits(engine.sample_codes(3), server.store.get(b).edits)
    status, (png, _) = call(server, f"/api/sessions/{b}/image.png")
    assert np.abs(np.asarray(Image.open(io.BytesIO(png))).astype(int) - engine.render(3, codes_b)).max() <= 1
    status, st = act(server, b, "reset")
    assert np.abs(image_of(st).astype(int) - alone).max() <= 1 and len(act(server, a, "state")[1]["edits"]) == 4


# ------------------------------------------------------------------------------- options and loading
def test_listening_elsewhere_needs_an_explicit_flag(app):
    tiny, _ = app
    base = ["--name", tiny.name, "--checkpoints_dir", tiny.ckpt, "--data", str(tiny.ds), "--gpu_ids", "-1"]
    with pytest.raises(OptionError, match="--allow_remote"):
        EditorOptions().parse(base + ["--host", "0.0.0.0"])
    opt = EditorOptions().parse(base + ["--host", "0.0.0.0", "--allow_remote"])
    assert opt.host == "0.0.0.0" and opt.image_dir.endswith("images") and opt.instance_dir.endswith("codes")
    assert EditorOptions().parse(base).host == "127.0.0.1"
    with pytest.raises(OptionError, match="make demo"):
        edit_app.build(["--demo", "--checkpoints_dir", str(tiny.root / "none"), "--gpu_ids", "-1"])


def test_release_checkpoint_layout_loads(app, tmp_path):
    """A generator saved in the release's layout (per-class fc_mu<j>, no opt.json) edits the same way."""
    from util.torch_io import torch_save_atomic

    tiny, server = app
    state = {}
    for k, v in tiny.model.netG.state_dict().items():
        if ".fc_mu." in k:
            ace, kind = k.rsplit(".fc_mu.", 1)
            state.update({f"{ace}.fc_mu{j}.{kind}": v[j].clone() for j in range(v.shape[0])})
        else:
            state[k] = v.clone()
    torch_save_atomic(state, str(tmp_path / "release" / "latest_net_G.pth"))
    released = edit_app.build(["--name", "release", "--checkpoints_dir", str(tmp_path), "--data", str(tiny.ds),
                               "--label_nc", "3", "--crop_size", "32", "--ngf", "4", "--gpu_ids", "-1",
                               "--port", "0"])
    try:
        codes = tiny.samples[6].codes
        assert np.abs(released.engine.render(6, codes).astype(int) - server.engine.render(6, codes)).max() <= 1
    finally:
        released.server_close()


def test_samples_without_photographs(app, tmp_path):
    """Label maps and codes are all the editor needs; thumbnails then show the label maps."""
    import shutil

    tiny, server = app
    for sub in ("labels", "codes"):
        shutil.copytree(tiny.ds / sub, tmp_path / sub)
    with running_editor(tiny, "--data", str(tmp_path)) as bare:
        assert bare.engine.opt.image_dir is None and len(bare.engine.samples) == len(tiny.samples)
        status, (thumb, _) = call(bare, "/api/samples/2/thumb.png")
        _, (label_png, _) = call(bare, "/api/samples/2/label.png")
        assert status == 200 and np.array_equal(np.asarray(Image.open(io.BytesIO(thumb)).convert("RGB")),
                                                np.asarray(Image.open(io.BytesIO(label_png)).convert("RGB")))
        sid = session(bare)
        assert act(bare, sid, "sample", sample=2)[0] == 200


def test_serve_prints_the_local_url(app):
    from editor.server import serve

    tiny, _ = app
    server = edit_app.build(["--name", tiny.name, "--checkpoints_dir", tiny.ckpt, "--data", str(tiny.ds),
                             "--gpu_ids", "-1", "--port", "0"])
    out = io.StringIO()
    thread = threading.Thread(target=serve, args=(server, out))
    thread.start()
    try:
        assert call(server, "/api/info")[0] == 200
    finally:
        server.shutdown()
        thread.join()
    assert f"open http://127.0.0.1:{server.server_address[1]}/" in out.getvalue()
