"""Read and write IDX files, the format MNIST is published in.

Layout: two zero bytes, a dtype code, the rank ``r``; then ``r`` big-endian
uint32 dimensions; then the payload, row-major and big-endian. A reader must
not trust the header, nor the file behind it: a 100-byte file may claim
terabytes, and a 1 MB gzip file may inflate to a gigabyte. So the header is
read first and its declared size checked against a limit (and, for gzip,
against the most the compressed file could inflate to); the payload is then
inflated in 1 MiB steps, never past what the header declares, and memory is
allocated only for a payload the caller keeps (hashing streams), and for gzip
only as it arrives: a short file costs what it holds, not what it claims.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import zlib
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np

from mnistlab._atomic import atomic_write_bytes
from mnistlab.data.home import checked_path, home_path
from mnistlab.errors import IDXFormatError, InputError, ParameterError

__all__ = [
    "read_idx",
    "read_idx_sha256",
    "read_idx_header",
    "idx_sha256",
    "parse_idx",
    "write_idx",
    "IDX_DTYPES",
    "MAX_IDX_BYTES",
    "GZIP_MAGIC",
]

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
GZIP_MAGIC = b"\x1f\x8b"
# Deflate codes at most 258 bytes in 2 bits, so no gzip file inflates to more than 1032 times its size.
_MAX_INFLATE_RATIO = 1032
# The most dimensions a numpy array may have (numpy 2's NPY_MAXDIMS; numpy 1 held 32), of the 255 IDX allows.
_MAX_RANK = 64 if int(np.__version__.split(".")[0]) >= 2 else 32
_NOT_IDX = "; the file is not IDX or is damaged, so replace it with a good copy."  # ends each header complaint


def _header(head: bytes, source: str, max_bytes: int) -> tuple[np.dtype, tuple[int, ...], int]:
    """Validate the 4-byte magic plus dimensions; return dtype, shape, header size."""
    if len(head) < 4:
        raise IDXFormatError(
            f"{source}: file is too short to be IDX ({len(head)} bytes, expected at least 4){_NOT_IDX}"
        )
    if head[0] != 0 or head[1] != 0:
        raise IDXFormatError(
            f"{source}: bad magic number {head[:4].hex()}, expected 0000 followed by a dtype code and rank{_NOT_IDX}"
        )
    code, rank = head[2], head[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise IDXFormatError(f"{source}: unknown dtype code 0x{code:02X}, expected one of {known}{_NOT_IDX}")
    if rank == 0:
        raise IDXFormatError(f"{source}: rank 0 declared, expected at least one dimension{_NOT_IDX}")
    if rank > _MAX_RANK:
        raise IDXFormatError(
            f"{source}: header declares {rank} dimensions, more than the {_MAX_RANK} numpy holds{_NOT_IDX}"
        )
    header_size = 4 + 4 * rank
    if len(head) < header_size:
        raise IDXFormatError(
            f"{source}: header declares {rank} dimensions but the file ends inside the header{_NOT_IDX}"
        )
    shape = tuple(int(d) for d in np.frombuffer(head, ">u4", count=rank, offset=4))
    dtype = IDX_DTYPES[code]
    nbytes = math.prod(shape) * dtype.itemsize
    # An empty array of absurd items (0 images of 2**32 x 2**32 pixels) is refused as a full one: numpy cannot size it.
    spans = math.prod(d for d in shape if d) * dtype.itemsize
    if max(nbytes, spans) > max_bytes:
        size = f"{nbytes:,} bytes" if nbytes else f"no data, but {spans:,} bytes without its 0 dimension"
        raise IDXFormatError(
            f"{source}: header declares shape {shape} ({size}), more than the {max_bytes:,}-byte limit "
            f"mnistlab reads{_NOT_IDX}"
        )
    return dtype, shape, header_size


class _Header(NamedTuple):
    dtype: np.dtype
    shape: tuple[int, ...]
    raw: bytes  # the header bytes as read: the sha256 covers them with the payload
    payload_bytes: int


class _Stream(Protocol):
    def read(self, n: int, /) -> bytes: ...
    def readinto(self, b, /) -> int: ...


class _Gunzip:
    """Inflate every member of a gzip stream in bounded steps: no read returns more than was asked for.

    ``gzip.GzipFile`` does the same through 8 KiB reads and a CRC in Python;
    this feeds zlib 1 MiB at a time and lets it check each member's CRC and
    length, about a third less time on MNIST's files.
    """

    def __init__(self, raw: _Stream) -> None:
        self._raw = raw
        self._inflate = zlib.decompressobj(31)  # 31: gzip wrapper
        self._input = b""

    def read(self, n: int) -> bytes:
        parts, got = [], 0
        while got < n:
            piece = self._next(n - got)
            if not piece:
                break
            parts.append(piece)
            got += len(piece)
        return b"".join(parts)

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def _next(self, n: int) -> bytes:
        """Up to ``n`` inflated bytes; b"" after the last member."""
        while True:
            if self._inflate.eof:
                # The member ended: zero padding may follow, then another member or the end of the file.
                # (At the end zlib keeps what follows in unused_data, and may repeat it in unconsumed_tail.)
                rest = self._inflate.unused_data.lstrip(b"\0")
                while not rest:
                    more = self._raw.read(_CHUNK)
                    if not more:
                        return b""
                    rest = more.lstrip(b"\0")
                self._inflate, self._input = zlib.decompressobj(31), rest
            if not self._input:
                self._input = self._raw.read(_CHUNK)
                if not self._input:
                    raise EOFError("compressed file ended before the end-of-stream marker was reached")
            out = self._inflate.decompress(self._input, n)
            self._input = self._inflate.unconsumed_tail
            if out:
                return out


def _read_header(stream: _Stream, source: str, max_bytes: int) -> _Header:
    head = stream.read(4)
    if len(head) == 4 and head[3] > 0:
        head += stream.read(4 * head[3])
    dtype, shape, _ = _header(head, source, max_bytes)
    return _Header(dtype, shape, head, math.prod(shape) * dtype.itemsize)


def _pump(stream: _Stream, hdr: _Header, source: str, hasher, dest: np.ndarray | bytearray | None) -> None:
    """Move exactly the declared payload into ``dest`` (or through a scratch chunk), feeding ``hasher``.

    An array ``dest`` is filled in place; a bytearray grows by what arrives, so
    a stream shorter than its header claims never costs the claimed size.
    Reads at most one chunk past what was asked for, so a stream that inflates
    past its declared size (a gzip bomb) is stopped there, whatever it holds.
    """
    expected = hdr.payload_bytes
    in_place = isinstance(dest, np.ndarray)
    buf = (dest if isinstance(dest, np.ndarray) else np.empty(min(_CHUNK, expected), np.uint8)).data
    done = 0
    while done < expected:
        want = min(_CHUNK, expected - done)
        view = buf[done : done + want] if in_place else buf[:want]
        n = stream.readinto(view)
        if not n:
            break
        if hasher is not None:
            hasher.update(view[:n])
        if isinstance(dest, bytearray):
            dest += view[:n]
        done += n
    extra = stream.read(1)
    if done != expected or extra:
        got = f"{done:,}" if not extra else f"more than {expected:,}"
        raise IDXFormatError(
            f"{source}: header declares shape {hdr.shape} ({expected:,} payload bytes) but the file holds {got}; "
            "it is cut short or padded, so replace it with a complete copy."
        )


def _scan(
    raw: io.BufferedIOBase,
    source: str,
    max_bytes: int,
    *,
    keep: bool,
    hashed: bool,
    size: int | None = None,
    payload=True,
) -> tuple[_Header, np.ndarray | None, str | None]:
    """Read one IDX stream (raw or gzip): its header, the array if ``keep``, the sha256 of its decompressed bytes if ``hashed``.

    The header is read and checked before anything else (and alone when not
    ``payload``); the payload buffer is allocated at the declared size only
    when ``keep`` (memory: the array itself), else the stream passes through
    one 1 MiB chunk.
    """
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int | np.integer) or max_bytes < 1:
        raise ParameterError("max_bytes", f"{{param}} must be a whole number of bytes, 1 or more, got {max_bytes!r}.")
    try:
        compressed = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        stream: _Stream = _Gunzip(raw) if compressed else raw
        hdr = _read_header(stream, source, max_bytes)
        if size is not None:
            _check_size(hdr, source, size, compressed)
        if not payload:
            return hdr, None, None
        hasher = hashlib.sha256(hdr.raw) if hashed else None
        # A gzip payload is kept as it inflates: its size is known only once the stream has delivered it.
        dest = (bytearray() if compressed else np.empty(hdr.payload_bytes, np.uint8)) if keep else None
        _pump(stream, hdr, source, hasher, dest)
    except (OSError, EOFError, zlib.error) as exc:
        raise IDXFormatError(
            f"{source}: cannot decompress ({exc}); the file is truncated or corrupt, download it again."
        ) from None
    digest = hasher.hexdigest() if hasher is not None else None
    if dest is None:
        return hdr, None, digest
    arr = np.frombuffer(dest, np.uint8) if isinstance(dest, bytearray) else dest  # no copy: writable, as np.empty's
    arr = arr.view(hdr.dtype).reshape(hdr.shape)
    # Native byte order for the multi-byte dtypes (one copy); uint8 and int8 are used as read.
    return hdr, (arr if hdr.dtype.isnative else arr.astype(hdr.dtype.newbyteorder("="))), digest


def _check_size(hdr: _Header, source: str, size: int, compressed: bool) -> None:
    """Refuse a payload the file cannot hold, before any is read: a raw file's exact size, a gzip file's most."""
    if compressed:
        most = size * _MAX_INFLATE_RATIO
        if hdr.payload_bytes + len(hdr.raw) > most:
            raise IDXFormatError(
                f"{source}: header declares shape {hdr.shape} ({hdr.payload_bytes:,} payload bytes) but the "
                f"{size:,}-byte gzip file inflates to at most {most:,}; it is cut short or damaged, so replace it "
                "with a complete copy."
            )
    elif size - len(hdr.raw) != hdr.payload_bytes:
        raise IDXFormatError(
            f"{source}: header declares shape {hdr.shape} ({hdr.payload_bytes:,} payload bytes) but the file holds "
            f"{size - len(hdr.raw):,}; it is cut short or padded, so replace it with a complete copy."
        )


def parse_idx(data: bytes, *, source: str = "<bytes>", max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Parse IDX bytes (raw or gzip-compressed) into a native-endian array."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise IDXFormatError(f"parse_idx takes the file's bytes, got {type(data).__name__}; use read_idx for a path.")
    # memoryview(...).nbytes: a memoryview's len counts its items, which need not be bytes
    _, arr, _ = _scan(io.BytesIO(data), source, max_bytes, keep=True, hashed=False, size=memoryview(data).nbytes)
    assert arr is not None
    return arr


def _scan_file(
    path: str | os.PathLike, max_bytes: int, *, keep: bool, hashed: bool, payload: bool = True
) -> tuple[_Header, np.ndarray | None, str | None]:
    if not isinstance(path, (str, os.PathLike)):  # Path(3) said only "expected str, bytes or os.PathLike object"
        raise IDXFormatError(f"Expected the path of an IDX file, got {type(path).__name__}; use parse_idx for bytes.")
    path = Path(home_path(path, "path"))  # "~/x.idx" in the home folder, where write_idx wrote it
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            return _scan(f, str(path), max_bytes, keep=keep, hashed=hashed, size=size, payload=payload)
    except FileNotFoundError:
        raise IDXFormatError(f"{path}: no such file.") from None
    except IsADirectoryError:
        raise IDXFormatError(f"{path}: is a directory, expected an IDX file.") from None
    except PermissionError:
        raise IDXFormatError(f"{path}: permission denied; make the file readable.") from None


def read_idx(path: str | os.PathLike, *, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Read an IDX file, gzip-compressed or raw (detected by content, not name)."""
    return read_idx_sha256(path, max_bytes=max_bytes, hashed=False)[0]


def read_idx_sha256(
    path: str | os.PathLike, *, max_bytes: int = MAX_IDX_BYTES, hashed: bool = True
) -> tuple[np.ndarray, str]:
    """The array and the sha256 of the file's decompressed bytes, from one pass over the file."""
    _, arr, digest = _scan_file(path, max_bytes, keep=True, hashed=hashed)
    assert arr is not None
    return arr, digest or ""


def idx_sha256(path: str | os.PathLike, *, max_bytes: int = MAX_IDX_BYTES) -> str:
    """sha256 of the file's decompressed bytes, streamed in 1 MiB chunks.

    The header is checked first and no more than it declares is inflated, so a
    gzip bomb or a file of another kind costs one chunk of memory, not its
    decompressed size.
    """
    _, _, digest = _scan_file(path, max_bytes, keep=False, hashed=True)
    assert digest is not None
    return digest


def read_idx_header(path: str | os.PathLike, *, max_bytes: int = MAX_IDX_BYTES) -> tuple[np.dtype, tuple[int, ...]]:
    """The dtype (native byte order) and shape a file's header declares, read without the payload."""
    hdr, _, _ = _scan_file(path, max_bytes, keep=False, hashed=False, payload=False)
    return hdr.dtype.newbyteorder("="), hdr.shape


def write_idx(path: str | os.PathLike, array: np.ndarray, *, compress: bool | None = None) -> Path:
    """Write ``array`` as IDX, atomically; gzip when ``compress`` is True, or is None and the name ends in .gz."""
    path = checked_path(path, "path")
    if compress is not None and not isinstance(compress, bool | np.bool_):  # "no" is truthy: it was gzipped
        raise ParameterError("compress", f"{{param}} must be True, False or None, got {compress!r}.")
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
    try:
        atomic_write_bytes(path, body)
    except OSError as exc:
        raise InputError(f"Cannot write {path} ({exc.strerror or exc}); give a file path you can write to.") from None
    return path
