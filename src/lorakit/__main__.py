"""``python -m lorakit``: the same entry point as the ``lorakit`` console script."""

from lorakit.cli import main

raise SystemExit(main())
