"""The editor in a real browser: headless Chromium (the distribution's package) driven by selenium.

Loads the page, picks a sample from the thumbnail grid, clicks a region of the
label map to select its class, restyles that class from another sample and
checks that the image changed, mainly inside that class's region; then undo,
an upload error shown on the page, and a second tab with its own session.
Then paints a class into the label map with the mouse: the image shown is the
literal generator's for the painted map, the painted map downloads as a label
file, the before/after toggle shows the original, and undo takes the stroke back.

Without selenium, Chromium or chromedriver the test is skipped with the reason,
except under CI (``CI=true``), where it must run (``.ci/run`` installs them).
"""
import io
import os
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image

from tests._browser import INSTALL_HINT, EditorPage, find_browser, start_chromium
from tests._tiny_model import running_editor

IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@pytest.fixture(scope="module")
def driver():
    chromium, chromedriver, missing = find_browser()
    if missing:
        reason = f"the browser test needs {', '.join(missing)} ({INSTALL_HINT})"
        if IN_CI:
            pytest.fail(f"CI=true, but {reason}; .ci/run installs them")
        pytest.skip(f"{reason}; it runs in CI")
    d = start_chromium(chromium, chromedriver)
    yield d
    d.quit()


@pytest.fixture(scope="module")
def app(tiny_trained, driver):
    with running_editor(tiny_trained, "--spse_size", "32") as server:
        yield tiny_trained, server


def disc_pixel(label, j):
    """The pixel of class ``j`` nearest to the class's centroid (inside the region)."""
    ys, xs = np.nonzero(label == j)
    k = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)
    return int(xs[k]), int(ys[k])


def test_restyle_a_class_in_the_browser(driver, app, tmp_path):
    tiny, server = app
    page = EditorPage(driver).open(server.url)
    assert len(page.thumbnails()) == len(tiny.samples)
    page.select_sample(0)
    assert page.version() == 1
    original = page.shown_image().astype(float)

    label = tiny.samples[0].label
    page.click_label(*disc_pixel(label, 2))
    assert page.selected() == [2], page.message()
    own = tiny.samples[0].codes[2]
    style = int(np.argmax([np.abs(s.codes[2] - own).mean() for s in tiny.samples]))
    page.choose_source(f"sample:{style}").apply_style()
    assert page.message()[1] != "error", page.message()
    assert page.edits() == [f"disc \u2190 style of s{style}"]
    change = np.abs(page.shown_image() - original).mean(-1)
    disc = label == 2
    assert change[disc].mean() > 3 and change[disc].mean() > 3 * change[~disc].mean()

    page.undo()
    assert page.edits() == [] and np.abs(page.shown_image() - original).max() <= 1

    # a bad upload: the message appears on the page, and the page goes on working
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    page.upload(str(notes), tiny.samples[1].label_path)
    text, kind = page.message()
    assert kind == "error" and "notes.txt: unreadable or corrupt image" in text
    page.select_sample(1)
    assert page.version() == 4 and page.message()[1] != "error"

    # a second tab gets its own session; the first keeps its state
    first = page.session
    driver.switch_to.new_window("tab")
    try:
        other = EditorPage(driver).open(server.url)
        assert other.session != first and other.version() == 0 and other.edits() == []
        other.select_sample(5)
        assert other.version() == 1
    finally:
        driver.close()
        driver.switch_to.window(driver.window_handles[0])
    assert page.version() == 4 and server.store.get(first).sample == 1


def test_paint_the_label_map_in_the_browser(driver, app):
    from editing.style_mixing import StyleMixer

    tiny, server = app
    page = EditorPage(driver).open(server.url)
    # before a sample is picked: placeholders, no broken-image slots
    assert page.broken_images() == [] and len(page.placeholders()) == 2, page.placeholders()
    page.select_sample(0)
    assert page.broken_images() == [] and page.placeholders() == []
    original, original_label = page.shown_image(), page.label_src()

    label = tiny.samples[0].label
    cx, cy = disc_pixel(label, 2)
    stroke = [(max(cx - 6, 0), cy), (cx, cy), (min(cx + 6, 31), cy)]
    page.paint(1, 3, stroke)
    assert page.message()[1] != "error", page.message()
    assert page.edits() == ["painted box (brush 3)"] and page.label_src() != original_label

    # the painted map, downloaded as a label file: box painted along the stroke, nothing else changed
    with urllib.request.urlopen(page.label_map_url(), timeout=30) as resp:
        painted_file = Image.open(io.BytesIO(resp.read()))
    painted = np.asarray(painted_file)
    assert painted_file.mode == "L" and painted.shape == label.shape
    changed = painted != label
    assert (painted[changed] == 1).all() and (painted[cy, stroke[0][0]:stroke[-1][0] + 1] == 1).all()
    rows = np.nonzero(changed.any(axis=1))[0]
    assert changed.sum() > 10 and rows.min() >= cy - 2 and rows.max() <= cy + 2  # a 3-pixel brush on one row

    # the image shown is the literal generator's for the painted map and the sample's codes
    mixer = StyleMixer(server.engine.model, tiny.opt, seed=tiny.opt.seed)
    expected = mixer.generate(torch.from_numpy(painted.astype(np.int64))[None], tiny.samples[0].codes)
    shown = page.shown_image()
    assert np.abs(shown.astype(int) - expected).max() <= 1
    assert np.abs(shown.astype(float) - original).mean(-1)[changed].mean() > 3

    # before / after
    assert page.toggle_before() is True
    assert np.array_equal(page.shown_image(), original) and page.label_src() == original_label
    assert page.toggle_before() is False
    assert np.array_equal(page.shown_image(), shown)

    page.undo()
    assert page.edits() == [] and page.label_src() == original_label
    assert np.abs(page.shown_image().astype(int) - original).max() <= 1
