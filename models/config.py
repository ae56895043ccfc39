"""What every model config shares: named presets, and a JSON round trip for checkpoints.

A config is a dataclass that also derives from :class:`PresetConfig` and sets five class
attributes: ``PRESETS`` (name -> field overrides), ``FULL_PRESET`` (the paper-sized preset,
whose vocabulary is known), ``FULL_VOCAB_SIZE``, ``KIND`` (a name for error messages) and
``DROPOUT_FIELDS`` (the probabilities ``train --dropout`` sets).
"""
from __future__ import annotations

from dataclasses import asdict, fields, replace
from typing import ClassVar


class PresetConfig:
    PRESETS: ClassVar[dict] = {}
    FULL_PRESET: ClassVar[str] = ""
    FULL_VOCAB_SIZE: ClassVar[int] = 0
    KIND: ClassVar[str] = ""
    DROPOUT_FIELDS: ClassVar[tuple] = ()

    @classmethod
    def preset(cls, name: str, vocab_size: int | None = None, **overrides):
        """A named configuration; ``overrides`` replace single fields. ``vocab_size`` is required
        (the tokenizer's) except for the full-size preset, whose published vocabulary is the default."""
        if name not in cls.PRESETS:
            raise ValueError(f"{cls.__name__}.preset: unknown preset {name!r}; choose from {sorted(cls.PRESETS)}")
        if vocab_size is None:
            if name != cls.FULL_PRESET:
                raise ValueError(f"{cls.__name__}.preset({name!r}): vocab_size is required (the tokenizer's "
                                 "vocab_size)")
            vocab_size = cls.FULL_VOCAB_SIZE
        return cls(vocab_size=vocab_size, **{**cls.PRESETS[name], **overrides})

    def with_dropout(self, p: float):
        """This config with every one of its ``DROPOUT_FIELDS`` set to ``p`` (``train --dropout``)."""
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
            raise ValueError(f"--dropout must be a probability in [0, 1), got {p!r}")
        return replace(self, **{name: float(p) for name in self.DROPOUT_FIELDS})

    def to_dict(self) -> dict:
        """Plain JSON-able dict (saved in checkpoints' metadata)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"{cls.__name__}.from_dict: unknown fields {unknown} (is this a {cls.KIND} config?)")
        if "vocab_size" not in d:
            raise ValueError(f"{cls.__name__}.from_dict: the field 'vocab_size' is missing")
        return cls(**d)
