r"""The hand-written attention primitives of the three models.

- :mod:`.masked`: masked softmax (-inf masking), causal masks, scaled dot-product
  attention, head splitting, and the stop-gradient memory of Transformer-XL.
"""
from .masked import (
    MaskedSoftmax,
    causal_mask,
    concat_memory,
    masked_softmax,
    merge_heads,
    scaled_dot_product_attention,
    split_heads,
)

__all__ = ["MaskedSoftmax", "causal_mask", "concat_memory", "masked_softmax", "merge_heads",
           "scaled_dot_product_attention", "split_heads"]
