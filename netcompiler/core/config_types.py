"""Type names for plain config data, so that signatures say which dict or tuple they take.

A config is what YAML, JSON or a Python dict gives: dicts, lists, strings, numbers, booleans and
None, nothing else (the loader rejects anything richer). Its values are typed `Any` because the
schema check, not the type checker, is what tells them apart; code that reads a value before
the schema check tests its type (`isinstance`) first.
"""

from __future__ import annotations

from typing import Any

#: a whole config: `network`, `extern_data`, `train`, RETURNN's `num_inputs`, ...
ConfigData = dict[str, Any]

#: one layer's options as the config gives them (`class`, `from`, `n_out`, ...), checked
#: against the layer class's JSON Schema
LayerOptions = dict[str, Any]

#: a path into the config data: mapping keys and list indices, e.g. ("network", "att", "num_heads")
ConfigPath = tuple[str | int, ...]
