"""Encodings of numpy arrays in SQLite blobs; never pickle."""

from __future__ import annotations

import io

import numpy as np


def encode_array(array: np.ndarray) -> bytes:
    """Encode a whole matrix or vector as ``np.save`` bytes (dtype and shape kept)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def decode_array(blob: bytes) -> np.ndarray:
    return np.load(io.BytesIO(blob), allow_pickle=False)


def encode_vector(vector: np.ndarray) -> bytes:
    """Encode one factor row as raw little-endian float32 (no header: k is known)."""
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def decode_vector(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4")
