"""Interactive style editor in the browser (``edit_app.py``; docs/editor.md).

* :mod:`editor.renderer`: :class:`~editor.renderer.LayoutRenderer`, fast
  re-rendering of one label layout with changing codes;
* :mod:`editor.engine`: :class:`~editor.engine.EditorEngine`, the model, the
  samples and the caches;
* :mod:`editor.session`: one tab's edits (style from another sample or an
  upload, colour), undo and reset, and the session store;
* :mod:`editor.server`: the HTTP server (standard library) and its JSON API;
  the page is ``editor/static/``;
* :mod:`editor.browser`: headless Chromium through selenium, for the browser
  test and the screenshot script.
"""
