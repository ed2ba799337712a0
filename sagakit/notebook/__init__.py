"""The notebook layer: saga diagrams (``diagram``) and the interactive failure lab (``lab``).

Both import their heavy dependencies (IPython, ipywidgets, Altair) lazily, so that
``import sagakit`` stays light and a missing extra fails with a message naming
``pip install sagakit[notebook]``.
"""

from __future__ import annotations

__all__: list[str] = []
