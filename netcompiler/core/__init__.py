"""The core: what every phase shares and nothing above it — axes and shapes (`dims`), the layer
rule interface with its traits (`layer_rule`), errors and diagnostics, the rule-id catalogue,
atomic file writes. Imports neither TensorFlow nor NumPy, nor any other package of netcompiler."""
