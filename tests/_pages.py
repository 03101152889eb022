"""Reading the result pages back (stdlib ``html.parser``): heading facts, legend entries, grid cells."""
import html.parser
import re
import types


class _PageParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.title, self.facts, self.legend, self.grid = None, {}, [], []
        self._stack, self._text, self._fact, self._entry, self._cell, self._row = [], [], None, None, None, None
        self._in = {"h2": False, "facts": False, "legend": False, "grid": False}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        cls = attrs.get("class", "")
        if tag == "h2":
            self._in["h2"], self._text = True, []
        elif tag == "table" and cls == "facts":
            self._in["facts"] = True
        elif tag == "table" and cls == "grid":
            self._in["grid"] = True
        elif tag == "div" and cls == "legend":
            self._in["legend"] = True
        elif self._in["legend"] and tag == "span" and cls.startswith("entry"):
            self._entry = {"index": int(attrs["data-class"]), "marked": "marked" in cls.split(), "text": []}
        elif self._entry is not None and tag == "span" and cls == "swatch":
            self._entry["colour"] = re.search(r"background:(#[0-9a-f]{6})", attrs["style"]).group(1)
        elif self._in["facts"] and tag in ("th", "td"):
            self._text = []
        elif self._in["grid"] and tag == "tr":
            self._row = []
        elif self._in["grid"] and tag in ("th", "td"):
            self._cell = {"images": [], "links": [], "lines": [], "header": tag == "th"}
        elif self._cell is not None and tag == "img":
            self._cell["images"].append(attrs["src"])
            self._cell["width"] = attrs.get("style")
        elif self._cell is not None and tag == "a":
            self._cell["links"].append(attrs["href"])
        elif self._cell is not None and tag == "span":
            self._text = []

    def handle_endtag(self, tag):
        if tag == "h2" and self._in["h2"]:
            self.title, self._in["h2"] = "".join(self._text).strip(), False
        elif tag == "table" and self._in["facts"]:
            self._in["facts"] = False
        elif tag == "table" and self._in["grid"]:
            self._in["grid"] = False
        elif self._in["facts"] and tag == "th":
            self._fact = "".join(self._text).strip()
        elif self._in["facts"] and tag == "td":
            self.facts[self._fact] = "".join(self._text).strip()
        elif self._entry is not None and tag == "span" and self._entry["text"]:
            index, name = "".join(self._entry["text"]).strip().split(" ", 1)
            assert int(index) == self._entry["index"]
            self._entry["name"] = name
            self.legend.append(types.SimpleNamespace(**{k: v for k, v in self._entry.items() if k != "text"}))
            self._entry = None
        elif tag == "div" and self._in["legend"]:
            self._in["legend"] = False
        elif self._cell is not None and tag == "span":
            self._cell["lines"].append("".join(self._text).strip())
        elif self._cell is not None and tag in ("th", "td"):
            self._row.append(types.SimpleNamespace(**self._cell))
            self._cell = None
        elif self._row is not None and tag == "tr":
            self.grid.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._entry is not None and self._entry.get("colour"):
            self._entry["text"].append(data)
        else:
            self._text.append(data)


def read_page(path):
    """The page at ``path``: ``title``, ``facts`` (label -> text), ``legend`` (entries with ``index``,
    ``name``, ``colour`` "#rrggbb", ``marked``), ``header`` (cells) and ``rows`` (lists of cells; a cell
    has ``images`` (src), ``links`` and ``lines`` of text)."""
    parser = _PageParser()
    with open(path, encoding="utf-8") as f:
        parser.feed(f.read())
    header, rows = (parser.grid[0], parser.grid[1:]) if parser.grid else ([], [])
    return types.SimpleNamespace(title=parser.title, facts=parser.facts, legend=parser.legend, header=header,
                                 rows=rows)
