"""Headless Chromium through selenium, for the editor's browser test (and its screenshot script).

Only the distribution's browser and driver are used (Debian: ``apt-get install
chromium chromium-driver``); nothing is downloaded. ``CHROMIUM_BIN`` and
``CHROMEDRIVER_BIN`` override where they are looked for; selenium comes from
``requirements-ui.txt``.
"""
import os
import shutil

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DRIVER_PATHS = ("/usr/lib/chromium/chromedriver", "/usr/lib/chromium-browser/chromedriver")
INSTALL_HINT = ("apt-get install chromium chromium-driver; pip install -r requirements-ui.txt "
                "(or: make ui-deps)")


def find_browser():
    """``(chromium, chromedriver, problems)``: the executables found (or None) and what is missing."""
    problems = []
    try:
        import selenium  # noqa: F401
    except ImportError:
        problems.append("the selenium package")
    chromium = os.environ.get("CHROMIUM_BIN") or next(filter(None, map(shutil.which, BROWSER_NAMES)), None)
    driver = os.environ.get("CHROMEDRIVER_BIN") or shutil.which("chromedriver") or next(
        (p for p in DRIVER_PATHS if os.access(p, os.X_OK)), None)
    if not chromium or not os.access(chromium, os.X_OK):
        problems.append("a Chromium executable")
        chromium = None
    if not driver or not os.access(driver, os.X_OK):
        problems.append("chromedriver")
        driver = None
    return chromium, driver, problems


def start_chromium(chromium, driver, width=1280, height=900):
    """A headless Chromium ``selenium.webdriver.Chrome`` using the given executables (no downloads)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # selenium must never try to fetch a browser or driver
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-extensions", "--no-first-run", f"--window-size={width},{height}"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))


class EditorPage:
    """The editor's page in a selenium driver, with the steps a person takes (tests, screenshot script).

    Args:
        driver: a selenium WebDriver (see :func:`start_chromium`).
        timeout: seconds to wait for a render or an answer.
    """

    def __init__(self, driver, timeout=120):
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver = driver
        self.wait = WebDriverWait(driver, timeout)

    def _by_id(self, element_id):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.ID, element_id)

    def open(self, url):
        """Load the page and wait until it has its session."""
        self.driver.get(url)
        self.wait.until(lambda d: d.execute_script("return document.body.dataset.ready") == "1")
        return self

    @property
    def session(self):
        """This tab's session id."""
        return self.driver.execute_script("return document.body.dataset.session")

    def version(self):
        """Number of renders shown so far in this tab."""
        return int(self._by_id("result-view").get_attribute("data-version"))

    def _clear_message(self):
        self.driver.execute_script("document.getElementById('message').className = ''")

    def _after_render(self, action):
        before = self.version()
        self._clear_message()
        action()
        self.wait.until(lambda d: self.version() > before or self.message()[1] == "error")
        return self

    def thumbnails(self):
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, "img.thumb")

    def select_sample(self, index):
        """Click the thumbnail of sample ``index`` and wait for its render."""
        return self._after_render(lambda: self.thumbnails()[index].click())

    def _label_offset(self, view, x, y):
        """Offset from the label view's centre to the centre of label pixel (``x``, ``y``) as shown."""
        natural_w, natural_h = self.driver.execute_script(
            "return [arguments[0].naturalWidth, arguments[0].naturalHeight]", view)
        size = view.size
        scale = min(size["width"] / natural_w, size["height"] / natural_h)  # object-fit: contain
        return int((x + 0.5) * scale - natural_w * scale / 2), int((y + 0.5) * scale - natural_h * scale / 2)

    def click_label(self, x, y):
        """Click pixel (``x``, ``y``) of the label map as shown (select tool); waits until the selection changes."""
        from selenium.webdriver.common.action_chains import ActionChains

        self._by_id("tool-select").click()
        view = self._by_id("label-view")
        before = self.selected()
        self._clear_message()
        ActionChains(self.driver).move_to_element_with_offset(view, *self._label_offset(view, x, y)).click().perform()
        self.wait.until(lambda d: self.selected() != before or self.message()[1] == "error")
        return self

    def paint(self, class_index, size, points):
        """Paint class ``class_index`` with brush ``size`` by dragging through label pixels ``points``
        (``[(x, y), ...]``) with the mouse; waits for the render."""
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.support.ui import Select

        self._by_id("tool-paint").click()
        Select(self._by_id("paint-class")).select_by_value(str(class_index))
        self.driver.execute_script("const b = document.getElementById('brush-size'); b.value = arguments[0];"
                                   "b.dispatchEvent(new Event('input'));", int(size))
        view = self._by_id("label-view")
        chain = ActionChains(self.driver).move_to_element_with_offset(view, *self._label_offset(view, *points[0]))
        chain.click_and_hold()
        for x, y in points[1:]:
            chain.move_to_element_with_offset(view, *self._label_offset(view, x, y))
        return self._after_render(lambda: chain.release().perform())

    def toggle_before(self):
        """Click the before/after toggle; returns True when it now shows the sample before the edits."""
        button = self._by_id("before-after")
        button.click()
        return button.get_attribute("aria-pressed") == "true"

    def label_src(self):
        """The address of the label map shown."""
        return self._by_id("label-view").get_attribute("src")

    def label_map_url(self):
        """The absolute address of the "Download label map" link."""
        return self._by_id("download-label").get_property("href")

    def broken_images(self):
        """Ids (or sources) of the displayed images that hold no picture (no source, or one that failed),
        once every displayed image has finished loading."""
        shown = "[...document.images].filter((im) => im.getClientRects().length > 0)"
        self.wait.until(lambda d: d.execute_script(f"return {shown}.every((im) => im.complete)"))
        return self.driver.execute_script(f"return {shown}.filter((im) => im.naturalWidth === 0)"
                                          ".map((im) => im.id || im.src);")

    def placeholders(self):
        """Texts of the placeholders shown instead of images."""
        from selenium.webdriver.common.by import By

        return [p.text for p in self.driver.find_elements(By.CSS_SELECTOR, ".placeholder") if p.is_displayed()]

    def selected(self):
        """Sorted class indices ticked in the legend."""
        from selenium.webdriver.common.by import By

        boxes = self.driver.find_elements(By.CSS_SELECTOR, "#legend input[type=checkbox]")
        return sorted(int(b.get_attribute("data-class")) for b in boxes if b.is_selected())

    def choose_source(self, value):
        """Pick the style source (``"sample:<i>"`` or ``"upload:<id>"``)."""
        from selenium.webdriver.support.ui import Select

        Select(self._by_id("style-source")).select_by_value(value)
        return self

    def apply_style(self):
        """Click "Apply style" and wait for the render."""
        return self._after_render(lambda: self._by_id("apply-style").click())

    def set_colour(self, hex_colour):
        """Choose ``hex_colour`` (``"#rrggbb"``) in the colour control, as a person does; waits for the render."""
        def pick():
            self.driver.execute_script(
                "const c = document.getElementById('colour'); c.value = arguments[0];"
                "c.dispatchEvent(new Event('change'));", hex_colour)

        return self._after_render(pick)

    def undo(self):
        """Click "Undo" and wait for the render."""
        return self._after_render(lambda: self._by_id("undo").click())

    def upload(self, image_path, label_path):
        """Upload a photo and a label map; waits for the answer (an error, or the new source)."""
        self._by_id("upload-box").click()
        self._by_id("upload-image").send_keys(image_path)
        self._by_id("upload-label").send_keys(label_path)
        self._by_id("upload").click()
        self.wait.until(lambda d: self.driver.execute_script("return document.body.classList.contains('busy')")
                        is False)
        return self

    def message(self):
        """``(text, kind)`` of the message line (kind: "info", "error" or "")."""
        box = self._by_id("message")
        return box.text, box.get_attribute("class") or ""

    def edits(self):
        """Texts of the edit list."""
        from selenium.webdriver.common.by import By

        return [li.text for li in self.driver.find_elements(By.CSS_SELECTOR, "#history li")]

    def shown_image(self):
        """The synthesized image as displayed: ``(H, W, 3)`` uint8 decoded from the page's image."""
        import base64
        import io

        import numpy as np
        from PIL import Image

        src = self._by_id("result-view").get_attribute("src")
        if not src.startswith("data:image/png;base64,"):
            raise ValueError(f"the page shows no rendered image yet ({src[:40]!r})")
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB"))
