"""Tests for minitensor.io: round trips, atomic writes, corrupt files, and the safetensors layout."""
import io
import json
import os
import pickle
import struct
import tempfile
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minitensor.io import CheckpointError, load, read_safetensors_header, save

FORMATS = (".npz", ".safetensors")
DTYPES = (np.float32, np.float64, np.float16, np.int64, np.int32, np.int8, np.uint8, np.bool_)


def same(a, b) -> bool:
    """Bit-identical arrays (NaN and -0.0 included), with the same dtype and shape."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def small_state():
    return {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.array([1, -2, 3], np.int64),
            "flag": np.array(True)}


def read_st_by_hand(path):
    """An independent reader: the safetensors spec, done with struct and json only."""
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    kinds = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I8": "i1",
             "U8": "u1", "BOOL": "?"}
    tensors = {}
    for name, info in header.items():
        if name != "__metadata__":
            begin, end = info["data_offsets"]
            dtype = np.dtype(kinds[info["dtype"]])
            tensors[name] = np.frombuffer(data[begin:end], dtype).reshape(info["shape"])
    return n, header, tensors, len(data)


# ---------------------------------------------------------------- round trips

arrays = st.sampled_from(DTYPES).flatmap(lambda dt: hnp.arrays(
    dt, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)))


@settings(max_examples=60, deadline=None)
@given(state=st.dictionaries(st.text(min_size=1, max_size=12).filter(lambda k: k != "__metadata__"
                                                                      and "\x00" not in k),
                             arrays, max_size=4),
       suffix=st.sampled_from(FORMATS))
def test_roundtrip_preserves_values_dtype_shape_and_order(state, suffix):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "ckpt" + suffix)
        save(state, path)
        loaded = load(path)
    assert list(loaded) == list(state)
    for name, array in state.items():
        assert isinstance(loaded[name], np.ndarray)
        assert same(loaded[name], array), name


@pytest.mark.parametrize("suffix", FORMATS)
def test_metadata_roundtrip(tmp_path, suffix):
    meta = {"step": 1200, "lr": 3e-4, "name": "gpt-ü", "ok": True, "none": None,
            "config": {"n_layer": 2, "dims": [64, 128]}}
    save(small_state(), tmp_path / f"m{suffix}", metadata=meta)
    state, got = load(tmp_path / f"m{suffix}", return_metadata=True)
    assert got == meta
    assert all(same(state[k], v) for k, v in small_state().items())
    save(small_state(), tmp_path / f"none{suffix}")
    assert load(tmp_path / f"none{suffix}", return_metadata=True)[1] is None
    save(small_state(), tmp_path / f"empty{suffix}", metadata={})
    assert load(tmp_path / f"empty{suffix}", return_metadata=True)[1] == {}


@pytest.mark.parametrize("suffix", FORMATS)
def test_loaded_arrays_are_writeable_numpy(tmp_path, suffix):
    save(small_state(), tmp_path / f"w{suffix}")
    state = load(tmp_path / f"w{suffix}")
    for array in state.values():
        assert array.flags.writeable
        array[...] = 0  # would raise on a read-only view
        assert not array.any()


@pytest.mark.parametrize("suffix", FORMATS)
def test_tensor_like_values_and_awkward_arrays(tmp_path, suffix):
    class FakeTensor:  # what minitensor.Tensor looks like to io: an array in .data
        def __init__(self, data):
            self.data = data

    base = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    state = {"tensor": FakeTensor(base), "transposed": base.T, "strided": base[:, ::2, 1:],
             "big_endian": base.astype(">f4"), "scalar": np.float32(1.5), "list": [1, 2, 3]}
    save(state, tmp_path / f"t{suffix}")
    got = load(tmp_path / f"t{suffix}")
    assert same(got["tensor"], base)
    assert same(got["transposed"], np.ascontiguousarray(base.T))
    assert same(got["strided"], np.ascontiguousarray(base[:, ::2, 1:]))
    assert got["big_endian"].dtype == np.float32 and np.array_equal(got["big_endian"], base)
    assert same(got["scalar"], np.array(1.5, np.float32))
    assert np.array_equal(got["list"], [1, 2, 3])


@pytest.mark.parametrize("suffix", FORMATS)
def test_keys_that_collide_with_numpy_parameters(tmp_path, suffix):
    state = {"file": np.ones(2), "allow_pickle": np.zeros(1), "a/b.c": np.arange(3)}
    save(state, tmp_path / f"k{suffix}")
    got = load(tmp_path / f"k{suffix}")
    assert list(got) == list(state) and all(same(got[k], v) for k, v in state.items())


# ---------------------------------------------------------------- atomic writes

@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_failed_save_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch, suffix, failing):
    path = tmp_path / f"ckpt{suffix}"
    save(small_state(), path, metadata={"step": 1})
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, failing, boom)
    with pytest.raises(OSError, match="disk on fire"):
        save({"w": np.zeros(1000)}, path, metadata={"step": 2})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == [path.name]
    assert load(path, return_metadata=True)[1] == {"step": 1}


@pytest.mark.parametrize("suffix", FORMATS)
def test_save_overwrites_and_keeps_file_mode_of_a_new_file(tmp_path, suffix):
    path = tmp_path / f"o{suffix}"
    save({"a": np.zeros(2)}, path)
    save({"b": np.ones(3)}, path)
    assert list(load(path)) == ["b"]
    assert os.listdir(tmp_path) == [path.name]
    if os.name == "posix":  # created 0o666 less umask, like open(), not mkstemp's 0o600
        umask = os.umask(0)
        os.umask(umask)
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_save_into_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save(small_state(), tmp_path / "nope" / "x.npz")
    assert not (tmp_path / "nope").exists()


# ---------------------------------------------------------------- bad arguments

def test_bad_suffix(tmp_path):
    for name in ("x.pt", "x.pkl", "x"):
        with pytest.raises(ValueError, match=r"\.npz.*\.safetensors") as info:
            save(small_state(), tmp_path / name)
        assert name in str(info.value)
        with pytest.raises(ValueError, match=r"\.npz"):
            load(tmp_path / name)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("key", ["", "__metadata__", "a\x00b", 3, None])
def test_bad_keys(tmp_path, suffix, key):
    with pytest.raises(ValueError, match="non-empty str"):
        save({key: np.zeros(1)}, tmp_path / f"k{suffix}")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("value", [np.array([{}], dtype=object), np.array(["a", "b"]),
                                   np.array([b"x"]), ["a", "b"]])
def test_non_numeric_values_are_rejected(tmp_path, suffix, value):
    with pytest.raises(TypeError, match="'bad'"):
        save({"good": np.zeros(1), "bad": value}, tmp_path / f"v{suffix}")
    assert os.listdir(tmp_path) == []


def test_safetensors_rejects_dtypes_it_cannot_store(tmp_path):
    with pytest.raises(TypeError, match="'c'.*complex"):
        save({"c": np.zeros(2, np.complex64)}, tmp_path / "c.safetensors")
    save({"c": np.ones(2, np.complex64)}, tmp_path / "c.npz")  # npz can
    assert same(load(tmp_path / "c.npz")["c"], np.ones(2, np.complex64))


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("meta, where", [
    ({"lr": np.float32(0.1)}, "'lr'"),
    ({"cfg": {"shape": (2, 3)}}, "'shape'"),
    ({"cfg": {"fn": print}}, "'fn'"),
    ({"ids": [1, {2, 3}]}, r"'ids'\]\[1\]"),
    ({1: "int key"}, "1"),
    (["not", "a", "dict"], "dict"),
])
def test_bad_metadata(tmp_path, suffix, meta, where):
    with pytest.raises(TypeError, match=where):
        save(small_state(), tmp_path / f"m{suffix}", metadata=meta)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("suffix", FORMATS)
def test_missing_file(tmp_path, suffix):
    with pytest.raises(FileNotFoundError, match="absent"):
        load(tmp_path / f"absent{suffix}")


# ---------------------------------------------------------------- corrupt files

@pytest.mark.parametrize("suffix", FORMATS)
def test_every_truncation_is_a_checkpoint_error(tmp_path, suffix):
    good = tmp_path / f"good{suffix}"
    save(small_state(), good, metadata={"step": 7})
    raw = good.read_bytes()
    bad = tmp_path / f"bad{suffix}"
    for length in range(len(raw)):
        bad.write_bytes(raw[:length])
        with pytest.raises(CheckpointError, match="bad") as info:
            load(bad)
        assert str(bad) in str(info.value), length


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("payload", [b"", b"garbage" * 100, os.urandom(4096), b"PK\x03\x04" + b"\0" * 64,
                                     b"\x93NUMPY\x01\x00", b"\xff" * 8 + b"{}"])
def test_garbage_is_a_checkpoint_error(tmp_path, suffix, payload):
    path = tmp_path / f"junk{suffix}"
    path.write_bytes(payload)
    with pytest.raises(CheckpointError, match="junk"):
        load(path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(suffix=st.sampled_from(FORMATS), data=st.data())
def test_random_byte_damage_never_escapes_as_another_error(tmp_path, suffix, data):
    path = tmp_path / f"fuzz{suffix}"
    save(small_state(), path, metadata={"step": 1})
    raw = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    path.write_bytes(bytes(raw))
    try:
        state = load(path)
    except CheckpointError as e:
        assert str(path) in str(e)
    else:  # damage to tensor bytes (or, in safetensors, to a name) can go unnoticed
        assert all(isinstance(a, np.ndarray) and a.dtype.kind in "biuf" for a in state.values())
        if suffix == ".npz":  # zip checks member names against its directory
            assert list(state) == list(small_state())


# One edit to a file: overwrite a byte, cut the file short, insert bytes, or delete some.
edits = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**4), st.integers(0, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10**4), st.none()),
    st.tuples(st.just("insert"), st.integers(0, 10**4), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, 10**4), st.integers(1, 8)),
)


def edit_bytes(raw: bytes, edit) -> bytes:
    kind, at, arg = edit
    at %= len(raw) + 1
    if kind == "flip":
        return raw[:at] + bytes([arg]) + raw[at + 1:]
    if kind == "truncate":
        return raw[:at]
    if kind == "insert":
        return raw[:at] + arg + raw[at:]
    return raw[:at] + raw[at + arg:]


def assert_loads_or_checkpoint_error(path):
    """``load`` either returns a state of numeric arrays or raises CheckpointError naming the file."""
    try:
        state, _ = load(path, return_metadata=True)
    except CheckpointError as e:
        assert str(path) in str(e)
    else:
        assert all(isinstance(a, np.ndarray) and a.dtype.kind in "biuf" for a in state.values())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(suffix=st.sampled_from(FORMATS), changes=st.lists(edits, min_size=1, max_size=4))
def test_random_edits_never_escape_as_another_error(tmp_path, suffix, changes):
    path = tmp_path / f"fuzz{suffix}"
    save(small_state(), path, metadata={"step": 1, "cfg": {"d": [1, 2]}})
    raw = path.read_bytes()
    for change in changes:
        raw = edit_bytes(raw, change)
    path.write_bytes(raw)
    assert_loads_or_checkpoint_error(path)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=4)
    | st.sampled_from(["F32", "I64", "BOOL"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entry=st.sampled_from(["w", "b", "__metadata__"]),
       field=st.sampled_from(["dtype", "shape", "data_offsets", "minitensor", None]),
       value=json_values, data_size=st.sampled_from([0, 8, 72, 100]))
def test_header_values_of_any_json_type_are_a_checkpoint_error(tmp_path, entry, field, value, data_size):
    # A valid header with one value (or a whole entry) replaced by any JSON value.
    header = {"w": {"dtype": "F32", "shape": [3, 4], "data_offsets": [0, 48]},
              "b": {"dtype": "I64", "shape": [3], "data_offsets": [48, 72]},
              "__metadata__": {"minitensor": json.dumps({"step": 1})}}
    if field is None:
        header[entry] = value
    else:
        header[entry][field] = value
    path = tmp_path / "h.safetensors"
    write_st(path, header, b"\0" * data_size)
    assert_loads_or_checkpoint_error(path)


EXPLOITED = []


def _exploit():
    EXPLOITED.append("code ran during load")
    return "pwned"


class Payload:
    def __reduce__(self):
        return _exploit, ()


def test_npz_with_object_array_is_refused_without_unpickling(tmp_path, monkeypatch):
    path = tmp_path / "evil.npz"
    np.savez(path, weights=np.zeros(3), evil=np.array([Payload()], dtype=object))
    calls = []
    real_load = pickle.load
    monkeypatch.setattr(pickle, "load", lambda *a, **k: calls.append(1) or real_load(*a, **k))
    with pytest.raises(CheckpointError, match="evil"):
        load(path)
    assert calls == [] and EXPLOITED == []


def test_npz_holding_a_single_npy_is_refused(tmp_path):
    path = tmp_path / "single.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(CheckpointError, match="not an npz archive"):
        load(path)


def test_npz_with_bad_metadata_member(tmp_path):
    for member, match in ((np.frombuffer(b"{not json", np.uint8), "JSON"),
                          (np.zeros(3, np.float32), "uint8")):
        path = tmp_path / "meta.npz"
        np.savez(path, w=np.zeros(2), __metadata__=member)
        with pytest.raises(CheckpointError, match=match):
            load(path)


def npy_bytes(array) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def write_zip(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members:
            archive.writestr(name, data)


@pytest.mark.parametrize("members, match", [
    # NumPy hands back a member not named .npy as raw bytes (this was an AttributeError)
    ([("w.npy", npy_bytes(np.zeros(2))), ("readme.txt", b"hello")], "member 'readme.txt' is not a .npy array"),
    ([("w.npy", b"hello")], "member 'w' is not a .npy array"),
    # NumPy's own text ("Object arrays cannot be loaded when allow_pickle=False") names neither array nor remedy
    ([("w.npy", npy_bytes(np.zeros(2))), ("evil.npy", npy_bytes(np.array([1, "a"], dtype=object)))],
     "array 'evil' holds Python objects, stored as a pickle, which is never loaded"),
])
def test_npz_members_that_are_not_numeric_arrays(tmp_path, members, match):
    path = tmp_path / "members.npz"
    write_zip(path, members)
    with pytest.raises(CheckpointError, match=match) as info:
        load(path)
    assert str(path) in str(info.value)


member_names = st.sampled_from(["w.npy", "b.npy", "__metadata__.npy", "readme.txt", "w", "d/x.npy"])
member_data = st.sampled_from([
    npy_bytes(np.zeros((2, 3), np.float32)), npy_bytes(np.arange(3)), npy_bytes(np.array([1, "a"], dtype=object)),
    npy_bytes(np.zeros(2, dtype=[("a", "f4")])), npy_bytes(np.array(["text"])),
    npy_bytes(np.frombuffer(b'{"step": 1}', np.uint8)), npy_bytes(np.frombuffer(b"[" * 5000 + b"]" * 5000, np.uint8)),
    npy_bytes(np.frombuffer(b"\xff{", np.uint8)), b"", b"\x93NUMPY\x01\x00garbage"]) | st.binary(max_size=64)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(members=st.lists(st.tuples(member_names, member_data), max_size=3, unique_by=lambda m: m[0]))
def test_any_zip_named_npz_loads_or_is_a_checkpoint_error(tmp_path, members):
    path = tmp_path / "any.npz"
    write_zip(path, members)
    assert_loads_or_checkpoint_error(path)


def write_st(path, header, data=b"", header_bytes=None):
    blob = header_bytes if header_bytes is not None else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)


@pytest.mark.parametrize("header, data, match", [
    ({"w": {"dtype": "F32", "shape": [250], "data_offsets": [0, 1000]}}, b"\0" * 8, "cover 1000"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, b"\0" * 8, "starts at byte 8"),
    ({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, "does not fit"),
    ({"w": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 8]}}, b"\0" * 8, "unsupported dtype"),
    ({"w": {"dtype": "F32", "shape": [2]}}, b"\0" * 8, "data_offsets"),
    ({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8, "bad shape"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, b"\0" * 8, "bad data_offsets"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "v": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12, "starts at byte 4"),
    ({"w": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}, b"\0" * 5, "file has 5"),
    ({"__metadata__": {"step": 3}}, b"", "str to str"),
    ({"w": [1, 2]}, b"", "needs dtype"),
    ([1, 2], b"", "not a JSON object"),
    # no bytes to read, yet no array can have that shape (NumPy's reshape raised its own ValueError)
    ({"w": {"dtype": "F32", "shape": [0, 10**30], "data_offsets": [0, 0]}}, b"", "bad shape"),
    ({"w": {"dtype": "F32", "shape": [0, 2**62, 2**62], "data_offsets": [0, 0]}}, b"", "bad shape"),
    ({"w": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}}, b"\0" * 8, "bad shape"),
    ({"w": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}}, b"\0" * 4, "bad shape"),
    ({"w": {"dtype": 7, "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, "unsupported dtype"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": ["0", "8"]}}, b"\0" * 8, "bad data_offsets"),
    ({"__metadata__": {"minitensor": {"not": "a str"}}}, b"", "str to str"),
    ({"__metadata__": {"note": None}}, b"", "str to str"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0.0, 8.0]}}, b"\0" * 8, "bad data_offsets"),
    ({"w": {"dtype": "U8", "shape": [1], "data_offsets": [False, True]}}, b"\0", "bad data_offsets"),
    # a dtype that is a list or an object (unhashable) was a TypeError from the dict lookup
    ({"w": {"dtype": ["F32"], "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, r"unsupported dtype \['F32'\]"),
    ({"w": {"dtype": {}, "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, "unsupported dtype"),
    # no bytes, but the bytes of the other sides overflow NumPy's size (it counts them as if the 0 were not there)
    ({"w": {"dtype": "F64", "shape": [0, 2**61], "data_offsets": [0, 0]}}, b"", "bad shape"),
    ({"w": {"dtype": "F32", "shape": [0, 2**32, 2**30], "data_offsets": [0, 0]}}, b"", "bad shape"),
    # more sides than NumPy allows (its reshape raised its own ValueError)
    ({"w": {"dtype": "U8", "shape": [1] * 65, "data_offsets": [0, 1]}}, b"\0", "bad shape"),
    ({"w": {"dtype": "U8", "shape": [0] * 65, "data_offsets": [0, 0]}}, b"", "bad shape"),
])
def test_inconsistent_safetensors_headers(tmp_path, header, data, match):
    path = tmp_path / "h.safetensors"
    write_st(path, header, data)
    with pytest.raises(CheckpointError, match=match) as info:
        load(path)
    assert str(path) in str(info.value)


def test_safetensors_header_length_and_encoding(tmp_path):
    path = tmp_path / "h.safetensors"
    path.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    with pytest.raises(CheckpointError, match="past the end"):
        read_safetensors_header(path)
    write_st(path, None, header_bytes=b'{"a": 1')
    with pytest.raises(CheckpointError, match="JSON"):
        load(path)
    write_st(path, None, header_bytes=b"\xff\xfe{}")
    with pytest.raises(CheckpointError, match="UTF-8"):
        load(path)


@pytest.mark.parametrize("blob", [b"[" * 100_000 + b"]" * 100_000, b'{"w": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                                  b'{"__metadata__": {"minitensor": "' + b"[" * 100_000 + b'"}}'])
def test_a_deeply_nested_header_is_a_checkpoint_error(tmp_path, blob):
    path = tmp_path / "deep.safetensors"
    write_st(path, None, header_bytes=blob)
    with pytest.raises(CheckpointError, match="(nested too deeply|not valid)"):  # was a RecursionError
        load(path)


def test_deeply_nested_npz_metadata_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "deep.npz"
    np.savez(path, w=np.zeros(2), __metadata__=np.frombuffer(b"[" * 100_000 + b"]" * 100_000, np.uint8))
    with pytest.raises(CheckpointError, match="nested too deeply"):
        load(path)


def test_a_file_in_the_other_format_says_what_it_is(tmp_path):
    # A safetensors file named .npz used to be called "pickled" (NumPy's message for non-zip input).
    save(small_state(), tmp_path / "a.safetensors")
    os.replace(tmp_path / "a.safetensors", tmp_path / "a.npz")
    with pytest.raises(CheckpointError, match="looks like a safetensors file: rename it to .safetensors"):
        load(tmp_path / "a.npz")
    save(small_state(), tmp_path / "b.npz")
    os.replace(tmp_path / "b.npz", tmp_path / "b.safetensors")
    with pytest.raises(CheckpointError, match="looks like an npz .* rename it to .npz"):
        load(tmp_path / "b.safetensors")
    (tmp_path / "c.npz").write_bytes(pickle.dumps({"w": [1.0]}))
    with pytest.raises(CheckpointError, match="is a pickle, which is never loaded"):
        load(tmp_path / "c.npz")


def test_temporary_names_are_unique_and_their_leftovers_are_found(tmp_path):
    from minitensor.io import stale_temporaries, temporary_path

    target = tmp_path / "checkpoint.npz"
    names = {temporary_path(target) for _ in range(100)}
    assert len(names) == 100 and all(os.path.dirname(n) == str(tmp_path) for n in names)
    left = sorted(names)[:2]
    for n in left:
        open(n, "w").close()
    (tmp_path / ".checkpoint.npz.mine.tmp").write_text("not ours")  # another pattern: not a leftover of ours
    (tmp_path / ".other.npz.0123456789ab.tmp").write_text("another file's")
    assert stale_temporaries(target) == left
    assert stale_temporaries(tmp_path / "missing-dir" / "x.npz") == []


# ---------------------------------------------------------------- the safetensors layout

def test_our_safetensors_match_the_spec_read_independently(tmp_path):
    state = {"z_f16": np.ones(3, np.float16), "a_f64": np.full((2, 2), -1.25),
             "m_u8": np.arange(5, dtype=np.uint8), "b_f32": np.arange(6, dtype=np.float32).reshape(2, 3),
             "flag": np.array([True, False]), "empty": np.zeros((0, 4), np.int32), "scalar": np.array(7, np.int64)}
    path = tmp_path / "spec.safetensors"
    save(state, path, metadata={"step": 5, "cfg": {"d": 64}})
    n, header, tensors, data_len = read_st_by_hand(path)

    raw_header = path.read_bytes()[8:8 + n]
    # Padded with 0-7 spaces like the reference, so the data starts 8-aligned.
    assert n % 8 == 0 and n - len(raw_header.rstrip(b" ")) < 8
    assert raw_header.rstrip(b" ").endswith(b"}")
    assert header["__metadata__"] == {"minitensor": json.dumps({"step": 5, "cfg": {"d": 64}})}
    assert all(isinstance(v, str) for v in header["__metadata__"].values())
    assert header["b_f32"] == {"dtype": "F32", "shape": [2, 3], "data_offsets": header["b_f32"]["data_offsets"]}
    assert header["scalar"]["shape"] == [] and header["flag"]["dtype"] == "BOOL"
    spans = sorted(tuple(v["data_offsets"]) for k, v in header.items() if k != "__metadata__")
    assert spans[0][0] == 0 and spans[-1][1] == data_len
    assert all(prev[1] == nxt[0] for prev, nxt in zip(spans, spans[1:]))  # contiguous, no overlap
    for name, array in state.items():
        begin = header[name]["data_offsets"][0]
        assert begin % array.dtype.itemsize == 0  # aligned for zero-copy readers
        assert same(tensors[name], array.astype(array.dtype.newbyteorder("<"))), name
    assert read_safetensors_header(path) == header


def test_interop_with_the_reference_safetensors_package(tmp_path):
    st_numpy = pytest.importorskip("safetensors.numpy")
    state = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "h": np.ones(2, np.float16),
             "ids": np.array([3, 1], np.int64), "mask": np.array([True, False]), "empty": np.zeros(0, np.uint8)}
    ours = tmp_path / "ours.safetensors"
    save(state, ours, metadata={"step": 9})
    theirs = st_numpy.load_file(str(ours))
    assert set(theirs) == set(state) and all(same(theirs[k], v) for k, v in state.items())

    ref = tmp_path / "ref.safetensors"
    st_numpy.save_file(state, str(ref), metadata={"format": "np", "note": "hi"})
    got, meta = load(ref, return_metadata=True)
    assert meta == {"format": "np", "note": "hi"}  # foreign str -> str metadata comes back as-is
    assert set(got) == set(state) and all(same(got[k], v) for k, v in state.items())


def test_npz_is_a_plain_zip_of_npy_files(tmp_path):
    path = tmp_path / "plain.npz"
    save(small_state(), path, metadata={"step": 2})
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["__metadata__.npy", "b.npy", "flag.npy", "w.npy"]
    with np.load(path, allow_pickle=False) as npz:  # NumPy alone reads it
        assert same(npz["w"], small_state()["w"])
        assert json.loads(npz["__metadata__"].tobytes()) == {"step": 2}
