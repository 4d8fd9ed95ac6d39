"""The web page of ``lorakit serve`` / ``lorakit ui``: runs, sweeps and the compare view.

Static files (no build step, nothing fetched from elsewhere) live in ``static/``; the JSON routes
under ``/api/`` read the run folders. Needs the ``serve`` extra (FastAPI).
"""

from lorakit.ui.routes import mount_ui

__all__ = ["mount_ui"]
