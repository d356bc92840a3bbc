"""The `max_seq_len` of a rec layer whose loop length is not known (search, `end`-driven
loops) as an int32 scalar: a number, or an expression over `max_len_from('LAYER')` evaluated
with TensorFlow."""

from __future__ import annotations

import tensorflow as tf

from netcompiler.frontend.seq_len_expr import evaluate, parse

DEFAULT_MAX_SEQ_LEN = 256


def seq_len_tf_ops() -> dict:
    """`max_seq_len` arithmetic (`netcompiler.frontend.seq_len_expr.evaluate`) on float32
    scalars with TensorFlow (floored to int32 at the end)."""
    return {
        "num": lambda v: tf.cast(v, tf.float32),
        "+": tf.add,
        "-": tf.subtract,
        "*": tf.multiply,
        "/": tf.divide,
        "//": lambda a, b: tf.math.floordiv(a, b),
        "min": tf.minimum,
        "max": tf.maximum,
        "floor": lambda a: tf.cast(tf.math.floor(a), tf.int32),
    }


def max_seq_len(inputs):
    """`max_seq_len` of the rec layer of `inputs` (a `RecInputs`) as an int32 scalar: a number,
    or an expression over `max_len_from('LAYER')` (the longest sequence of that layer's time
    axis), at least 1."""
    value = inputs.rec.opts.get("max_seq_len")
    if not isinstance(value, str):
        return tf.constant(int(value or DEFAULT_MAX_SEQ_LEN), tf.int32)
    refs = {
        ref.text: ref
        for sub, ref in inputs.net.graph.refs.get(inputs.rec.name, [])
        if sub[0] == "max_seq_len"
    }

    def max_len(text):
        ref = refs.get(text) or refs.get(text[len("base:") :] if text.startswith("base:") else text)
        if ref is None:  # written with base: in the config, resolved without it
            ref = next(r for t, r in refs.items() if text.endswith(t))
        return inputs.dim_size(inputs.outer_shape(ref).time)

    return tf.maximum(evaluate(parse(value), max_len, seq_len_tf_ops()), 1)
