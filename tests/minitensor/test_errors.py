r"""Bad input must fail early with an error that names the op and the shapes (or the
offending value), so a student sees WHAT went wrong WHERE rather than a NumPy
traceback from deep inside an op or, worse, a silently wrong result."""
import re

import numpy as np
import pytest

import minitensor as mt
import minitensor.functional as F
from minitensor import nn


def shape_re(shape):
    """A regex matching ``str(shape)`` literally, e.g. ``\\(2,\\ 3\\)``."""
    return re.escape(str(tuple(shape)))


# ------------------------------------------------------------ shapes

@pytest.mark.parametrize("sa, sb", [((2, 3), (4, 5)), ((3,), (4,)), ((2, 3), (2, 3))])
def test_matmul_of_incompatible_shapes_names_the_op_and_both_shapes(sa, sb):
    a, b = mt.zeros(*sa), mt.zeros(*sb)
    with pytest.raises(ValueError, match=r"matmul") as info:
        a @ b
    msg = str(info.value)
    if len(sa) == 2:  # 1-D operands are reported in their promoted (1, n) / (n, 1) form
        assert str(sa) in msg and str(sb) in msg
    assert "incompatible" in msg


def test_matmul_batch_dimensions_that_do_not_broadcast():
    with pytest.raises(ValueError, match=r"matmul: batch dimensions of \(2, 2, 3\) and \(3, 3, 4\)"):
        mt.matmul(mt.zeros(2, 2, 3), mt.zeros(3, 3, 4))


def test_matmul_of_a_scalar():
    with pytest.raises(ValueError, match=r"matmul: operands must have at least 1 dimension.*\(\).*\(3,\)"):
        mt.matmul(mt.zeros(()), mt.zeros(3))


@pytest.mark.parametrize("op, name", [(lambda a, b: a + b, "Add"), (lambda a, b: a * b, "Mul"),
                                      (lambda a, b: a - b, "Add")])
def test_elementwise_ops_on_shapes_that_do_not_broadcast(op, name):
    with pytest.raises(ValueError, match=rf"{name}: .*input shapes \(2, 3\), \(4,\)"):
        op(mt.zeros(2, 3), mt.zeros(4))


def test_maximum_and_where_on_shapes_that_do_not_broadcast():
    with pytest.raises(ValueError, match=r"maximum: shapes \[\(2, 3\), \(4,\)\] do not broadcast"):
        mt.maximum(mt.zeros(2, 3), mt.zeros(4))
    cond = mt.tensor(np.ones((2, 3), dtype=bool))
    with pytest.raises(ValueError, match=r"where: shapes .*\(2, 3\).*\(4,\).*do not broadcast"):
        mt.where(cond, mt.zeros(2, 3), mt.zeros(4))


def test_reshape_to_a_wrong_size():
    with pytest.raises(ValueError,
                       match=r"reshape: cannot reshape a tensor of shape \(2, 3\) \(6 elements\) into \(4,\)"):
        mt.zeros(2, 3).reshape(4)
    with pytest.raises(ValueError, match=r"reshape: .*\(2, 3\).*\(4, -1\)"):
        mt.zeros(2, 3).reshape(4, -1)


@pytest.mark.parametrize("src, dst", [((2, 3), (4, 3)), ((3,), (3, 2)), ((2, 3), (3,))])
def test_expand_to_an_incompatible_shape(src, dst):
    with pytest.raises(ValueError, match=rf"expand: cannot broadcast shape {shape_re(src)} to {shape_re(dst)}"):
        mt.zeros(*src).expand(*dst)


def test_transpose_with_axes_that_are_not_a_permutation():
    with pytest.raises(ValueError, match=r"transpose: axes \(0, 0\) are not a permutation .* 2 dims"):
        mt.zeros(2, 3).transpose(0, 0)


def test_concat_of_mismatched_shapes_lists_them():
    with pytest.raises(ValueError, match=r"concat along axis 0: shapes \[\(2, 3\), \(2, 4\)\] differ off that axis"):
        mt.concat([mt.zeros(2, 3), mt.zeros(2, 4)], axis=0)
    with pytest.raises(ValueError, match=r"concat along axis 1: shapes \[\(2, 3\), \(2, 3, 1\)\]"):
        mt.concat([mt.zeros(2, 3), mt.zeros(2, 3, 1)], axis=1)
    with pytest.raises(ValueError, match=r"concat: needs at least one tensor"):
        mt.concat([])


def test_stack_of_mismatched_shapes_lists_them():
    with pytest.raises(ValueError, match=r"stack: all tensors must have the same shape, got \[\(2, 3\), \(3, 2\)\]"):
        mt.stack([mt.zeros(2, 3), mt.zeros(3, 2)])
    with pytest.raises(ValueError, match=r"stack: axis 3 is out of range for the result's 2 dims"):
        mt.stack([mt.zeros(2), mt.zeros(2)], axis=3)


def test_split_into_unequal_sections():
    with pytest.raises(ValueError, match=r"split: axis 0 of length 5 does not divide into 2 equal sections"):
        mt.split(mt.zeros(5), 2)


@pytest.mark.parametrize("op", ["sum", "mean", "max"])
def test_reduction_over_an_axis_out_of_range(op):
    with pytest.raises(ValueError, match=rf"{op}: axis 2 is out of range for a tensor with 1 dims"):
        getattr(mt.zeros(3), op)(axis=2)


def test_softmax_axis_out_of_range_names_the_shape():
    with pytest.raises(ValueError, match=r"softmax: axis 3 is out of range for a tensor of shape \(2, 3\)"):
        F.softmax(mt.zeros(2, 3), axis=3)
    with pytest.raises(ValueError, match=r"log_softmax: axis -3 .*\(2, 3\)"):
        F.log_softmax(mt.zeros(2, 3), axis=-3)


def test_layer_norm_weight_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"layer_norm: weight has shape \(4,\) but the last axis of x is \(3,\)"):
        F.layer_norm(mt.zeros(2, 3), mt.ones(4))


def test_linear_on_a_wrong_last_dimension():
    layer = nn.Linear(4, 3, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"Linear\(4, 3\): input's last axis must be 4, got shape \(2, 5\)"):
        layer(mt.zeros(2, 5))


# ------------------------------------------------------------ indices and dtypes

@pytest.mark.parametrize("index", [mt.tensor([0.0, 1.0]), np.array([0.5]), [1.0]])
def test_float_index_arrays_are_refused(index):
    with pytest.raises(TypeError, match=r"getitem: index arrays must be integer or bool, got dtype float"):
        mt.zeros(2, 3)[index]


def test_index_out_of_range_names_the_shape():
    with pytest.raises(IndexError, match=r"getitem on a tensor of shape \(2, 3\): index 5 is out of bounds"):
        mt.zeros(2, 3)[mt.tensor([5])]


@pytest.mark.parametrize("bad", [7, 5, -1])
def test_embedding_ids_out_of_range(bad):
    table = mt.zeros(5, 2)
    with pytest.raises(IndexError, match=rf"embedding: id {bad} is out of range for a table of 5 rows"):
        F.embedding(mt.tensor([[0, bad], [1, 2]]), table)
    with pytest.raises(IndexError, match=rf"embedding: id {bad}"):
        nn.Embedding(5, 2, rng=np.random.default_rng(0))(mt.tensor([bad]))


def test_embedding_float_ids():
    with pytest.raises(TypeError, match=r"embedding: ids must be integers, got dtype float32"):
        F.embedding(mt.tensor([1.0, 2.0]), mt.zeros(5, 2))


def test_cross_entropy_target_out_of_range():
    logits = mt.zeros(2, 3)
    with pytest.raises(IndexError, match=r"cross_entropy: target 3 is out of range for 3 classes"):
        F.cross_entropy(logits, mt.tensor([0, 3]))
    with pytest.raises(IndexError, match=r"cross_entropy: target -1 is out of range for 3 classes"):
        F.cross_entropy(logits, [-1, 0], ignore_index=-100)


def test_cross_entropy_ignored_targets_may_be_out_of_range():
    """The control for the test above: an ignored row's target is never looked at."""
    loss = F.cross_entropy(mt.zeros(2, 3, dtype=mt.float64), [-100, 1], ignore_index=-100)
    np.testing.assert_allclose(loss.item(), np.log(3.0))


def test_cross_entropy_targets_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"cross_entropy: targets of shape \(3,\) do not match logits of "
                                         r"shape \(2, 3\) \(expected \(2,\)\)"):
        F.cross_entropy(mt.zeros(2, 3), mt.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"cross_entropy: targets of shape \(2, 1\)"):
        F.cross_entropy(mt.zeros(2, 3), mt.tensor([[0], [1]]))


def test_cross_entropy_float_targets():
    with pytest.raises(TypeError, match=r"cross_entropy: targets must be integers, got dtype float"):
        F.cross_entropy(mt.zeros(2, 3), mt.tensor([0.0, 1.0]))


def test_cross_entropy_all_ignored_with_mean():
    with pytest.raises(ValueError, match=r"cross_entropy: every target equals ignore_index"):
        F.cross_entropy(mt.zeros(2, 3), [-100, -100], ignore_index=-100)
    # with reduction='sum' an all-ignored batch is simply a zero loss
    assert F.cross_entropy(mt.zeros(2, 3), [-100, -100], ignore_index=-100, reduction="sum").item() == 0.0


def test_cross_entropy_bad_reduction_and_scalar_logits():
    with pytest.raises(ValueError, match=r"cross_entropy: reduction must be 'mean', 'sum' or 'none', got 'avg'"):
        F.cross_entropy(mt.zeros(2, 3), [0, 1], reduction="avg")
    with pytest.raises(ValueError, match=r"cross_entropy: logits must have a class axis"):
        F.cross_entropy(mt.zeros(()), 0)


def test_where_needs_a_bool_condition():
    with pytest.raises(TypeError, match=r"where: the condition must be bool, got dtype float32"):
        mt.where(mt.ones(3), mt.zeros(3), mt.zeros(3))


def test_pow_with_a_tensor_exponent():
    with pytest.raises(TypeError, match=r"pow: the exponent must be a Python number, got Tensor"):
        mt.ones(3) ** mt.ones(1)


def test_object_data_is_refused():
    with pytest.raises(TypeError, match=r"tensor: cannot make a tensor of dtype object from list"):
        mt.tensor([object(), 1])
    with pytest.raises(TypeError, match=r"tensor: cannot make a tensor of dtype <U1 from list"):
        mt.tensor(["a"])


# ------------------------------------------------------------ backward

def test_backward_on_a_non_scalar_without_grad():
    x = mt.tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"backward: output has shape \(2, 3\); pass grad= of that shape"):
        (x * 2.0).backward()


def test_backward_with_a_grad_of_the_wrong_shape():
    x = mt.tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(ValueError, match=r"backward: grad has shape \(3,\) but the output has shape \(2, 3\)"):
        (x * 2.0).backward(np.ones(3))


def test_backward_on_a_tensor_that_does_not_require_grad():
    with pytest.raises(RuntimeError, match=r"backward: this tensor does not require grad"):
        (mt.ones(3) * 2.0).sum().backward()
    x = mt.tensor(np.ones(3), requires_grad=True)
    with mt.no_grad():
        y = (x * 2.0).sum()
    with pytest.raises(RuntimeError, match=r"does not require grad .*no_grad"):
        y.backward()


def test_item_of_a_tensor_with_several_elements():
    with pytest.raises(ValueError, match=r"item: only a one-element tensor .* shape is \(2,\)"):
        mt.zeros(2).item()


# ------------------------------------------------------------ modules and state dicts

def make_layer():
    return nn.Linear(3, 2, rng=np.random.default_rng(0))


def test_load_state_dict_missing_key_is_named():
    state = make_layer().state_dict()
    del state["bias"]
    with pytest.raises(KeyError, match=r"load_state_dict into Linear: missing keys \['bias'\], unexpected keys \[\]"):
        make_layer().load_state_dict(state)


def test_load_state_dict_unexpected_key_is_named():
    state = make_layer().state_dict()
    state["scale"] = np.ones(2, np.float32)
    with pytest.raises(KeyError, match=r"missing keys \[\], unexpected keys \['scale'\]"):
        make_layer().load_state_dict(state)


def test_load_state_dict_non_strict_returns_the_names_instead():
    src = make_layer()
    state = src.state_dict()
    del state["bias"]
    state["scale"] = np.ones(2, np.float32)
    dst = nn.Linear(3, 2, rng=np.random.default_rng(1))
    missing, unexpected = dst.load_state_dict(state, strict=False)
    assert missing == ["bias"] and unexpected == ["scale"]
    np.testing.assert_array_equal(dst.weight.data, src.weight.data)


def test_load_state_dict_shape_mismatch_names_key_and_both_shapes():
    model = make_layer()
    state = model.state_dict()
    state["weight"] = np.zeros((3, 3), np.float32)
    before = model.weight.data.copy()
    with pytest.raises(ValueError, match=r"shape mismatch for weight: checkpoint \(3, 3\) vs model \(2, 3\)"):
        model.load_state_dict(state)
    # nothing was half-loaded
    np.testing.assert_array_equal(model.weight.data, before)


def test_load_state_dict_nested_names():
    model = nn.Sequential(nn.Linear(2, 4, rng=np.random.default_rng(0)), nn.ReLU(),
                          nn.Linear(4, 1, rng=np.random.default_rng(1)))
    state = model.state_dict()
    del state["2.weight"]
    with pytest.raises(KeyError, match=r"load_state_dict into Sequential: missing keys \['2\.weight'\]"):
        model.load_state_dict(state)


# ------------------------------------------------------------ devices

@pytest.mark.skipif(mt.gpu_available(), reason="a GPU is present: moving to 'cuda' is allowed here")
def test_to_cuda_without_a_gpu_is_a_clear_runtime_error():
    with pytest.raises(RuntimeError, match=r"device 'cuda' requested but no GPU is usable here"):
        mt.ones(3).to("cuda")
    with pytest.raises(RuntimeError, match=r"device 'cuda' requested"):
        make_layer().to("cuda")
    with pytest.raises(RuntimeError, match=r"device 'cuda' requested"):
        mt.zeros(2, device="cuda")


def test_unknown_device_is_a_value_error():
    with pytest.raises(ValueError, match=r"unknown device 'tpu': expected one of \('cpu', 'cuda'\)"):
        mt.ones(3).to("tpu")


# ------------------------------------------------------------ layer options

@pytest.mark.parametrize("p", [1.0, -0.1, 1.5])
def test_dropout_probability_out_of_range(p):
    with pytest.raises(ValueError, match=rf"dropout: p must be in \[0, 1\), got {p}"):
        F.dropout(mt.ones(3), p)
    with pytest.raises(ValueError, match=rf"Dropout: p must be in \[0, 1\), got {p}"):
        nn.Dropout(p)


def test_dropout_p_is_checked_even_in_eval_mode():
    with pytest.raises(ValueError, match=r"dropout: p must be in \[0, 1\)"):
        F.dropout(mt.ones(3), 2.0, training=False)


@pytest.mark.parametrize("approximate", ["exact", "erf", None])
def test_gelu_bad_approximate(approximate):
    got = re.escape(repr(approximate))
    with pytest.raises(ValueError, match=rf"gelu: approximate must be 'tanh' or 'none', got {got}"):
        F.gelu(mt.ones(3), approximate=approximate)
    with pytest.raises(ValueError, match=r"gelu: approximate must be"):
        nn.GELU(approximate)  # checked when the layer is built, not at its first call
