"""`python -m ruinmap ...` is the same as the `ruinmap` command."""

from __future__ import annotations

from ruinmap.cli import main

raise SystemExit(main())
