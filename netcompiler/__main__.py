"""`python -m netcompiler` is the `netcompiler` command."""
from .cli import main

raise SystemExit(main())
