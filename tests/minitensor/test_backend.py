"""The backend on a CPU-only machine: NumPy everywhere, clear errors for CUDA."""
import numpy as np
import pytest

from minitensor import backend


def test_numpy_is_the_module_for_numpy_arrays():
    assert backend.get_array_module(np.zeros(2), np.ones(1)) is np
    assert backend.device_of(np.zeros(2)) == "cpu"


def test_unknown_device_is_named():
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        backend.check_device("tpu")
