"""The models built on minitensor: GPT-1, Transformer-XL and Longformer (arriving with their issues)."""
