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


def encode_rows(matrix: np.ndarray) -> list[bytes]:
    """Each row of a (n, k) matrix as raw little-endian float32, like encode_vector."""
    matrix = np.ascontiguousarray(matrix, dtype="<f4")
    data, width = matrix.tobytes(), matrix.shape[1] * 4
    return (
        [data[start : start + width] for start in range(0, len(data), width)]
        if width
        else [b""] * len(matrix)
    )


def decode_rows(blobs: list[bytes], width: int) -> np.ndarray:
    """Rows encoded by encode_rows, all ``width`` values long, as one (n, width) float32 matrix."""
    if not blobs:
        return np.zeros((0, width), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), width).copy()
