"""Importing a RETURNN config's data: `extern_data` (options netcompiler lacks dropped and
listed; else written out from `num_inputs` / `num_outputs`) and the `train` / `dev` datasets
(`HDFDataset` -> `hdf`, `Task12AXDataset` -> `12ax`; other classes are listed).
"""

from __future__ import annotations

from typing import Any

from netcompiler.returnn.config_values import NotData
from netcompiler.returnn.convert_state import WHY_NOT, ImportState
from netcompiler.returnn.import_result import Entry, ReturnnImportError

EXTERN_OPTIONS = ("dim", "sparse", "shape", "dtype", "available_for_inference", "same_time_as")
DTYPES = ("float32", "float16", "bfloat16", "float64", "int32", "int64", "bool")
RETURNN_12AX_LENGTHS = (10, 100)  # Task12AXDataset: random.randint(10, 100), both inclusive


def map_extern_data(state: ImportState) -> dict | None:
    """netcompiler's `extern_data`, or None when the config gives neither it nor num_inputs /
    num_outputs."""
    extern = state.get("extern_data")
    if isinstance(extern, dict):
        state.done.add("extern_data")
        for k in ("num_inputs", "num_outputs"):
            if k in state.values:
                state.ignore(k, "extern_data is given (it wins, as in RETURNN)")
        return {str(k): _extern_entry(state, str(k), "extern_data", v) for k, v in extern.items()}
    if "extern_data" in state.values:
        raise ReturnnImportError(
            f"{state.read.locate('extern_data')}: error: `extern_data` must be a dict"
        )
    num_in, num_out = state.get("num_inputs"), state.get("num_outputs")
    if num_in is None and num_out is None:
        return None
    target = state.get("target") if isinstance(state.get("target"), str) else "classes"
    out: dict = {}
    if isinstance(num_in, int) and not isinstance(num_in, bool):
        out["data"] = {"dim": num_in}
    elif num_in is not None:
        state.skip("num_inputs", f"{num_in!r} is not a number")
    if isinstance(num_out, int) and not isinstance(num_out, bool):
        out[target] = {"dim": num_out, "sparse": True}
    elif isinstance(num_out, dict):
        for key, spec in num_out.items():
            key = str(key)
            if isinstance(spec, int) and not isinstance(spec, bool):
                spec = [spec, 1]
            if (
                isinstance(spec, (list, tuple))
                and len(spec) == 2
                and all(isinstance(v, int) for v in spec)
            ):
                dim, ndim = spec
                out[key] = {"dim": dim, "sparse": True} if ndim <= 1 else {"dim": dim}
            elif isinstance(spec, dict):
                out[key] = _extern_entry(state, key, "num_outputs", spec)
            else:
                state.result.not_imported.append(
                    Entry(
                        f"num_outputs.{key}",
                        state.line("num_outputs"),
                        f"{spec!r} is not [dim, ndim] nor a data dict",
                    )
                )
        if "data" in num_out and "data" in out and isinstance(num_in, int):
            out = {"data": out.pop("data"), **out}
    elif num_out is not None:
        state.skip("num_outputs", f"{num_out!r} is not a number or dict")
    state.done.update(k for k in ("num_inputs", "num_outputs") if k in state.values)
    state.result.notes.append(
        "extern_data written out from num_inputs/num_outputs (data: dense num_inputs "
        "features; a generated task delivers one-hot vectors; targets: class indices)"
    )
    return out


def _extern_entry(state: ImportState, key: str, source: str, entry) -> dict | Any:
    """One data entry of `source` (`extern_data` or `num_outputs`): its netcompiler options."""
    if not isinstance(entry, dict):
        return state.plain(entry, (source, key))
    out = {}
    for opt, v in entry.items():
        if opt in EXTERN_OPTIONS:
            if opt == "dtype" and v not in DTYPES:
                state.result.not_imported.append(
                    Entry(
                        f"{source}.{key}.dtype",
                        state.line(source),
                        f"{v!r} is not a netcompiler dtype; the default "
                        f"({'int32' if entry.get('sparse') else 'float32'}) is used",
                    )
                )
                continue
            if v is None and opt == "dim":
                continue
            out[opt] = state.plain(v, (source, key, opt))
        else:
            state.result.not_imported.append(
                Entry(
                    f"{source}.{key}.{opt}",
                    state.line(source),
                    "not a netcompiler extern_data option",
                )
            )
    return out


def map_datasets(state: ImportState) -> None:
    """`train` / `dev` -> `train.train_data` / `train.dev_data`; `eval` is listed."""
    for key, ours in (("train", "train_data"), ("dev", "dev_data")):
        if key not in state.values:
            continue
        value = state.values[key]
        if isinstance(value, NotData):
            state.done.add(key)
            state.result.python.append(
                Entry(key, state.line(key), value.plain_reason() + " (--exec evaluates it)")
            )
            continue
        spec = _dataset(state, key, value)
        if spec is None:
            continue
        state.emit(ours, spec, key)
    if "eval" in state.values:
        state.skip("eval", WHY_NOT["eval"])


def _dataset(state: ImportState, key: str, value) -> dict | None:
    """The netcompiler dataset of one RETURNN dataset (a dict or an HDF file list), or None
    (listed as not imported)."""
    if isinstance(value, str):
        if ":" in value:
            state.skip(key, f"the dataset string {value!r} (only HDF file lists are imported)")
            return None
        files = [f for f in value.split(",") if f]
        return {"class": "hdf", "files": files[0] if len(files) == 1 else files}
    if not isinstance(value, dict):
        state.skip(key, f"{type(value).__name__} is not a dataset dict")
        return None
    cls = value.get("class")
    opts = {k: v for k, v in value.items() if k != "class"}
    if cls == "HDFDataset":
        spec: dict = {"class": "hdf"}
        mapping = {"files": "files", "partition_epoch": "partition"}
    elif cls == "Task12AXDataset":
        spec = {"class": "12ax"}
        mapping = {
            "num_seqs": "num_seqs",
            "fixed_random_seed": "seed",
            "partition_epoch": "partition",
        }
    else:
        state.skip(
            key,
            f"dataset class {cls!r}: netcompiler has no such dataset (its "
            f"datasets: hdf, npz, 12ax, copy, reverse, number_base_convert)",
        )
        return None
    state.done.add(key)
    for opt, v in opts.items():
        if opt in mapping and not isinstance(v, NotData) and v is not None:
            if opt == "files" and isinstance(v, tuple):
                v = list(v)
            spec[mapping[opt]] = v
        elif opt in ("fixed_random_seed",) and v is None:
            continue
        else:
            state.result.not_imported.append(
                Entry(f"{key}.{opt}", state.line(key), f"not a netcompiler option of {cls}")
            )
    if cls == "Task12AXDataset":
        spec["min_len"], spec["max_len"] = RETURNN_12AX_LENGTHS
        note = (
            "12ax: netcompiler's 12-AX task (same symbols and targets, its own "
            "generator) with RETURNN's sequence lengths 10..100"
        )
        if note not in state.result.notes:
            state.result.notes.append(note)
    return spec


__all__ = ["map_extern_data", "map_datasets", "EXTERN_OPTIONS", "DTYPES", "RETURNN_12AX_LENGTHS"]
