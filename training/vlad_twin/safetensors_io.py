"""Minimal .safetensors reader/writer (F32, BF16 and U8: fixtures' frames, quantised codes) on
numpy/torch, no extra packages."""
from __future__ import annotations

import json
import struct

import numpy as np
import torch


def _to_bytes(t: torch.Tensor, dtype: str) -> bytes:
    t = t.detach().cpu().contiguous()
    if dtype == "F32":
        return t.to(torch.float32).numpy().astype("<f4").tobytes()
    if dtype == "BF16":
        return t.to(torch.float32).to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes()
    if dtype == "U8":
        return t.to(torch.uint8).numpy().tobytes()
    raise ValueError(f"unsupported dtype {dtype}")


def save(path: str, tensors: dict, metadata: dict | None = None, dtypes: dict | None = None,
         default_dtype: str = "F32") -> None:
    """tensors: name -> torch.Tensor (written in insertion order); dtypes: name -> "F32"/"BF16"/"U8"."""
    header = {}
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    blobs, off = [], 0
    for name, t in tensors.items():
        dt = (dtypes or {}).get(name, default_dtype)
        b = _to_bytes(t, dt)
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * ((-len(hj)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)


def load(path: str):
    """Returns (tensors: name -> float32 torch.Tensor (uint8 for U8), metadata dict, dtypes dict)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out, dtypes = {}, {}
    for name, e in header.items():
        b, en = e["data_offsets"]
        raw = data[base + b:base + en]
        if e["dtype"] == "F32":
            arr = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        elif e["dtype"] == "BF16":
            u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = u.view(np.float32)
        elif e["dtype"] == "U8":  # quantised codes (MODEL.md 1.1), kept as uint8
            arr = np.frombuffer(raw, dtype=np.uint8)
        else:
            raise ValueError(f"tensor '{name}': unsupported dtype {e['dtype']}")
        out[name] = torch.from_numpy(arr.reshape(e["shape"]).copy())
        dtypes[name] = e["dtype"]
    return out, meta, dtypes
