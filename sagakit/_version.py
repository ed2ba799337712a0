"""sagakit's version: the one place it is written.

The package metadata reads it from here (``[tool.hatch.version]`` in pyproject.toml), and
``sagakit.__version__`` and the OpenTelemetry instrumentation scopes import it, so that no
low module needs the package root.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
