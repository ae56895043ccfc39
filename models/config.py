"""What every model config shares: named presets, and a JSON round trip for checkpoints.

A config is a dataclass that also derives from :class:`PresetConfig` and sets four class
attributes: ``PRESETS`` (name -> field overrides), ``FULL_PRESET`` (the paper-sized preset,
whose vocabulary is known), ``FULL_VOCAB_SIZE`` and ``KIND`` (a name for error messages).
"""
from __future__ import annotations

from dataclasses import asdict, fields
from typing import ClassVar


class PresetConfig:
    PRESETS: ClassVar[dict] = {}
    FULL_PRESET: ClassVar[str] = ""
    FULL_VOCAB_SIZE: ClassVar[int] = 0
    KIND: ClassVar[str] = ""

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
