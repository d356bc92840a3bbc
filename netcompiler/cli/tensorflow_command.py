"""The handler of a command that needs TensorFlow (compile, train, search, forward): it imports
TensorFlow and the command's module only when the command runs, and on the light install
(`pip install netcompiler`) says in one line what to install (exit 2)."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import TextIO

from netcompiler.core.errors import EXIT_USAGE
from netcompiler.training.command_support import import_tensorflow_quietly, needs_tf

#: what a command's handler is: (parsed arguments, stdout, stderr) -> exit code
Handler = Callable[[argparse.Namespace, TextIO, TextIO], int]


def tensorflow_command(module: str, func: str) -> Handler:
    """A handler running `netcompiler.<module>.<func>(args)`, imported when it is called."""

    def handler(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        from netcompiler import missing_tf_extra

        try:
            import_tensorflow_quietly()
        except ImportError as exc:  # the light install (`pip install netcompiler`)
            print(needs_tf(args.command, exc), file=err)
            return EXIT_USAGE
        try:
            fn = getattr(importlib.import_module(f"netcompiler.{module}"), func)
        except (ImportError, AttributeError) as exc:
            if missing_tf_extra(exc):
                print(needs_tf(args.command, exc), file=err)
            else:
                print(f"netcompiler {args.command}: not available yet ({exc})", file=err)
            return EXIT_USAGE
        try:
            return fn(args)
        except ModuleNotFoundError as exc:  # e.g. h5py, imported when an HDF file is read
            if not missing_tf_extra(exc):
                raise
            print(needs_tf(args.command, exc), file=err)
            return EXIT_USAGE

    return handler
