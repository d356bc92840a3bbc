"""The front end: config -> validated network with inferred shapes, without TensorFlow.

load (`loader`) -> overrides -> JSON Schema (`schema`) -> structure and dependency graph
(`network`, `graph`) -> shapes (`shapes`); `validate` runs them all. Also the `eval` expression
language (`expr*`), and text and drawings of the graph (`graph_text`, `render`). Imports only
`netcompiler.core` and the layer rules (`netcompiler.layers`); never TensorFlow or NumPy
(tests/test_architecture.py keeps it so)."""
