"""Style editing: per-class operations on style codes and rendering with a loaded generator.

:mod:`editing.style_mixing` (``mix_styles.py`` and the editor use it).
"""
