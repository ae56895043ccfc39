r"""The hand-written attention primitives of the three models.

- :mod:`.masked`: masked softmax (-inf masking), causal masks, scaled dot-product
  attention, head splitting, and the stop-gradient memory of Transformer-XL.
- :mod:`.relative`: Transformer-XL's sinusoid table $R$, the rel-shift trick, and the
  relative scores with the four terms (a)-(d).
- :mod:`.banded`: Longformer's sliding-window attention in O(T·w) memory, with dilation
  per head, a causal band and global tokens with their own projections.
"""
from .banded import (
    BandedAttention,
    BandedWeights,
    banded_attention,
    banded_attention_reference,
    banded_weights_to_dense,
)
from .masked import (
    MaskedSoftmax,
    causal_mask,
    concat_memory,
    masked_softmax,
    merge_heads,
    scaled_dot_product_attention,
    split_heads,
)
from .relative import rel_shift, relative_scores, sinusoid_positions

__all__ = [
    "BandedAttention", "BandedWeights", "banded_attention", "banded_attention_reference",
    "banded_weights_to_dense", "MaskedSoftmax", "causal_mask", "concat_memory", "masked_softmax",
    "merge_heads", "scaled_dot_product_attention", "split_heads", "rel_shift", "relative_scores",
    "sinusoid_positions",
]
