"""`compute.matmul_last_axis` (issue 12): x [..., n] @ w [n, m] as one 2-D MatMul.

Against NumPy for inputs of rank 2, 3 and 4 with dynamic batch and time axes (traced with an
input signature, and eagerly); the static shape kept; in bfloat16 under `mixed_bfloat16` with
a float32 result; gradients equal to `tf.tensordot`'s.
"""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from netcompiler.backend.compute import (  # noqa: E402
    COMPUTE_DTYPES,
    matmul_last_axis,
    precision_scope,
)

pytestmark = pytest.mark.tf

N, M = 6, 4
#: (the input signature's shape, the shapes of the inputs fed to one trace of it)
CASES = {
    "rank2": ([None, N], [(5, N), (1, N), (0, N)]),
    "rank3": ([None, None, N], [(3, 7, N), (2, 1, N), (1, 9, N), (2, 0, N)]),
    "rank4": ([None, None, 3, N], [(2, 5, 3, N), (4, 1, 3, N)]),
}


def random(shape, seed):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def weights(seed=0):
    return random((N, M), seed)


def traced(signature, precision="float32"):
    """matmul_last_axis traced once for `signature` (w: a static [N, M]) in `precision`."""

    @tf.function(
        input_signature=[tf.TensorSpec(signature, tf.float32), tf.TensorSpec([N, M], tf.float32)]
    )
    def product(x, w):
        with precision_scope(precision):
            return matmul_last_axis(x, w)

    return product


def product_ops(concrete) -> dict[str, list]:
    """The matrix-product ops of a traced function, by op type, with their output dtypes."""
    found: dict[str, list] = {}
    for op in concrete.graph.get_operations():
        if "MatMul" in op.type or op.type in ("Einsum", "Tensordot"):
            found.setdefault(op.type, []).append(op.outputs[0].dtype.name)
    return found


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_numpy_with_dynamic_axes(case):
    signature, shapes = CASES[case]
    product = traced(signature)
    w = weights()
    for seed, shape in enumerate(shapes, 1):
        x = random(shape, seed)
        got = product(x, w).numpy()
        want = np.einsum("...n,nm->...m", x.astype(np.float64), w.astype(np.float64))
        assert got.shape == shape[:-1] + (M,)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        # eagerly the same
        np.testing.assert_allclose(matmul_last_axis(x, w).numpy(), got, rtol=1e-6, atol=1e-6)
    assert product.experimental_get_tracing_count() == 1  # one trace served every shape


@pytest.mark.parametrize("case", sorted(CASES))
def test_keeps_the_static_shape_and_runs_one_2d_matmul(case):
    signature, _ = CASES[case]
    concrete = traced(signature).get_concrete_function()
    assert concrete.structured_outputs.shape.as_list() == signature[:-1] + [M]
    assert product_ops(concrete) == {"MatMul": ["float32"]}


def test_static_sizes_of_the_input_are_kept():
    x = tf.zeros([2, 5, N])
    assert matmul_last_axis(x, weights()).shape.as_list() == [2, 5, M]

    @tf.function(input_signature=[tf.TensorSpec([3, None, N], tf.float32)])
    def product(x):
        y = matmul_last_axis(x, weights())
        assert y.shape.as_list() == [3, None, M]
        return y

    assert product(random((3, 4, N), 1)).shape == (3, 4, M)


@pytest.mark.parametrize("case", sorted(CASES))
def test_runs_in_bfloat16_under_mixed_bfloat16_with_a_float32_result(case):
    signature, shapes = CASES[case]
    product = traced(signature, "mixed_bfloat16")
    concrete = product.get_concrete_function()
    assert product_ops(concrete) == {"MatMul": ["bfloat16"]}
    assert concrete.structured_outputs.dtype == tf.float32
    assert concrete.structured_outputs.shape.as_list() == signature[:-1] + [M]

    w = weights()
    x = random(shapes[0], 1)
    got = product(x, w).numpy()
    assert got.dtype == np.float32
    # the operands rounded to bfloat16 (8 bits of mantissa), the products summed in float32
    # or wider: equal to that within float32 rounding, and not to the float32 product
    rounded = [tf.cast(tf.cast(a, tf.bfloat16), tf.float64).numpy() for a in (x, w)]
    want = np.einsum("...n,nm->...m", *rounded)
    exact = np.einsum("...n,nm->...m", x.astype(np.float64), w.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-2)
    assert not np.allclose(got, exact, rtol=1e-5, atol=1e-5)


def test_integer_and_float64_operands_keep_their_dtype_under_mixed_precision():
    # only float32 products are lowered; others run as given
    x = np.arange(12, dtype=np.float64).reshape(2, 1, N)
    w = np.ones((N, M), np.float64)
    with precision_scope("mixed_bfloat16"):
        y = matmul_last_axis(x, w)
    assert y.dtype == tf.float64
    np.testing.assert_array_equal(y.numpy(), np.einsum("...n,nm->...m", x, w))


def tensordot_in(precision):
    """`tf.tensordot` over x's last axis, in `precision`'s compute dtype; float32 result."""
    dtype = COMPUTE_DTYPES[precision] or tf.float32

    def product(x, w):
        y = tf.tensordot(tf.cast(x, dtype), tf.cast(w, dtype), axes=[[x.shape.rank - 1], [0]])
        return tf.cast(y, tf.float32)

    return product


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_gradients_equal_tensordot(case, precision):
    signature, shapes = CASES[case]
    x_spec = tf.TensorSpec(signature, tf.float32)

    def gradients(product):
        @tf.function(input_signature=[x_spec, tf.TensorSpec([N, M], tf.float32), x_spec])
        def traced(x, w, upstream):  # upstream: only its [..., :M] part is used
            with tf.GradientTape() as tape:
                tape.watch([x, w])
                with precision_scope(precision):
                    y = product(x, w)
                loss = tf.reduce_sum(y * upstream[..., :M])
            return tape.gradient(loss, [x, w])

        return traced

    x, w = random(shapes[0], 1), weights()
    upstream = random(shapes[0], 2)  # [..., N]: N > M, cut to [..., M] inside
    got = [g.numpy() for g in gradients(matmul_last_axis)(x, w, upstream)]
    want = [g.numpy() for g in gradients(tensordot_in(precision))(x, w, upstream)]
    assert [g.shape for g in got] == [x.shape, w.shape]
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    # and they are the product's: upstream @ w^T and x^T @ upstream (float64 reference)
    x64, w64, u64 = x.astype(np.float64), w.astype(np.float64), upstream[..., :M]
    tolerance = 1e-5 if precision == "float32" else 5e-2
    np.testing.assert_allclose(got[0], u64 @ w64.T, rtol=tolerance, atol=tolerance)
    x_rows, u_rows = x64.reshape(-1, N), u64.reshape(-1, M)
    np.testing.assert_allclose(got[1], x_rows.T @ u_rows, rtol=tolerance, atol=tolerance)
