"""Saving and loading state dicts (name -> array) without pickle.

Two formats, chosen by the file's suffix:

``.npz``
    NumPy's zip of ``.npy`` files, one member per array. Our JSON metadata is stored
    as a uint8 array of UTF-8 bytes under the reserved name ``__metadata__``.
``.safetensors``
    Hugging Face's format, written and read by hand here (about 60 lines, no dependency):
    an 8-byte little-endian header length ``N``; ``N`` bytes of UTF-8 JSON mapping each name
    to ``{"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}`` plus an optional
    ``"__metadata__"`` of str -> str (ours is one entry, ``{"minitensor": <JSON>}``);
    then the raw little-endian C-order bytes of every tensor, back to back.

Why never pickle: unpickling calls whatever the file names (``os.system`` included), so a
downloaded ``.pt``/``.pkl`` checkpoint can run code on your machine just by being loaded.
Both formats above hold only numbers and JSON. Writes are atomic: a crash mid-save leaves
the previous checkpoint intact, never half a file.
"""
from __future__ import annotations

import json
import math
import os
import re
import struct
import uuid
import zipfile

import numpy as np

from .backend import device_of, to_numpy

__all__ = ["CheckpointError", "save", "load", "read_safetensors_header", "temporary_path", "stale_temporaries"]

METADATA_KEY = "__metadata__"
SUFFIXES = (".npz", ".safetensors")

# safetensors dtype names <-> NumPy (always little-endian on disk). BF16 has no NumPy dtype.
_ST_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
              "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}
_ST_NAMES = {(np.dtype(v).kind, np.dtype(v).itemsize): k for k, v in _ST_DTYPES.items()}
# NumPy's NPY_MAXDIMS: the most sides an array can have.
_MAX_DIMS = 64 if np.lib.NumpyVersion(np.__version__) >= "2.0.0" else 32


class CheckpointError(ValueError):
    """A checkpoint file is truncated, corrupt, or not in the format its suffix promises."""


def _suffix(path: str) -> str:
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"cannot tell the format of {path!r}: expected a suffix in {SUFFIXES}")
    return suffix


def _check_json(value, where: str) -> None:
    # json.dumps would quietly turn int keys into str and tuples into lists; a numpy scalar
    # would fail deep inside the encoder. Check up front and name the offending key.
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"metadata key {where}[{k!r}] is not a str")
            _check_json(v, f"{where}[{k!r}]")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_json(v, f"{where}[{i}]")
    elif value is not None and not isinstance(value, (bool, int, float, str)):
        raise TypeError(f"metadata {where} is a {type(value).__name__}, not a JSON type "
                        "(dict, list, str, int, float, bool, None)")


def _as_numpy(name, value) -> np.ndarray:
    # zipfile cuts member names at a NUL byte, so such a name would not come back.
    if not isinstance(name, str) or not name or name == METADATA_KEY or "\0" in name:
        raise ValueError(f"state key {name!r} must be a non-empty str other than {METADATA_KEY!r}, "
                         "without NUL characters")
    # A Tensor keeps its array in .data; CuPy arrays and NumPy scalars also have a .data
    # (a device pointer, a memoryview), so those are converted as they are.
    if hasattr(value, "data") and not isinstance(value, (np.ndarray, np.generic)) \
            and device_of(value) == "cpu":
        value = value.data
    array = to_numpy(value)
    if array.dtype.kind not in "biufc":
        raise TypeError(f"state[{name!r}] has dtype {array.dtype}; only numeric and bool arrays "
                        "can be saved")
    return array.astype(array.dtype.newbyteorder("="), copy=False)  # e.g. '>f4' -> float32


def save(state, path, metadata=None) -> None:
    """Write ``state`` (str -> array or Tensor) to ``path`` (.npz or .safetensors), atomically."""
    path = os.fspath(path)
    suffix = _suffix(path)
    arrays = {name: _as_numpy(name, value) for name, value in state.items()}
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise TypeError(f"metadata must be a dict, not {type(metadata).__name__}")
        _check_json(metadata, "metadata")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot save {path!r}: directory {directory!r} does not exist")
    if suffix == ".safetensors":
        for name, array in arrays.items():
            if (array.dtype.kind, array.dtype.itemsize) not in _ST_NAMES:
                raise TypeError(f"state[{name!r}] has dtype {array.dtype}, which safetensors "
                                f"cannot store; supported: {sorted(_ST_DTYPES)}")
    writer = _write_npz if suffix == ".npz" else _write_safetensors

    # Write beside the target, then rename over it: os.replace is atomic on one filesystem.
    # The temp file is opened like any new file (mode 0o666 less umask), unlike mkstemp's 0o600.
    tmp = temporary_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            writer(f, arrays, metadata)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _write_npz(f, arrays, metadata) -> None:
    if metadata is not None:
        arrays = {**arrays, METADATA_KEY: np.frombuffer(json.dumps(metadata).encode(), np.uint8)}
    # What np.savez does, minus its **kwargs API: a state key named "file" or "allow_pickle"
    # would collide with savez's own parameters.
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in arrays.items():
            with archive.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


def _write_safetensors(f, arrays, metadata) -> None:
    header = {} if metadata is None else {METADATA_KEY: {"minitensor": json.dumps(metadata)}}
    # Lay the data out widest dtype first, as the reference does: with the header padded to
    # 8 bytes, every tensor then starts at a multiple of its itemsize (mmap-friendly).
    order = sorted(arrays, key=lambda name: -arrays[name].dtype.itemsize)
    offset, spans = 0, {}
    for name in order:
        spans[name] = [offset, offset + arrays[name].nbytes]
        offset += arrays[name].nbytes
    for name, array in arrays.items():  # header keeps the caller's order
        kind = _ST_NAMES[array.dtype.kind, array.dtype.itemsize]
        header[name] = {"dtype": kind, "shape": list(array.shape), "data_offsets": spans[name]}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    f.write(struct.pack("<Q", len(blob)))
    f.write(blob)
    for name in order:
        array = arrays[name]
        f.write(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes(order="C"))


def load(path, *, return_metadata=False):
    """Read a state dict of writeable NumPy arrays; with ``return_metadata``, ``(state, metadata)``.

    ``metadata`` is None when the file has none. Raises CheckpointError for a corrupt file.
    """
    path = os.fspath(path)
    reader = _read_npz if _suffix(path) == ".npz" else _read_safetensors
    with open(path, "rb") as f:  # a missing file raises FileNotFoundError naming the path
        state, metadata = reader(f, path)
    return (state, metadata) if return_metadata else state


def _what_it_looks_like(head: bytes) -> str:
    """A hint for a file that is not in the format its suffix promises, from its first bytes."""
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "it looks like an npz (zip) archive: rename it to .npz"
    if head.startswith(b"\x93NUMPY"):
        return "it is a single .npy array, not an npz archive of named arrays"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "it is a pickle, which is never loaded (unpickling can run any code)"
    if len(head) >= 9 and head[8:9] == b"{":
        return "it looks like a safetensors file: rename it to .safetensors"
    return "its first bytes are neither a zip archive nor a safetensors header"


def _read_npz(f, path):
    head = f.read(16)
    f.seek(0)
    if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):  # an npz is a zip archive
        raise CheckpointError(f"{path!r} is not an npz archive: {_what_it_looks_like(head)}")
    try:
        # zipfile and numpy.lib.format raise a zoo of exception types on bad input (BadZipFile,
        # EOFError, zlib.error, a ValueError for object arrays, MemoryError for a corrupt
        # shape...). Only library calls run in this block, so any failure means a bad file.
        archive = np.load(f, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise CheckpointError(f"{path!r} is not an npz archive")
        with archive:
            state = {name: _read_member(archive, name, path) for name in archive.files}
    except CheckpointError:
        raise
    except Exception as e:
        raise CheckpointError(f"{path!r} is not a readable npz archive: {e}") from e
    metadata = state.pop(METADATA_KEY, None)
    if metadata is not None:
        if metadata.dtype != np.uint8 or metadata.ndim != 1:
            raise CheckpointError(f"{path!r}: {METADATA_KEY} is not a 1-d uint8 array of JSON")
        metadata = _parse_json(metadata.tobytes(), path, "metadata")
    for name, array in state.items():
        if array.dtype.kind not in "biufc":
            raise CheckpointError(f"{path!r}: array {name!r} has non-numeric dtype {array.dtype}")
    # Native byte order, like safetensors; a copy only where NumPy handed back a read-only view.
    state = {k: a.astype(a.dtype.newbyteorder("="), copy=False) for k, a in state.items()}
    return {k: a if a.flags.writeable else a.copy() for k, a in state.items()}, metadata


def _read_member(archive, name, path) -> np.ndarray:
    """One array of an open npz archive; an object array is refused, never unpickled."""
    try:
        value = archive[name]
    except ValueError as e:
        if "allow_pickle" not in str(e):  # NumPy's refusal of an object array names the flag
            raise
        raise CheckpointError(f"{path!r}: array {name!r} holds Python objects, stored as a pickle, which is "
                              "never loaded (unpickling can run any code)") from None
    if not isinstance(value, np.ndarray):  # NumPy hands back a member that is not a .npy file as raw bytes
        raise CheckpointError(f"{path!r}: member {name!r} is not a .npy array")
    return value


def _parse_json(blob: bytes, path, what):
    try:
        return json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path!r}: {what} is not valid UTF-8 JSON: {e}") from e
    except RecursionError:  # json recurses once per nesting level: a hostile header can exhaust the stack
        raise CheckpointError(f"{path!r}: {what} is nested too deeply to be a checkpoint's") from None


def read_safetensors_header(path) -> dict:
    """The parsed JSON header of a .safetensors file, without reading any tensor data."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        return _read_header(f, path)[0]


def _read_header(f, path):
    size = os.fstat(f.fileno()).st_size
    raw = f.read(8)
    if len(raw) < 8:
        raise CheckpointError(f"{path!r} is {size} bytes, too short for a safetensors header")
    (n,) = struct.unpack("<Q", raw)
    if n > size - 8:
        hint = _what_it_looks_like(raw + f.read(8))
        raise CheckpointError(f"{path!r}: header length {n} runs past the end of the file; {hint}")
    header = _parse_json(f.read(n), path, "safetensors header")
    if not isinstance(header, dict):
        raise CheckpointError(f"{path!r}: safetensors header is not a JSON object")
    return header, 8 + n, size - 8 - n


def _read_safetensors(f, path):
    header, start, data_size = _read_header(f, path)
    metadata = header.pop(METADATA_KEY, None)
    if metadata is not None and not (isinstance(metadata, dict) and
                                     all(isinstance(v, str) for v in metadata.values())):
        raise CheckpointError(f"{path!r}: {METADATA_KEY} must map str to str")
    if metadata is not None and set(metadata) == {"minitensor"}:
        metadata = _parse_json(metadata["minitensor"].encode(), path, "metadata")

    entries = {}
    for name, info in header.items():
        bad = f"{path!r}: tensor {name!r} "
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
            raise CheckpointError(bad + "needs dtype, shape and data_offsets")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype, str) or dtype not in _ST_DTYPES:
            raise CheckpointError(bad + f"has unsupported dtype {dtype!r}; "
                                  f"supported: {sorted(_ST_DTYPES)}")
        if not _is_array_shape(shape, np.dtype(_ST_DTYPES[dtype]).itemsize):
            raise CheckpointError(bad + f"has a bad shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and
                all(type(o) is int for o in offsets) and 0 <= offsets[0] <= offsets[1]):
            raise CheckpointError(bad + f"has bad data_offsets {offsets!r}")
        if offsets[1] - offsets[0] != np.dtype(_ST_DTYPES[dtype]).itemsize * math.prod(shape):
            raise CheckpointError(bad + f"spans {offsets} bytes, which does not fit {dtype} {shape}")
        entries[name] = (np.dtype(_ST_DTYPES[dtype]), shape, offsets)

    # Like the reference reader: the tensors must tile the data region exactly, with no gaps,
    # overlaps or trailing bytes. This is also what catches a truncated file.
    end = 0
    for name, (_, _, (begin, stop)) in sorted(entries.items(), key=lambda e: e[1][2]):
        if begin != end:
            raise CheckpointError(f"{path!r}: tensor {name!r} starts at byte {begin}, expected {end}")
        end = stop
    if end != data_size:
        raise CheckpointError(f"{path!r}: tensors cover {end} data bytes but the file has {data_size}")

    state = {}
    for name, (dtype, shape, (begin, stop)) in entries.items():
        buffer = bytearray(stop - begin)  # a bytearray makes the array writeable, without a copy
        f.seek(start + begin)
        if f.readinto(buffer) != len(buffer):
            raise CheckpointError(f"{path!r}: file ended inside tensor {name!r}")
        array = np.frombuffer(buffer, dtype).reshape(shape)
        state[name] = array.astype(dtype.newbyteorder("="), copy=False)  # native byte order
    return state, metadata


def _is_array_shape(shape, itemsize: int) -> bool:
    """Whether NumPy can make an array of this shape: a list of at most ``_MAX_DIMS`` non-negative ints
    whose bytes fit an int64. NumPy counts the bytes as if the 0 sides were not there, so ``[0, 10**30]``
    holds no bytes, yet no array has that shape."""
    return (isinstance(shape, list) and len(shape) <= _MAX_DIMS
            and all(type(d) is int and d >= 0 for d in shape)
            and math.prod(d for d in shape if d) * itemsize < 2 ** 63)


def temporary_path(path) -> str:
    """A fresh temporary name beside ``path`` for an atomic write: ``.NAME.<12 hex>.tmp``. Hidden,
    unique (no clash with a user's file or a second writer), and recognisable by :func:`stale_temporaries`."""
    directory, name = os.path.split(os.path.abspath(os.fspath(path)))
    return os.path.join(directory, f".{name}.{uuid.uuid4().hex[:12]}.tmp")


def stale_temporaries(path) -> list:
    """The temporaries of ``path`` that an interrupted write (a kill, a power loss) left behind."""
    directory, name = os.path.split(os.path.abspath(os.fspath(path)))
    if not os.path.isdir(directory):
        return []
    pattern = re.compile(rf"\.{re.escape(name)}\.[0-9a-f]{{12}}\.tmp")
    return sorted(os.path.join(directory, f) for f in os.listdir(directory) if pattern.fullmatch(f))
