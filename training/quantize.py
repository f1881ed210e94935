#!/usr/bin/env python3
"""Weight-only 8-/4-bit quantisation of a vlad checkpoint (MODEL.md section 1.1), RTN or AWQ.

    cd training && /usr/bin/python3 quantize.py --model IN --out OUT --bits 4|8 --group G \\
        [--method awq|rtn] [--calib DIR|random] [--frames N] [--seed S] [--no-embed]
        [--keep REGEX]
    cd training && /usr/bin/python3 quantize.py --eval-ref F32_MODEL --model QUANTISED \
        --calib DIR|random --frames N     # max / mean |chunk - F32 chunk| on the same inputs

Every Linear weight [out, in] with in % G == 0 (and the tied embedding / LM head `embed.weight`
unless --no-embed) is stored as codes + one F32 scale per (row, group of G inputs), symmetric
round to nearest. Other tensors are copied unchanged (same dtype), and so are those whose name
matches --keep (a Python regular expression searched in the name: mixed precision, e.g.
--keep '^expert\.' keeps the action expert at its stored precision).

--method awq (the default; Lin et al. 2023, "AWQ: Activation-aware Weight Quantization"):
the twin runs on --frames calibration frames (--calib DIR: recorded episodes, frames spread
evenly over the episode files of DIR, e.g. data/train; --calib random: random images, states,
prompts and noise, for random-weight models), a hook on every Linear collects the mean |x| of
each input channel and a fixed sample of input rows. Per layer, alpha is grid-searched in
[0, 1] (--grid points): s = mean|x|^alpha normalised by sqrt(max(s) min(s)), and the alpha
minimising ||(x/s) Q(W diag s)^T - x W^T||^2 on the sampled rows is kept (alpha = 0 is RTN,
so AWQ is never worse than RTN on the calibration rows). The embedding is always RTN (it is
also the lookup table). --method rtn: s = 1, no .awq tensor, no calibration.

Deterministic (fixed seeds). Tensors are read one at a time from a memory map: RTN never holds
more than one F32 matrix; AWQ holds the F32 twin for calibration (4 bytes/param).
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import re
import struct
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from vlad_twin import quant, safetensors_io  # noqa: E402
from vlad_twin.config import SEP, VladConfig  # noqa: E402
from vlad_train.data import frame_views  # noqa: E402


class LazyFile:
    """Header of a safetensors file and its tensors on demand (np.memmap)."""

    def __init__(self, path: str):
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        self.meta = header.pop("__metadata__", {})
        self.entries = header  # insertion order = file order
        self.base = 8 + n
        self.mm = np.memmap(path, dtype=np.uint8, mode="r")

    def dtype(self, name):
        return self.entries[name]["dtype"]

    def shape(self, name):
        return self.entries[name]["shape"]

    def get(self, name) -> torch.Tensor:
        e = self.entries[name]
        b, en = e["data_offsets"]
        raw = self.mm[self.base + b:self.base + en]
        if e["dtype"] == "F32":
            arr = raw.view("<f4").astype(np.float32)
        elif e["dtype"] == "BF16":
            arr = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(f"tensor '{name}': dtype {e['dtype']} (F32 or BF16 expected)")
        return torch.from_numpy(arr.reshape(e["shape"]))


# ---- calibration ---------------------------------------------------------------------------

def calib_frames(c: VladConfig, meta: dict, calib: str, n: int, seed: int):
    """n (images [1,n_cam,H,W,3] uint8, state [1,sd], noise [1,H,A], prompt bytes) tuples."""
    g = torch.Generator().manual_seed(seed)
    out = []
    if calib == "random":
        words = [b"pick up the cube", b"push the green block onto the yellow circle",
                 b"reach the red ball", b"put it in the bin", b"stack the blocks"]
        for i in range(n):
            imgs = torch.randint(0, 256, (1, c.n_cameras, c.image_size, c.image_size, 3),
                                 generator=g, dtype=torch.uint8)
            state = torch.randn(1, c.state_dim, generator=g)
            noise = torch.randn(1, c.chunk_size, c.action_dim, generator=g)
            out.append((imgs, state, noise, words[i % len(words)]))
        return out
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sim"))
    from read_episode import read_episode  # noqa: E402
    from vlad_train.data import parse_views  # noqa: E402
    views = parse_views(meta.get("vlad.views", ""), c.n_cameras) if meta.get("vlad.views") else \
        [(i, 0) for i in range(c.n_cameras)]
    paths = sorted(glob.glob(os.path.join(calib, "**", "episode_*.safetensors"), recursive=True))
    if not paths:
        raise SystemExit(f"quantize: {calib}: no episode_*.safetensors files")
    rng = np.random.default_rng(seed)
    pick = [paths[int(i)] for i in np.linspace(0, len(paths) - 1, n).round()]
    for p in pick:
        t, m = read_episode(p)
        T = t["state"].shape[0]
        k = int(rng.integers(T))
        imgs = frame_views(t["images"], k, views)[None]
        if imgs.shape[2] != c.image_size:
            raise SystemExit(f"quantize: {p}: images {imgs.shape[2]}px, the model takes {c.image_size}")
        state = torch.from_numpy(np.array(t["state"][k], np.float32))[None]
        noise = torch.randn(1, c.chunk_size, c.action_dim, generator=g)
        out.append((torch.from_numpy(np.ascontiguousarray(imgs)), state, noise,
                    m.get("instruction", "").encode()))
    return out


def collect(model_path: str, frames, rows: int, seed: int):
    """Per Linear weight name: (mean |x| per input channel float64, sampled input rows [<=rows, in])."""
    from vlad_twin.model import load_checkpoint
    m = load_checkpoint(model_path, torch.float32)
    stats = {}
    g = torch.Generator().manual_seed(seed + 1)

    def hook(name):
        def f(mod, inp):
            x = inp[0].detach().reshape(-1, inp[0].shape[-1]).to(torch.float32)
            st = stats.setdefault(name, {"sum": torch.zeros(x.shape[1], dtype=torch.float64),
                                         "n": 0, "rows": []})
            st["sum"] += x.abs().sum(0, dtype=torch.float64)
            st["n"] += x.shape[0]
            k = min(x.shape[0], max(1, rows // 8))  # a few rows of every call
            idx = torch.randperm(x.shape[0], generator=g)[:k]
            st["rows"].append(x[idx].clone())
        return f

    hs = [mod.register_forward_pre_hook(hook(n + ".weight"))
          for n, mod in m.named_modules() if isinstance(mod, torch.nn.Linear)]
    with torch.no_grad():
        for imgs, state, noise, prompt in frames:
            kv, S = m.encode_prefix(imgs, prompt)
            m.sample_actions(kv, S, state, noise)
            m.lang_logits(kv, S, [SEP] + list(b"what now?") + [SEP])
    for h in hs:
        h.remove()
    out = {}
    for n, st in stats.items():
        X = torch.cat(st["rows"])
        if X.shape[0] > rows:
            X = X[torch.randperm(X.shape[0], generator=g)[:rows]]
        out[n] = (st["sum"] / max(st["n"], 1), X)
    del m
    return out


def awq_scale(W: torch.Tensor, mean_abs: torch.Tensor, X: torch.Tensor, bits: int, group: int,
              grid: int):
    """(s float32 [in] or None for alpha = 0, alpha, error, rtn error)."""
    Wf = W.to(torch.float32)
    X = X.to(torch.float32)
    ref = X @ Wf.T
    ma = mean_abs.clamp(min=float(mean_abs.max()) * 1e-5 + 1e-12)
    best = None
    rtn_err = None
    for i in range(grid):
        a = i / (grid - 1) if grid > 1 else 0.0
        if a == 0.0:
            s = None
        else:
            s = ma ** a
            s = (s / math.sqrt(float(s.max()) * float(s.min()))).to(torch.float32)
            if not (torch.isfinite(s).all() and (s > 0).all()):
                continue
        q, sc = quant.quantize(W, bits, group, None if s is None else s.double())
        Wq = quant.dequantize(q, sc, group, None if s is None else s, torch.float32)
        err = float(((X @ Wq.T - ref) ** 2).sum())
        if s is None:
            rtn_err = err
        if best is None or err < best[2]:
            best = (s, a, err)
    return best[0], best[1], best[2], rtn_err


# ---- main ----------------------------------------------------------------------------------

def quantize_file(model: str, out: str, bits: int, group: int, method: str = "awq",
                  calib: str = "random", frames: int = 8, seed: int = 0, grid: int = 20,
                  rows: int = 256, embed: bool = True, verbose: bool = True,
                  keep: str = "") -> dict:
    if bits not in (4, 8):
        raise SystemExit("quantize: --bits must be 4 or 8")
    if group not in quant.GROUPS:
        raise SystemExit(f"quantize: --group must be one of {quant.GROUPS}")
    try:
        keep_re = re.compile(keep) if keep else None
    except re.error as e:
        raise SystemExit(f"quantize: --keep {keep!r}: {e}") from None
    t0 = time.time()
    lf = LazyFile(model)
    c = VladConfig.from_json(lf.meta["vlad.config"])
    stats = {}
    if method == "awq":
        fr = calib_frames(c, lf.meta, calib, frames, seed)
        stats = collect(model, fr, rows, seed)
        if verbose:
            print(f"quantize: calibration on {len(fr)} frames ({calib}), "
                  f"{len(stats)} linears, {time.time() - t0:.1f} s", file=sys.stderr)
    elif method != "rtn":
        raise SystemExit("quantize: --method must be awq or rtn")
    tensors, dtypes = {}, {}
    n_q = n_plain = 0
    err_awq = err_rtn = 0.0
    for name in lf.entries:
        shape = lf.shape(name)
        want = (quant.quantizable(name, shape, group) and (embed or name != "embed.weight")
                and not (keep_re and keep_re.search(name)))
        if lf.dtype(name) not in ("F32", "BF16"):
            raise SystemExit(f"quantize: tensor '{name}': dtype {lf.dtype(name)} "
                             "(already quantised?)")
        W = lf.get(name)
        if not want:
            tensors[name], dtypes[name] = W.clone(), lf.dtype(name)
            n_plain += 1
            continue
        s = None
        if method == "awq" and name in stats and name != "embed.weight":
            s, a, e, e0 = awq_scale(W, stats[name][0], stats[name][1], bits, group, grid)
            err_awq += e
            err_rtn += e0
        t, d = quant.quant_tensors(name, W, bits, group, None if s is None else s.double())
        tensors.update(t)
        dtypes.update(d)
        n_q += 1
        del W
    meta = dict(lf.meta)
    qm = {"method": method, "bits": bits, "group": group,
          "calib_frames": frames if method == "awq" else 0}
    if keep:
        qm["keep"] = keep
    meta["vlad.quant"] = json.dumps(qm, separators=(",", ":"))
    del lf
    tmp = out + ".tmp"
    safetensors_io.save(tmp, tensors, meta, dtypes)
    os.replace(tmp, out)
    r = {"out": out, "method": method, "bits": bits, "group": group, "keep": keep,
         "quantized": n_q, "plain": n_plain, "seconds": round(time.time() - t0, 2)}
    if method == "awq":
        r["calib_err_awq"] = err_awq
        r["calib_err_rtn"] = err_rtn
    if verbose:
        print(json.dumps(r))
    return r


def eval_chunks(ref: str, qpath: str, calib: str, frames: int, seed: int = 1) -> dict:
    """Action chunks of the quantised model vs the reference model (the twin, float32) on the
    same frames and noise: max and mean |chunk - reference chunk| (raw units)."""
    from vlad_twin.model import load_checkpoint
    a = load_checkpoint(ref, torch.float32)
    b = load_checkpoint(qpath, torch.float32)
    lf = LazyFile(ref)
    fr = calib_frames(a.c, lf.meta, calib, frames, seed)
    errs = []
    with torch.no_grad():
        for imgs, state, noise, prompt in fr:
            out = []
            for m in (a, b):
                kv, S = m.encode_prefix(imgs, prompt)
                out.append(m.sample_actions(kv, S, state, noise))
            errs.append((out[1] - out[0]).abs())
    e = torch.stack(errs)
    return {"model": qpath, "ref": ref, "frames": len(fr), "calib": calib,
            "max_abs": float(e.max()), "mean_abs": float(e.mean())}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--eval-ref", metavar="F32_MODEL",
                    help="instead of quantising: compare --model (quantised) with this model "
                         "on --frames frames of --calib (same noise), print the chunk errors")
    ap.add_argument("--model", required=True)
    ap.add_argument("--out")
    ap.add_argument("--bits", type=int, choices=[4, 8])
    ap.add_argument("--group", type=int, default=32, choices=list(quant.GROUPS))
    ap.add_argument("--method", default="awq", choices=["awq", "rtn"])
    ap.add_argument("--calib", default="random", help="episode directory or 'random'")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--grid", type=int, default=20)
    ap.add_argument("--rows", type=int, default=256, help="input rows kept per linear")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--no-embed", action="store_true", help="keep the embedding unquantised")
    ap.add_argument("--keep", default="", metavar="REGEX",
                    help="tensors whose name matches stay unquantised (mixed precision)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.eval_ref:
        print(json.dumps(eval_chunks(a.eval_ref, a.model, a.calib, a.frames, a.seed + 1)))
        return
    if not a.out or not a.bits:
        ap.error("--out and --bits are required")
    quantize_file(a.model, a.out, a.bits, a.group, a.method, a.calib, a.frames, a.seed, a.grid,
                  a.rows, not a.no_embed, keep=a.keep)


if __name__ == "__main__":
    main()
