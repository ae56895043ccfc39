"""The differentiable ops: one :class:`~minitensor.autograd.Function` subclass per op.

Each module holds one family; each class has its derivation in a raw docstring.
The primitive set is small; ``sub``, ``div``, ``mean``, ``sqrt``, ``sigmoid``,
``stack`` and ``split`` are composed from these in :mod:`minitensor.tensor`.
The fused ops of :mod:`.nn` are deliberate exceptions, each tested against its
composed twin.
"""
