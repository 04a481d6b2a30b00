"""`python -m modelhost.host ...` is `modelhost ...`."""

from modelhost.host.cli import main

raise SystemExit(main())
