"""Screenshot of the style editor for docs/editor.md, taken with the distribution's headless Chromium.

    python scripts/editor_screenshot.py --out docs/editor.png            # on the demo model (make demo)
    python scripts/editor_screenshot.py --out shot.png -- --name celeba --data datasets/celeba/test

Starts the editor (``edit_app.build``; arguments after ``--`` go to it,
default ``--demo``) on a free loopback port, picks ``--sample``, clicks the
largest region of its label map (or ``--class_index``), restyles it from the
sample (with that class) whose code for it differs most (or ``--source``),
optionally recolours ``--colour_class`` with ``--colour``, and saves
the browser window as a palette PNG (``--colours``) to keep the file small.
Needs selenium (requirements-ui.txt) and ``apt-get install chromium chromium-driver``.
"""
import argparse
import io
import os
import sys
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def centre_pixel(label, j):
    """``(x, y)`` of the pixel of class ``j`` nearest to the class's centroid."""
    import numpy as np

    ys, xs = np.nonzero(label == j)
    if not len(ys):
        raise ValueError(f"class {j} does not occur in the sample")
    k = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))
    return int(xs[k]), int(ys[k])


def build_parser():
    """The screenshot's own flags (the editor's follow a ``--``)."""
    from util.cli import HelpFormatter

    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "editor.png"), help="the PNG written")
    p.add_argument("--sample", type=int, default=0, help="sample shown")
    p.add_argument("--class_index", type=int, default=None,
                   help="class to restyle; when left out, the largest region")
    p.add_argument("--source", type=int, default=None,
                   help="style source sample; when left out, the one with the most different code")
    p.add_argument("--colour_class", type=int, default=None, help="then also give this class --colour")
    p.add_argument("--colour", default="#3070ff", help="colour for --colour_class")
    p.add_argument("--width", type=int, default=1180, help="browser window width (pixels)")
    p.add_argument("--height", type=int, default=760, help="browser window height (pixels)")
    p.add_argument("--colours", type=int, default=96, help="palette size of the saved PNG")
    return p


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    app_args = argv[argv.index("--") + 1:] if "--" in argv else ["--demo"]
    own = argv[:argv.index("--")] if "--" in argv else argv
    args = build_parser().parse_args(own)

    import numpy as np
    from PIL import Image

    import edit_app
    from tests._browser import EditorPage, find_browser, start_chromium
    from util.errors import OptionError
    from util.io import save_image_atomic

    chromium, driver_path, missing = find_browser()
    if missing:
        raise OptionError(f"needs {', '.join(missing)} (apt-get install chromium chromium-driver; "
                          f"pip install -r requirements-ui.txt)")
    server = edit_app.build(app_args + ["--port", "0"])
    engine = server.engine
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    driver = start_chromium(chromium, driver_path, args.width, args.height)
    try:
        page = EditorPage(driver).open(server.url)
        page.select_sample(args.sample)
        label = engine.sample_label(args.sample)[0].numpy()
        counts = np.bincount(label.ravel(), minlength=engine.label_nc)[:engine.label_nc]
        j = int(np.argmax(counts)) if args.class_index is None else args.class_index
        page.click_label(*centre_pixel(label, j))
        own_code = engine.sample_codes(args.sample)[j]
        source = args.source if args.source is not None else int(np.argmax(
            [np.abs(engine.sample_codes(i)[j] - own_code).mean() if j in engine.present_classes(i) else -1
             for i in range(len(engine.samples))]))
        page.choose_source(f"sample:{source}").apply_style()
        names = engine.class_names
        caption = f"{names[j]} of {engine.samples[args.sample].name} has the style of {engine.samples[source].name}"
        if args.colour_class is not None:
            page.click_label(*centre_pixel(label, j))  # deselect j
            page.click_label(*centre_pixel(label, args.colour_class))
            page.set_colour(args.colour)
            caption += f"; {names[args.colour_class]} is recoloured"
        text, kind = page.message()
        if kind == "error":
            raise OptionError(f"the editor reported: {text}")
        driver.execute_script("document.getElementById('message').textContent = arguments[0];"
                              "document.getElementById('message').className = 'info';", caption + ".")
        shot = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    finally:
        driver.quit()
        server.shutdown()
        server.server_close()
    small = shot.quantize(colors=args.colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    save_image_atomic(args.out, small)
    print(f"screenshot {shot.size[0]}x{shot.size[1]}, {os.path.getsize(args.out) // 1024} KiB: {args.out}")


if __name__ == "__main__":
    from util.cli import run_cli

    sys.exit(run_cli(main))
