#!/usr/bin/env python3
"""Two-phase ONNX export of a vlad checkpoint (LeRobot style) + the shared benchmark inputs.

    python3 bench/ort/export.py --model CKPT --out DIR [--opset 17] [--seed 0] [--no-ref64]

Writes into DIR:
  prefix.onnx     images u8 [1,n_cam,H,W,3], tokens i64 [1,T]  ->  K, V f32 [depth,1,S,kv_dim]
                  (post-RoPE keys / values of every backbone layer over the prefix; that is all
                  the velocity step needs from the prefix)
  noop.onnx       x_t -> x_t + 1 (run_ort.js times it: ORT's fixed cost per session run)
  step.onnx       x_t f32 [1,H,A], t f64 [1], state f32 [1,state_dim], K, V  ->  v f32 [1,H,A]
                  (one action-expert velocity evaluation = twin VladModel.velocity(), including
                  the state token from the raw state; the host runs the Euler loop
                  x <- x - v/N for t = 1 - k/N, k = 0..N-1, then x*std + mean, exactly as
                  VladModel.sample_actions)
  obs.json + cam<i>.ppm   the observation in the `vlad-policy run` format (images, state,
                  prompt, noise), read by the C runner
  inputs.bin      the same observation raw, little-endian, for the ORT runner: images u8,
                  tokens i64, state f32, noise f32 (layout in meta.json)
  meta.json       shapes, flow steps, the action normaliser, the input layout
  reference.json  the twin's action chunk in float64 (checkpoint weights exactly as stored)
                  and in float32, and |twin64 - exported-graph-in-torch| as a self check

The model code is training/vlad_twin/model.py, reused layer by layer; the only rewrites are
for tracing: the RoPE tables and the attention mask are precomputed constants, and the time
embedding is computed in the graph from a float64 t (the twin computes it in float64 in
Python and rounds it to float32, as the graph does; cos(a) as sin(a + pi/2), since ORT's CPU
Cos has no float64 kernel).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "training"))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from vlad_twin.model import attention, load_checkpoint  # noqa: E402

PROMPT = b"pick up the red cube and put it in the bin"  # the prompt of vlad-bench engine


def rope(x, cos, sin, n_heads: int):
    """twin apply_rope with the table slice precomputed (cos/sin [T, half])."""
    B, T, D = x.shape
    hd = D // n_heads
    half = hd // 2
    x = x.view(B, T, n_heads, hd)
    c = cos[None, :, None, :]
    s = sin[None, :, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1).view(B, T, D)


def rope_tables64(c, n_pos: int):
    half = c.head_dim // 2
    i = torch.arange(half, dtype=torch.float64)
    freq = c.rope_theta ** (-2.0 * i / c.head_dim)
    ang = torch.arange(n_pos, dtype=torch.float64)[:, None] * freq[None, :]
    return torch.cos(ang), torch.sin(ang)


class Prefix(nn.Module):
    """encode_prefix with the prompt as token ids: images, tokens -> K, V of every layer."""

    def __init__(self, m, S: int):
        super().__init__()
        self.m = m
        cos, sin = rope_tables64(m.c, S)
        dt = m.embed.weight.dtype
        self.register_buffer("cos", cos.to(dt))
        self.register_buffer("sin", sin.to(dt))

    def forward(self, images, tokens):
        m, c = self.m, self.m.c
        img = m.vision(images)
        x = torch.cat([img, m.embed(tokens)], dim=1)
        ks, vs = [], []
        for layer in m.vlm.layers:
            h = layer.attn_norm(x)
            q = rope(layer.attn.q(h), self.cos, self.sin, c.n_heads)
            k = rope(layer.attn.k(h), self.cos, self.sin, c.n_heads)
            v = layer.attn.v(h)
            ks.append(k)
            vs.append(v)
            x = m._finish(layer, x, attention(q, k, v, c.n_heads))
        # the last layer's MLP output is not needed (twin computes it, its result is unused);
        # ONNX export drops the dead nodes, as the C engine skips them
        return torch.stack(ks), torch.stack(vs)


class Noop(nn.Module):
    """x_t -> x_t + 1: the fixed cost of one session run through the Node binding."""

    def forward(self, x_t):
        return x_t + 1.0


class Step(nn.Module):
    """velocity(kv, S, state_token(state), x_t, t) with t a float64 tensor [1]."""

    def __init__(self, m, S: int):
        super().__init__()
        self.m = m
        c = m.c
        H = c.chunk_size
        dt = m.embed.weight.dtype
        cos, sin = rope_tables64(c, S + H + 1)
        self.register_buffer("cos", cos[S:].to(dt))
        self.register_buffer("sin", sin[S:].to(dt))
        mask = torch.ones(H + 1, S + H + 1, dtype=torch.bool)
        mask[0, S + 1:] = False  # the state token sees the prefix and itself
        self.register_buffer("mask", mask)
        half = c.expert_width // 2
        j = torch.arange(half, dtype=torch.float64)
        self.register_buffer("freq", 10000.0 ** (-j / half))  # float64, as the twin

    def forward(self, x_t, t, state, K, V):
        m, c = self.m, self.m.c
        ex = m.expert
        B, H, _ = x_t.shape
        a = (1000.0 * t) * self.freq  # float64, as time_embedding()
        # cos(a) as sin(a + pi/2): ORT's CPU Cos has no float64 kernel, its Sin has one
        temb = torch.cat([torch.sin(a), torch.sin(a + math.pi / 2)]).to(x_t.dtype)
        temb = temb[None, None, :].expand(B, H, c.expert_width)
        act = ex.time_mlp_out(F.silu(ex.time_mlp_in(torch.cat([ex.action_in(x_t), temb], dim=-1))))
        st = m.state_token(state)
        x = torch.cat([st, act], dim=1)
        for L, layer in enumerate(ex.layers):
            h = layer.attn_norm(x)
            q = rope(layer.attn.q(h), self.cos, self.sin, c.n_heads)
            k = rope(layer.attn.k(h), self.cos, self.sin, c.n_heads)
            v = layer.attn.v(h)
            Kc = torch.cat([K[L], k], dim=1)
            Vc = torch.cat([V[L], v], dim=1)
            x = m._finish(layer, x, attention(q, Kc, Vc, c.n_heads, self.mask))
        return ex.action_out(ex.norm(x[:, 1:]))


def write_ppm(path, img):
    h, w, _ = img.shape
    with open(path, "wb") as f:
        f.write(b"P6\n%d %d\n255\n" % (w, h))
        f.write(img.contiguous().numpy().tobytes())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-ref64", action="store_true", help="skip the float64 twin reference")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    t0 = time.time()
    m = load_checkpoint(a.model, torch.float32)
    c = m.c
    N, H, A = c.flow_steps, c.chunk_size, c.action_dim

    # ---- the deterministic observation ------------------------------------------------
    g = torch.Generator().manual_seed(a.seed)
    imgs = torch.randint(0, 256, (1, c.n_cameras, c.image_size, c.image_size, 3), generator=g,
                         dtype=torch.uint8)
    state = torch.randn(1, c.state_dim, generator=g, dtype=torch.float64).float()
    noise = torch.randn(1, H, A, generator=g, dtype=torch.float64).float()
    prompt = PROMPT[: c.max_prompt_tokens]
    toks = torch.tensor([m.prompt_tokens(prompt)], dtype=torch.long)
    S = c.n_cameras * c.n_patches + toks.shape[1]

    cams = []
    for i in range(c.n_cameras):
        fn = f"cam{i}.ppm"
        write_ppm(os.path.join(a.out, fn), imgs[0, i])
        cams.append(fn)
    # floats written with repr(): the C loader's strtod gives back the same float32 values
    obs = {"images": cams, "state": [float(x) for x in state[0]], "prompt": prompt.decode("latin-1"),
           "noise": [[float(x) for x in row] for row in noise[0]]}
    with open(os.path.join(a.out, "obs.json"), "w") as f:
        json.dump(obs, f)
    parts = [("images", imgs.numpy().tobytes(), "uint8", list(imgs.shape)),
             ("tokens", toks.numpy().astype("<i8").tobytes(), "int64", list(toks.shape)),
             ("state", state.numpy().astype("<f4").tobytes(), "float32", list(state.shape)),
             ("noise", noise.numpy().astype("<f4").tobytes(), "float32", list(noise.shape))]
    layout, off = {}, 0
    with open(os.path.join(a.out, "inputs.bin"), "wb") as f:
        for name, b, dt, shape in parts:
            layout[name] = {"offset": off, "bytes": len(b), "dtype": dt, "shape": shape}
            f.write(b)
            off += len(b)

    # ---- export ---------------------------------------------------------------------------
    pre, step = Prefix(m, S).eval(), Step(m, S).eval()
    with torch.no_grad():
        K, V = pre(imgs, toks)
        t1 = torch.tensor([1.0], dtype=torch.float64)
        torch.onnx.export(pre, (imgs, toks), os.path.join(a.out, "prefix.onnx"),
                          input_names=["images", "tokens"], output_names=["K", "V"],
                          opset_version=a.opset, do_constant_folding=True)
        torch.onnx.export(step, (noise, t1, state, K, V), os.path.join(a.out, "step.onnx"),
                          input_names=["x_t", "t", "state", "K", "V"], output_names=["v"],
                          opset_version=a.opset, do_constant_folding=True)
        torch.onnx.export(Noop(), (noise,), os.path.join(a.out, "noop.onnx"),
                          input_names=["x_t"], output_names=["y"], opset_version=a.opset)
        # the exported modules in torch (float32): the Euler loop of sample_actions
        x = noise.clone()
        for k in range(N):
            x = x - step(x, torch.tensor([1.0 - k / N], dtype=torch.float64), state, K, V) / N
        graph32 = (x * m.norm.action.std + m.norm.action.mean)[0]
        kv32, S32 = m.encode_prefix(imgs, prompt)
        assert S32 == S
        twin32 = m.sample_actions(kv32, S, state, noise)[0]
    t_export = time.time() - t0
    del pre, step, kv32, K, V

    ref = {"prefix_len": S, "twin32_actions": twin32.tolist(),
           "graph32_vs_twin32_max_abs": float((graph32 - twin32).abs().max())}
    if not a.no_ref64:
        m64 = m.double()  # weights exactly as stored (F32 checkpoint), computed in float64
        with torch.no_grad():
            kv, S64 = m64.encode_prefix(imgs, prompt)
            act64 = m64.sample_actions(kv, S64, state.double(), noise.double())[0]
        ref["twin64_actions"] = act64.tolist()
        ref["twin32_vs_twin64_max_abs"] = float((twin32.double() - act64).abs().max())
        ref["graph32_vs_twin64_max_abs"] = float((graph32.double() - act64).abs().max())
        del m64, kv
    with open(os.path.join(a.out, "reference.json"), "w") as f:
        json.dump(ref, f)
    meta = {"checkpoint": os.path.abspath(a.model), "config": json.loads(c.to_json()),
            "parameters": sum(p.numel() for p in m.parameters()),
            "prefix_len": S, "n_tokens": toks.shape[1], "flow_steps": N, "chunk_size": H,
            "action_dim": A, "depth": c.depth, "kv_dim": c.kv_dim,
            "action_mean": [float(v) for v in m.norm.action.mean],
            "action_std": [float(v) for v in m.norm.action.std],
            "opset": a.opset, "torch": torch.__version__, "inputs": layout,
            "export_s": round(t_export, 1), "total_s": round(time.time() - t0, 1)}
    with open(os.path.join(a.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps({k: ref[k] for k in ref if k.endswith("max_abs")} | {"S": S,
                     "export_s": meta["export_s"], "total_s": meta["total_s"]}))


if __name__ == "__main__":
    main()
