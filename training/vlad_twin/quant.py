"""Weight-only quantised checkpoints (MODEL.md section 1.1), shared by the twin's loader,
training/quantize.py and the fixtures.

A quantised Linear weight X.weight [out, in] is stored as
  X.weight.q8  U8 [out, in]     value (q - 128) * scale
  X.weight.q4  U8 [out, in/2]   two codes per byte, low nibble = even column, value (c - 8) * scale
  X.weight.scale F32 [out, in/G]  one scale per output row per group of G inputs
  X.weight.awq F32 [in]          optional AWQ input-channel scale s > 0: the codes quantise
                                 W diag(s); the layer computes (x / s) Ŵᵀ
The effective matrix is W_eff = Ŵ diag(1/s), which is what the twin loads (in float64).
"""
from __future__ import annotations

import torch

GROUPS = (32, 64, 128)


def qmax(bits: int) -> int:
    return 127 if bits == 8 else 7


def quantize(W: torch.Tensor, bits: int, group: int, s: torch.Tensor | None = None):
    """Symmetric round-to-nearest of W diag(s) (float64 math). Returns (codes int64 [out, in]
    as signed values, scales float32 [out, in/group])."""
    W = W.to(torch.float64)
    out, n_in = W.shape
    assert n_in % group == 0, (n_in, group)
    if s is not None:
        W = W * s.to(torch.float64)[None, :]
    g = W.reshape(out, n_in // group, group)
    amax = g.abs().amax(-1)
    sc = (amax / qmax(bits)).to(torch.float32)
    sc = torch.where(sc > 0, sc, torch.ones_like(sc))  # an all-zero group: any scale > 0
    q = torch.round(g / sc.to(torch.float64)[..., None])
    q = q.clamp(-qmax(bits) - 1, qmax(bits)).to(torch.int64).reshape(out, n_in)
    return q, sc


def dequantize(q: torch.Tensor, sc: torch.Tensor, group: int, s: torch.Tensor | None = None,
               dtype=torch.float64) -> torch.Tensor:
    """W_eff = (q * scale) diag(1/s), in `dtype` (float64 for the reference)."""
    out, n_in = q.shape
    w = (q.to(dtype).reshape(out, n_in // group, group) * sc.to(dtype)[..., None]).reshape(out, n_in)
    if s is not None:
        w = w / s.to(dtype)[None, :]
    return w


def encode(q: torch.Tensor, bits: int) -> torch.Tensor:
    """Signed code values -> the stored U8 tensor."""
    if bits == 8:
        return (q + 128).to(torch.uint8)
    n = (q + 8).to(torch.uint8)
    return (n[:, 0::2] | (n[:, 1::2] << 4)).to(torch.uint8)


def decode(u: torch.Tensor, bits: int) -> torch.Tensor:
    """The stored U8 tensor -> signed code values (int64 [out, in])."""
    u = u.to(torch.int64)
    if bits == 8:
        return u - 128
    lo, hi = u & 15, u >> 4
    return torch.stack([lo, hi], -1).reshape(u.shape[0], -1) - 8


def quantizable(name: str, shape, group: int) -> bool:
    """Linear weights (and the tied embedding) whose input count is a multiple of group."""
    return name.endswith(".weight") and len(shape) == 2 and shape[1] % group == 0


def quant_tensors(name: str, W: torch.Tensor, bits: int, group: int, s=None):
    """{stored name: tensor} and {stored name: dtype} for one quantised matrix."""
    q, sc = quantize(W, bits, group, s)
    t = {f"{name}.q{bits}": encode(q, bits), f"{name}.scale": sc}
    d = {f"{name}.q{bits}": "U8", f"{name}.scale": "F32"}
    if s is not None:
        t[f"{name}.awq"] = s.to(torch.float32)
        d[f"{name}.awq"] = "F32"
    return t, d


def resolve(tensors: dict, names, path: str = "checkpoint") -> dict:
    """Replace every quantised matrix of a loaded file (name -> tensor, U8 as uint8) by its
    effective float64 matrix; checks what the C loader checks."""
    out = {}
    used = set()
    for n in names:
        q8, q4 = tensors.get(n + ".q8"), tensors.get(n + ".q4")
        if q8 is None and q4 is None:
            if n + ".scale" in tensors or n + ".awq" in tensors:
                raise ValueError(f"{path}: tensor '{n}.scale'/'{n}.awq' without codes")
            if n in tensors:
                out[n] = tensors[n]
                used.add(n)
            continue
        if q8 is not None and q4 is not None:
            raise ValueError(f"{path}: tensor '{n}': both q8 and q4")
        if n in tensors:
            raise ValueError(f"{path}: tensor '{n}': both plain and quantised")
        bits = 8 if q8 is not None else 4
        u = q8 if q8 is not None else q4
        sc = tensors.get(n + ".scale")
        if sc is None:
            raise ValueError(f"{path}: tensor '{n}.q{bits}': scale tensor '{n}.scale' missing")
        q = decode(u, bits)
        group = q.shape[1] // sc.shape[1]
        if group not in GROUPS or group * sc.shape[1] != q.shape[1] or sc.shape[0] != q.shape[0]:
            raise ValueError(f"{path}: tensor '{n}.scale': bad shape {list(sc.shape)}")
        if not (torch.isfinite(sc).all() and (sc > 0).all()):
            raise ValueError(f"{path}: tensor '{n}.scale': scales must be finite and > 0")
        s = tensors.get(n + ".awq")
        if s is not None and not (torch.isfinite(s).all() and (s > 0).all()):
            raise ValueError(f"{path}: tensor '{n}.awq': must be finite and > 0")
        out[n] = dequantize(q, sc, group, s)
        used.update(k for k in (n + f".q{bits}", n + ".scale", n + ".awq") if k in tensors)
    for k in tensors:
        if k not in used:
            raise ValueError(f"{path}: unexpected tensor '{k}'")
    return out


def is_quantized(tensors: dict) -> bool:
    return any(k.endswith((".q8", ".q4")) for k in tensors)

