"""The `netcompiler` command line (`main`); one module per command group."""

from netcompiler.cli.app import main

__all__ = ["main"]
