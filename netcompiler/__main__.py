"""`python -m netcompiler` is the `netcompiler` command."""

from netcompiler.cli import main

raise SystemExit(main())
