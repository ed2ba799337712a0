"""The notebook layer: saga diagrams (``diagram``), their interactive view (``widget``) and the
failure lab (``lab``).

The modules import one way: ``diagram_state`` (states, words), ``_layout`` (DOT and templates),
``_inspect`` and ``_panels`` (what the view shows, as data) under ``widget`` (the anywidget
views), under ``diagram`` (the display bundles) and ``lab``. Nothing here is imported by
``import sagakit``; the diagram is drawn without a kernel, and the views need anywidget
(``pip install sagakit[notebook]``).
"""

from __future__ import annotations

__all__: list[str] = []
