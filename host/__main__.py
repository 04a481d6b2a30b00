"""`python -m host ...` is `modelhost ...`."""

from host.cli import main

raise SystemExit(main())
