"""Read and write IDX files, the format MNIST is published in.

Layout: two zero bytes, a dtype code, the rank ``r``; then ``r`` big-endian
uint32 dimensions; then the payload, row-major and big-endian. A reader must
not trust the header: a 100-byte file may claim terabytes, so the declared
size is checked against a limit and against the bytes actually present before
anything that size is allocated.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import zlib
from pathlib import Path

import numpy as np

from mnistlab._atomic import atomic_write_bytes
from mnistlab.errors import IDXFormatError

__all__ = ["read_idx", "parse_idx", "write_idx", "IDX_DTYPES", "MAX_IDX_BYTES"]

# dtype code -> big-endian numpy dtype, as defined by the format.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}

# Largest payload we agree to allocate (MNIST's biggest file is 47 MB).
MAX_IDX_BYTES = 4 * 1024**3
_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"


def _header(head: bytes, source: str, max_bytes: int) -> tuple[np.dtype, tuple[int, ...], int]:
    """Validate the 4-byte magic plus dimensions; return dtype, shape, header size."""
    if len(head) < 4:
        raise IDXFormatError(f"{source}: file is too short to be IDX ({len(head)} bytes, expected at least 4).")
    if head[0] != 0 or head[1] != 0:
        raise IDXFormatError(
            f"{source}: bad magic number {head[:4].hex()}, expected 0000 followed by a dtype code and rank."
        )
    code, rank = head[2], head[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise IDXFormatError(f"{source}: unknown dtype code 0x{code:02X}, expected one of {known}.")
    if rank == 0:
        raise IDXFormatError(f"{source}: rank 0 declared, expected at least one dimension.")
    header_size = 4 + 4 * rank
    if len(head) < header_size:
        raise IDXFormatError(f"{source}: header declares {rank} dimensions but the file ends inside the header.")
    shape = tuple(int(d) for d in np.frombuffer(head, ">u4", count=rank, offset=4))
    dtype = IDX_DTYPES[code]
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > max_bytes:
        raise IDXFormatError(
            f"{source}: header declares shape {shape} ({nbytes:,} bytes), more than the {max_bytes:,}-byte limit; the file is corrupt or not IDX."
        )
    return dtype, shape, header_size


def _finish(payload: bytes | bytearray, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    # astype to native order copies once and gives a writeable, aligned array.
    return np.frombuffer(payload, dtype).reshape(shape).astype(dtype.newbyteorder("="))


def parse_idx(data: bytes, *, source: str = "<bytes>", max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Parse IDX bytes (raw or gzip-compressed) into a native-endian array."""
    if data[:2] == _GZIP_MAGIC:
        return _read_stream(io.BytesIO(data), source, max_bytes, compressed=True)
    dtype, shape, header_size = _header(data[: 1024 + 4], source, max_bytes)
    expected = math.prod(shape) * dtype.itemsize
    got = len(data) - header_size
    if got != expected:
        raise IDXFormatError(
            f"{source}: header declares shape {shape} ({expected:,} payload bytes) but the file holds {got:,}."
        )
    return _finish(data[header_size:], dtype, shape)


def _read_stream(raw, source: str, max_bytes: int, compressed: bool) -> np.ndarray:
    try:
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
        head = stream.read(4)
        if len(head) == 4 and head[3] > 0:
            head += stream.read(4 * head[3])
        dtype, shape, _ = _header(head, source, max_bytes)
        expected = math.prod(shape) * dtype.itemsize
        # Read in chunks so a lying header costs no more memory than the real data.
        payload = bytearray()
        while len(payload) < expected:
            chunk = stream.read(min(_CHUNK, expected - len(payload)))
            if not chunk:
                break
            payload += chunk
        extra = stream.read(1)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise IDXFormatError(
            f"{source}: cannot decompress ({exc}); the file is truncated or corrupt, download it again."
        ) from None
    if len(payload) != expected or extra:
        got = f"{len(payload):,}" if not extra else f"more than {expected:,}"
        raise IDXFormatError(
            f"{source}: header declares shape {shape} ({expected:,} payload bytes) but the file holds {got}."
        )
    return _finish(payload, dtype, shape)


def read_idx(path: str | os.PathLike, *, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Read an IDX file, gzip-compressed or raw (detected by content, not name)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            compressed = f.read(2) == _GZIP_MAGIC
            f.seek(0)
            if compressed:
                return _read_stream(f, str(path), max_bytes, compressed=True)
            size = os.fstat(f.fileno()).st_size
            head = f.read(4)
            if len(head) == 4 and head[3] > 0:
                head += f.read(4 * head[3])
            dtype, shape, header_size = _header(head, str(path), max_bytes)
            expected = math.prod(shape) * dtype.itemsize
            if size - header_size != expected:
                raise IDXFormatError(
                    f"{path}: header declares shape {shape} ({expected:,} payload bytes) but the file holds {size - header_size:,}."
                )
            return _finish(f.read(expected), dtype, shape)
    except FileNotFoundError:
        raise IDXFormatError(f"{path}: no such file.") from None
    except IsADirectoryError:
        raise IDXFormatError(f"{path}: is a directory, expected an IDX file.") from None


def write_idx(path: str | os.PathLike, array: np.ndarray, *, compress: bool | None = None) -> Path:
    """Write ``array`` as IDX, atomically; gzip when ``compress`` or the name ends in .gz."""
    path = Path(path)
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _CODES:
        raise IDXFormatError(
            f"cannot write dtype {array.dtype} as IDX; expected one of uint8, int8, int16, int32, float32, float64."
        )
    if array.ndim == 0 or array.ndim > 255:
        raise IDXFormatError(f"cannot write a {array.ndim}-dimensional array as IDX; expected 1 to 255 dimensions.")
    if any(d >= 2**32 for d in array.shape):
        raise IDXFormatError(f"cannot write shape {array.shape} as IDX; each dimension must be below 2**32.")
    code = _CODES[native]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    body = header + np.ascontiguousarray(array, IDX_DTYPES[code]).tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    if compress:
        body = gzip.compress(body, compresslevel=6, mtime=0)
    atomic_write_bytes(path, body)
    return path
