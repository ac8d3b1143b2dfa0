"""`python -m rke2ha` is the same as the `rke2ha` command."""

from rke2ha.cli import main

raise SystemExit(main())
