"""The front end as one call: load -> overrides -> schema -> graph -> shapes, all errors at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from netcompiler.core.diagnostics import ERROR, WARNING, ConfigError, Diagnostic, Report
from netcompiler.frontend.conventions import apply_conventions
from netcompiler.frontend.extern_data import extern_shapes, unify_extern_time
from netcompiler.frontend.graph import Graph, build_graph, check_outputs
from netcompiler.frontend.loader import Config, apply_overrides, load
from netcompiler.frontend.network import build_network
from netcompiler.frontend.schema import failed_layer_paths, validate_config
from netcompiler.frontend.shape_inference import infer_shapes
from netcompiler.frontend.shapes import InferredNetwork


@dataclass
class ValidationResult(Report):
    """Diagnostics of one config, and what the front end built from it."""

    config: Config | None = None
    graph: Graph | None = None
    inferred: InferredNetwork | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_for_errors(self) -> ValidationResult:
        if self.errors:
            raise ConfigError(self.errors)
        return self


def validate(
    source: Any, overrides: list[str] | None = None, strict: bool = False, name: str | None = None
) -> ValidationResult:
    """Validate a config (path, YAML/JSON text, dict or `Config`).

    Never raises for a user mistake: every problem is a diagnostic of the result. With `strict`,
    warnings count as errors.
    """
    try:
        config = load(source, name)
        if overrides:
            apply_overrides(config, overrides)
    except ConfigError as exc:
        return ValidationResult(exc.diagnostics)
    except ValueError as exc:
        return ValidationResult([Diagnostic(ERROR, str(exc), "load.override")])
    result = ValidationResult(config=config)
    data = config.data
    schema_diags = validate_config(data)
    result.extend(schema_diags)
    result.extend(apply_conventions(data))
    if isinstance(data, dict):
        network = build_network(data)
        graph = build_graph(network)
        result.graph = graph
        result.extend(graph.diagnostics)
        if isinstance(data.get("network"), dict):  # else the schema error says it all
            result.extend(check_outputs(graph))
        bad_paths = failed_layer_paths(schema_diags, data)
        failed = {
            layer.name
            for layer in network.layers.values()
            if any(layer.path[: len(p)] == p for p in bad_paths)
        }
        # a graph error (unknown reference) also stops that layer's shape inference
        for d in graph.diagnostics:
            for layer in network.layers.values():
                if d.path[: len(layer.path)] == layer.path:
                    failed.add(layer.name)
        if not any(d.rule == "graph.cycle" for d in graph.diagnostics):
            extern_ok = isinstance(data.get("extern_data", {}), dict) and not any(
                d.path[:1] == ("extern_data",) for d in schema_diags
            )
            ext, ext_diags = extern_shapes(network.extern if extern_ok else {})
            result.extend(ext_diags)
            if not extern_ok:
                failed.update(network.layers)
            inferred = infer_shapes(graph, ext, failed)
            if inferred.unify:
                same_time, notes = unify_extern_time(inferred.unify, network.extern)
                ext, _ = extern_shapes(network.extern if extern_ok else {}, same_time)
                inferred = infer_shapes(graph, ext, failed)
                result.extend(notes)
            result.extend(inferred.diagnostics)
            result.inferred = inferred
    diags = [config.locate(d) for d in result.diagnostics]
    if strict:
        diags = [d.as_error() if d.severity == WARNING else d for d in diags]
    result.diagnostics = _sorted(diags)
    return result


def _sorted(diags: list[Diagnostic]) -> list[Diagnostic]:
    return sorted(diags, key=lambda d: (d.file or "", d.line or 0, d.col or 0, d.rule))
