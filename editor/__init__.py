"""Interactive style editor in the browser (``edit_app.py``; docs/editor.md).

* :mod:`editor.renderer`: :class:`~editor.renderer.LayoutRenderer`, fast
  re-rendering of one label layout with changing codes (and changing layouts);
* :mod:`editor.engine`: :class:`~editor.engine.EditorEngine`, the model, the
  samples and the caches;
* :mod:`editor.session`: one tab's edits (style from another sample or an
  upload, colour, brush strokes), undo and reset, and the session store;
* :mod:`editor.painting`: brush strokes on label maps;
* :mod:`editor.uploads`: upload names, the decoded-pixel budget, reading uploads;
* :mod:`editor.api`: the JSON actions and the state they answer;
* :mod:`editor.server`: the HTTP server (standard library), its routes and
  limits; the page is ``editor/static/``.
"""
