import gzip
import hashlib
import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mnistlab import IDXFormatError, parse_idx, read_idx, write_idx
from mnistlab.data.idx import idx_sha256
from mnistlab.errors import ParameterError

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("suffix", [".idx", ".idx.gz"])
@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 5), (1, 2, 1, 3)])
def test_round_trip_every_dtype_rank_and_compression(tmp_path, dtype, suffix, shape):
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    a = (rng.integers(info.min, info.max, size=shape, endpoint=True) if info else rng.standard_normal(shape)).astype(
        dtype
    )
    path = write_idx(tmp_path / f"a{suffix}", a)
    b = read_idx(path)
    assert b.dtype == np.dtype(dtype) and b.shape == a.shape
    np.testing.assert_array_equal(a, b)
    assert parse_idx(path.read_bytes()).tolist() == a.tolist()


def test_header_is_big_endian_as_published(tmp_path):
    path = write_idx(tmp_path / "x.idx", np.arange(6, dtype=np.int32).reshape(2, 3))
    raw = path.read_bytes()
    assert raw[:4] == b"\x00\x00\x0c\x02"
    assert struct.unpack(">II", raw[4:12]) == (2, 3)
    assert struct.unpack(">6i", raw[12:]) == tuple(range(6))


def _valid(shape=(2, 3), dtype=np.uint8):
    return bytes([0, 0, 0x08, len(shape)]) + np.asarray(shape, ">u4").tobytes() + np.zeros(shape, dtype).tobytes()


@pytest.mark.parametrize(
    "data, message",
    [
        (_valid()[:-1], "holds 5; it is cut short or padded, so replace it with a complete copy"),  # truncated
        (_valid() + b"\x00", "holds (7|more than 6)"),  # padded payload
        (b"\x01\x00\x08\x02" + _valid()[4:], "bad magic"),
        (b"\x00\x00\x07\x02" + _valid()[4:], "unknown dtype code 0x07"),
        (b"\x00\x00\x08\x00", "rank 0"),
        (b"\x00\x00\x08\x03" + b"\x00\x00\x00\x02", "ends inside the header"),
        (b"\x00\x00", "too short"),
    ],
)
def test_malformed_files_are_rejected_with_reason(tmp_path, data, message):
    for payload in (data, gzip.compress(data)):
        path = tmp_path / "bad.idx"
        path.write_bytes(payload)
        with pytest.raises(IDXFormatError, match=message) as info:
            read_idx(path)
        assert str(path) in str(info.value)
        with pytest.raises(IDXFormatError, match=message):
            parse_idx(payload)


def test_huge_declared_size_is_refused_before_allocating(tmp_path):
    # 100 bytes that claim 4 x 2**30 x 2**30 elements (an exabyte-scale payload).
    head = bytes([0, 0, 0x08, 3]) + np.asarray([4, 2**30, 2**30], ">u4").tobytes()
    path = tmp_path / "huge.idx"
    path.write_bytes(head + b"\x00" * (100 - len(head)))
    with pytest.raises(IDXFormatError, match="limit"):
        read_idx(path)
    path.write_bytes(gzip.compress(head))
    with pytest.raises(IDXFormatError, match="limit"):
        read_idx(path)


def _peak_bytes_of(call) -> int:
    """The most memory Python held while ``call()`` ran (numpy's buffers included)."""
    tracemalloc.start()
    try:
        call()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_gzip_that_lies_about_size_below_limit_is_refused_not_allocated(tmp_path):
    # Declares 10**9 images (1 GB of labels, under the limit) but holds 10 bytes: refused from the file's size.
    head = bytes([0, 0, 0x08, 1]) + np.asarray([10**9], ">u4").tobytes()
    path = tmp_path / "liar.idx.gz"
    path.write_bytes(gzip.compress(head + b"\x01" * 10))

    def read():
        with pytest.raises(IDXFormatError, match="gzip file inflates to at most .*replace it with a complete copy"):
            read_idx(path)

    assert _peak_bytes_of(read) < 4 * 2**20
    # 1 MB that does not compress may inflate to the claim, so it is read, in chunks, and found short.
    body = np.random.default_rng(0).bytes(10**6)
    path.write_bytes(gzip.compress(head + body))
    assert 10**9 < path.stat().st_size * 1032

    def read_short():
        with pytest.raises(IDXFormatError, match="holds 1,000,000;"):
            read_idx(path)

    assert _peak_bytes_of(read_short) < 16 * 2**20


def test_corrupt_gzip_stream(tmp_path):
    good = gzip.compress(_valid((50, 50)))
    path = tmp_path / "cut.gz"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(IDXFormatError, match="truncated or corrupt|holds"):
        read_idx(path)


def test_missing_file_and_unwritable_dtype(tmp_path):
    with pytest.raises(IDXFormatError, match="no such file"):
        read_idx(tmp_path / "nope")
    with pytest.raises(IDXFormatError, match="cannot write dtype"):
        write_idx(tmp_path / "x.idx", np.zeros(3, np.uint16))
    with pytest.raises(IDXFormatError, match="dimensional"):
        write_idx(tmp_path / "x.idx", np.array(3, np.uint8))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise_anything_but_idx_format_error(data):
    try:
        parse_idx(data)
    except IDXFormatError:
        pass


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=4, max_size=40))
def test_random_bytes_behind_a_valid_magic_and_as_gzip(data):
    for payload in (b"\x00\x00" + data, gzip.compress(b"\x00\x00" + data)):
        try:
            arr = parse_idx(payload)
        except IDXFormatError:
            continue
        assert arr.size * arr.itemsize + 4 + 4 * arr.ndim == len(b"\x00\x00" + data)


def test_gzip_members_padding_and_trailing_garbage(tmp_path):
    head, body = _valid((4, 5))[:12], _valid((4, 5))[12:]
    path = tmp_path / "members.idx.gz"
    # A header and a payload in two members, then the zero padding gzip allows.
    path.write_bytes(gzip.compress(head) + gzip.compress(body) + bytes(100))
    assert read_idx(path).shape == (4, 5)
    assert idx_sha256(path) == hashlib.sha256(head + body).hexdigest()
    path.write_bytes(gzip.compress(head + body) + b"not gzip")
    with pytest.raises(IDXFormatError, match="cannot decompress"):
        read_idx(path)
    path.write_bytes(gzip.compress(head + body)[:-4])  # the length field cut off
    with pytest.raises(IDXFormatError, match="cannot decompress"):
        idx_sha256(path)


def test_unwritable_paths_and_non_bytes_say_what_to_do(tmp_path):
    from mnistlab import InputError

    with pytest.raises(InputError, match="Cannot write .* give a file path you can write to"):
        write_idx(tmp_path, np.zeros(3, np.uint8))  # a folder
    with pytest.raises(InputError, match=r"Cannot write /proc/x/y.idx \(No such file or directory\)"):
        write_idx("/proc/x/y.idx", np.zeros(3, np.uint8))
    with pytest.raises(IDXFormatError, match="parse_idx takes the file's bytes, got str; use read_idx for a path"):
        parse_idx(str(tmp_path / "x.idx"))
    for not_a_path in (3, None, b"\x00\x00\x08\x01"):  # Python's TypeError, "expected str, bytes or os.PathLike"
        with pytest.raises(
            IDXFormatError, match=f"^Expected the path of an IDX file, got {type(not_a_path).__name__};"
        ):
            read_idx(not_a_path)


@pytest.mark.parametrize("limit", [-1, 0, "10", 2.5, True])
def test_a_size_limit_that_is_no_positive_whole_number_is_refused(tmp_path, limit):
    # read_idx(max_bytes=-1) said "more than the -1-byte limit" of a file that broke no limit.
    path = write_idx(tmp_path / "a.idx", np.zeros((2, 3), np.uint8))
    with pytest.raises(ParameterError, match="max_bytes must be a whole number of bytes, 1 or more"):
        read_idx(path, max_bytes=limit)
    with pytest.raises(ParameterError, match="max_bytes"):
        parse_idx(path.read_bytes(), max_bytes=limit)


@pytest.mark.parametrize(
    "shape, message",
    [
        ((1,) * 65, "declares 65 dimensions, more than the 64 numpy holds"),
        ((0, 2**32 - 1, 2**32 - 1), r"more than the .*-byte limit"),
    ],
)
def test_a_header_numpy_cannot_hold_is_refused_in_words(tmp_path, shape, message):
    # read_idx raised numpy's ValueError ("maximum supported dimension for an ndarray is currently 64, found 65";
    # "array is too big") for a header of many dimensions, or of no images each of 2**64 pixels.
    data = bytes([0, 0, 0x08, len(shape)]) + np.asarray(shape, ">u4").tobytes() + bytes(int(np.prod(shape) > 0))
    for payload in (data, gzip.compress(data)):
        path = tmp_path / "odd.idx"
        path.write_bytes(payload)
        with pytest.raises(IDXFormatError, match=message):
            read_idx(path)
        with pytest.raises(IDXFormatError, match=message):
            parse_idx(payload)


def test_a_memoryview_of_wider_items_is_read_by_its_bytes(tmp_path):
    # Its len counts 4-byte items: a valid file viewed as uint32 was refused as holding "-5 payload bytes".
    images = (np.arange(4 * 28 * 28) % 255).astype(np.uint8).reshape(4, 28, 28)
    write_idx(tmp_path / "t.idx", images)
    raw = (tmp_path / "t.idx").read_bytes()
    assert len(raw) % 4 == 0
    np.testing.assert_array_equal(parse_idx(memoryview(np.frombuffer(raw, np.uint32))), images)


def test_a_compress_flag_given_a_string_is_refused_not_taken_as_true(tmp_path):
    """write_idx(path, array, compress="no") wrote a gzip file: "no" is truthy."""
    for flag in ("no", "yes", 0, 1):
        with pytest.raises(ParameterError, match=rf"^compress must be True, False or None, got {flag!r}\.$"):
            write_idx(tmp_path / "images", np.zeros((2, 3), np.uint8), compress=flag)
    assert list(tmp_path.iterdir()) == []
    path = write_idx(tmp_path / "images", np.zeros((2, 3), np.uint8), compress=np.bool_(False))
    assert path.read_bytes()[:4] == bytes([0, 0, 8, 2])  # raw IDX, not gzip
