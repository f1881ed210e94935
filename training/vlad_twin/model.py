"""PyTorch twin of the vlad VLA model (MODEL.md), the parity reference of the C engine.

Every function follows MODEL.md literally; no KV cache tricks (the language stream is
recomputed in full each step), so that it is an independent check of policy/engine.c.
Batch dimension B everywhere (inference uses B = 1).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import quant, safetensors_io
from .config import BOS, EOS, SEP, VladConfig


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def gelu(x):
    return F.gelu(x, approximate="tanh")


class MLP(nn.Module):
    def __init__(self, d: int, hidden: int, bias: bool):
        super().__init__()
        self.fc1 = nn.Linear(d, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, d, bias=bias)

    def forward(self, x):
        return self.fc2(gelu(self.fc1(x)))


class Attn(nn.Module):
    def __init__(self, d: int, inner: int, bias: bool):
        super().__init__()
        self.q = nn.Linear(d, inner, bias=bias)
        self.k = nn.Linear(d, inner, bias=bias)
        self.v = nn.Linear(d, inner, bias=bias)
        self.o = nn.Linear(inner, d, bias=bias)


def attention(q, k, v, n_heads: int, mask=None):
    """q [B,Tq,h*d], k,v [B,Tk,h*d]; mask [Tq,Tk] bool (True = visible) or None."""
    B, Tq, D = q.shape
    hd = D // n_heads
    q = q.view(B, Tq, n_heads, hd).transpose(1, 2)
    k = k.view(B, k.shape[1], n_heads, hd).transpose(1, 2)
    v = v.view(B, v.shape[1], n_heads, hd).transpose(1, 2)
    s = q @ k.transpose(-1, -2) / math.sqrt(hd)
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    o = torch.softmax(s, dim=-1) @ v
    return o.transpose(1, 2).reshape(B, Tq, D)


class VisionBlock(nn.Module):
    def __init__(self, c: VladConfig):
        super().__init__()
        self.norm1 = RMSNorm(c.vit_width, c.norm_eps)
        self.attn = Attn(c.vit_width, c.vit_width, bias=True)
        self.norm2 = RMSNorm(c.vit_width, c.norm_eps)
        self.mlp = MLP(c.vit_width, c.vit_mlp, bias=True)
        self.heads = c.vit_heads

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.attn.o(attention(self.attn.q(h), self.attn.k(h), self.attn.v(h), self.heads))
        return x + self.mlp(self.norm2(x))


class Vision(nn.Module):
    def __init__(self, c: VladConfig):
        super().__init__()
        self.c = c
        self.patch_embed = nn.Linear(c.patch_dim, c.vit_width)
        self.pos_embed = nn.Parameter(torch.zeros(c.n_patches, c.vit_width))
        self.blocks = nn.ModuleList([VisionBlock(c) for _ in range(c.vit_depth)])
        self.norm = RMSNorm(c.vit_width, c.norm_eps)
        self.proj = nn.Linear(c.vit_width, c.width)

    def forward(self, images):
        """images: uint8 [B, n_cameras, H, W, 3] -> [B, n_image_tokens, width]. Each group of
        frame_stack consecutive inputs is one token set: a patch token's values are its patch in
        each input of the group, in input order (MODEL.md 6.1)."""
        c = self.c
        B, ncam = images.shape[:2]
        p, g, F = c.patch_size, c.image_size // c.patch_size, c.frame_stack
        dt = self.pos_embed.dtype
        x = images.to(torch.float64) / 127.5 - 1.0
        x = x.to(dt).reshape(B * ncam, g, p, g, p, 3).permute(0, 1, 3, 2, 4, 5)
        x = x.reshape(B * ncam, g * g, 3 * p * p)  # patches row-major, (row, col, ch) inside
        ng = ncam // F
        x = x.reshape(B * ng, F, g * g, 3 * p * p).permute(0, 2, 1, 3).reshape(B * ng, g * g, F * 3 * p * p)
        x = self.patch_embed(x) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)  # attention within one token set
        x = self.proj(self.norm(x))
        return x.reshape(B, ng * g * g, c.width)


class TLayer(nn.Module):
    """Backbone or expert layer: no biases."""

    def __init__(self, d: int, kv: int, mlp: int, eps: float):
        super().__init__()
        self.attn_norm = RMSNorm(d, eps)
        self.attn = Attn(d, kv, bias=False)
        self.mlp_norm = RMSNorm(d, eps)
        self.mlp = MLP(d, mlp, bias=False)


class Stack(nn.Module):
    def __init__(self, c: VladConfig, d: int, mlp: int):
        super().__init__()
        self.layers = nn.ModuleList([TLayer(d, c.kv_dim, mlp, c.norm_eps) for _ in range(c.depth)])
        self.norm = RMSNorm(d, c.norm_eps)


class Expert(Stack):
    def __init__(self, c: VladConfig):
        super().__init__(c, c.expert_width, c.expert_mlp)
        e = c.expert_width
        self.state_proj = nn.Linear(c.state_dim, e)
        self.action_in = nn.Linear(c.action_dim, e)
        self.time_mlp_in = nn.Linear(2 * e, e)
        self.time_mlp_out = nn.Linear(e, e)
        self.action_out = nn.Linear(e, c.action_dim)


class Stats(nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("std", torch.ones(n))


class Norms(nn.Module):
    def __init__(self, c: VladConfig):
        super().__init__()
        self.state = Stats(c.state_dim)
        self.action = Stats(c.action_dim)


def rope_tables(c: VladConfig, n_pos: int, dtype):
    half = c.head_dim // 2
    i = torch.arange(half, dtype=torch.float64)
    freq = c.rope_theta ** (-2.0 * i / c.head_dim)
    ang = torch.arange(n_pos, dtype=torch.float64)[:, None] * freq[None, :]
    return torch.cos(ang).to(dtype), torch.sin(ang).to(dtype)


def apply_rope(x, pos0: int, cos, sin, n_heads: int):
    """x [B,T,h*d]; row t at position pos0+t; rotate-half convention."""
    B, T, D = x.shape
    hd = D // n_heads
    half = hd // 2
    x = x.view(B, T, n_heads, hd)
    c = cos[pos0:pos0 + T][None, :, None, :]
    s = sin[pos0:pos0 + T][None, :, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1).view(B, T, D)


def time_embedding(t: float, e: int, n: int, dtype):
    half = e // 2
    j = torch.arange(half, dtype=torch.float64)
    f = 10000.0 ** (-j / half)
    a = 1000.0 * float(t) * f
    te = torch.cat([torch.sin(a), torch.cos(a)]).to(dtype)
    return te[None, :].expand(n, e)


class VladModel(nn.Module):
    def __init__(self, c: VladConfig):
        super().__init__()
        c.validate()
        self.c = c
        self.vision = Vision(c)
        self.embed = nn.Embedding(c.vocab_size, c.width)
        self.vlm = Stack(c, c.width, c.mlp)
        self.expert = Expert(c)
        self.norm = Norms(c)

    # ---- tensors in MODEL.md order ---------------------------------------------------
    def tensor_names(self):
        c = self.c
        n = ["vision.patch_embed.weight", "vision.patch_embed.bias", "vision.pos_embed"]
        for L in range(c.vit_depth):
            p = f"vision.blocks.{L}."
            n += [p + "norm1.weight", p + "norm2.weight"]
            for m in "qkvo":
                n += [p + f"attn.{m}.weight", p + f"attn.{m}.bias"]
            n += [p + "mlp.fc1.weight", p + "mlp.fc1.bias", p + "mlp.fc2.weight", p + "mlp.fc2.bias"]
        n += ["vision.norm.weight", "vision.proj.weight", "vision.proj.bias", "embed.weight"]

        def stack(pre):
            out = []
            for L in range(c.depth):
                p = f"{pre}.layers.{L}."
                out += [p + "attn_norm.weight", p + "mlp_norm.weight"]
                out += [p + f"attn.{m}.weight" for m in "qkvo"]
                out += [p + "mlp.fc1.weight", p + "mlp.fc2.weight"]
            return out

        n += stack("vlm") + ["vlm.norm.weight"]
        for m in ["state_proj", "action_in", "time_mlp_in", "time_mlp_out"]:
            n += [f"expert.{m}.weight", f"expert.{m}.bias"]
        n += stack("expert") + ["expert.norm.weight", "expert.action_out.weight", "expert.action_out.bias"]
        n += ["norm.state.mean", "norm.state.std", "norm.action.mean", "norm.action.std"]
        return n

    # ---- forward pieces ----------------------------------------------------------------
    def _qkv(self, layer: TLayer, x, pos0: int, cos, sin):
        h = layer.attn_norm(x)
        q = apply_rope(layer.attn.q(h), pos0, cos, sin, self.c.n_heads)
        k = apply_rope(layer.attn.k(h), pos0, cos, sin, self.c.n_heads)
        return q, k, layer.attn.v(h)

    def _finish(self, layer: TLayer, x, att):
        x = x + layer.attn.o(att)
        return x + layer.mlp(layer.mlp_norm(x))

    def _tables(self, n_pos: int):
        return rope_tables(self.c, n_pos, self.embed.weight.dtype)

    def prompt_tokens(self, prompt: bytes):
        return [BOS] + list(prompt[: self.c.max_prompt_tokens])

    def encode_prefix(self, images, prompt: bytes):
        """images uint8 [B,n_cam,H,W,3]; prompt bytes (same for the batch).
        Returns (kv: list of (K, V) per layer, each [B,S,kv_dim] post-RoPE, S)."""
        c = self.c
        img = self.vision(images)
        B = img.shape[0]
        toks = torch.tensor(self.prompt_tokens(prompt), dtype=torch.long)
        x = torch.cat([img, self.embed(toks)[None].expand(B, -1, -1)], dim=1)
        S = x.shape[1]
        cos, sin = self._tables(S)
        kv = []
        for layer in self.vlm.layers:
            q, k, v = self._qkv(layer, x, 0, cos, sin)
            kv.append((k, v))
            x = self._finish(layer, x, attention(q, k, v, c.n_heads))
        return kv, S

    def velocity(self, kv, S: int, state_tok, x_t, t: float):
        """state_tok [B,1,e]; x_t [B,H,A] -> v [B,H,A]."""
        c = self.c
        ex = self.expert
        B, H, _ = x_t.shape
        temb = time_embedding(t, c.expert_width, H, x_t.dtype)[None].expand(B, -1, -1)
        act = ex.time_mlp_out(F.silu(ex.time_mlp_in(torch.cat([ex.action_in(x_t), temb], dim=-1))))
        x = torch.cat([state_tok, act], dim=1)
        cos, sin = self._tables(S + H + 1)
        mask = torch.ones(H + 1, S + H + 1, dtype=torch.bool)
        mask[0, S + 1:] = False  # the state token sees the prefix and itself
        for L, layer in enumerate(ex.layers):
            q, k, v = self._qkv(layer, x, S, cos, sin)
            K = torch.cat([kv[L][0], k], dim=1)
            V = torch.cat([kv[L][1], v], dim=1)
            x = self._finish(layer, x, attention(q, K, V, c.n_heads, mask))
        return ex.action_out(ex.norm(x[:, 1:]))

    def state_token(self, state):
        s_n = (state - self.norm.state.mean) / self.norm.state.std
        return self.expert.state_proj(s_n)[:, None, :]

    def sample_actions(self, kv, S: int, state, noise):
        """state [B,state_dim] raw; noise [B,H,A] -> actions [B,H,A] raw."""
        N = self.c.flow_steps
        st = self.state_token(state)
        x = noise
        for k in range(N):
            t = 1.0 - k / N
            x = x - self.velocity(kv, S, st, x, t) / N
        return x * self.norm.action.std + self.norm.action.mean

    def lang_logits(self, kv, S: int, tokens):
        """Logits after the last of the stream tokens (B=1 list of ints), full recompute."""
        c = self.c
        x = self.embed(torch.tensor(tokens, dtype=torch.long))[None]
        T = x.shape[1]
        cos, sin = self._tables(S + T)
        mask = torch.ones(T, S + T, dtype=torch.bool)
        mask[:, S:] = torch.tril(torch.ones(T, T, dtype=torch.bool))
        for L, layer in enumerate(self.vlm.layers):
            q, k, v = self._qkv(layer, x, S, cos, sin)
            K = torch.cat([kv[L][0][:1], k], dim=1)
            V = torch.cat([kv[L][1][:1], v], dim=1)
            x = self._finish(layer, x, attention(q, K, V, c.n_heads, mask))
        h = self.vlm.norm(x[0, -1])
        return h @ self.embed.weight.T

    def generate(self, kv, S: int, question: bytes, return_margins: bool = False):
        """Greedy decode (MODEL.md step 5). Returns (text bytes, end token or None[, margins])."""
        c = self.c
        toks = [SEP] + list(question[: c.max_prompt_tokens]) + [SEP]
        out, margins, end = [], [], None
        for _ in range(c.max_text_tokens):
            lg = self.lang_logits(kv, S, toks)
            top = torch.topk(lg, 2).values
            margins.append(float(top[0] - top[1]))
            tok = int(torch.argmax(lg))
            if tok > 255:
                end = tok
                break
            out.append(tok)
            toks.append(tok)
        if return_margins:
            return bytes(out), end, margins
        return bytes(out), end


# ---- checkpoints ---------------------------------------------------------------------------

def init_random(model: VladModel, seed: int) -> VladModel:
    """Same distributions as vlad_model_write_random() (not the same numbers)."""
    g = torch.Generator().manual_seed(seed)
    sd = model.state_dict()
    with torch.no_grad():
        for name in model.tensor_names():
            t = sd[name]
            r = torch.randn(t.shape, generator=g, dtype=torch.float64)
            if name.startswith("norm.") and name.endswith(".mean"):
                v = 0.5 * r
            elif name.startswith("norm.") and name.endswith(".std"):
                v = 0.5 + torch.rand(t.shape, generator=g, dtype=torch.float64)
            elif name.endswith("norm.weight") or name.endswith("norm1.weight") or name.endswith("norm2.weight"):
                v = 1.0 + 0.1 * r
            elif name.endswith(".bias"):
                v = 0.02 * r
            elif name == "embed.weight":
                v = r
            elif name == "vision.pos_embed":
                v = 0.02 * r
            else:
                v = r / math.sqrt(t.shape[1])
            t.copy_(v.to(t.dtype))
    return model


def save_checkpoint(model: VladModel, path: str, dtype: str = "F32", extra_meta=None) -> None:
    """Write the MODEL.md checkpoint. dtype applies to every tensor but the norm stats (F32).
    extra_meta: more string metadata (the trainer records "vlad.train.delta_max", the largest
    future-state delay it trained with, which the daemon uses as its default delay limit)."""
    sd = model.state_dict()
    tensors = {n: sd[n] for n in model.tensor_names()}
    dtypes = {n: ("F32" if n.startswith("norm.") else dtype) for n in tensors}
    meta = {"vlad.format": "1", "vlad.config": model.c.to_json()}
    meta.update({k: str(v) for k, v in (extra_meta or {}).items()})
    safetensors_io.save(path, tensors, meta, dtypes)


def load_checkpoint(path: str, dtype=torch.float32) -> VladModel:
    """Also reads quantised checkpoints (MODEL.md 1.1): every quantised matrix becomes its
    effective matrix W_eff = (codes * scale) diag(1/awq), computed in float64 and loaded into
    a float64 model before the conversion to `dtype`."""
    tensors, meta, _ = safetensors_io.load(path)
    if meta.get("vlad.format") != "1":
        raise ValueError(f"{path}: metadata field 'vlad.format' must be \"1\"")
    c = VladConfig.from_json(meta["vlad.config"])
    m = VladModel(c)
    if quant.is_quantized(tensors):
        tensors = quant.resolve(tensors, m.tensor_names(), path)
        m = m.to(torch.float64)
    names = set(m.tensor_names())
    for n in tensors:
        if n not in names:
            raise ValueError(f"{path}: unexpected tensor '{n}'")
    for n in names:
        if n not in tensors:
            raise ValueError(f"{path}: missing tensor '{n}'")
    m.load_state_dict(tensors, strict=True)
    return m.to(dtype).eval()


def random_model(c: VladConfig, seed: int = 0, dtype=torch.float32, round_bf16: bool = False,
                 gain: float = 1.0):
    """A random model; round_bf16 rounds its weights as a BF16 checkpoint would store them.
    gain multiplies every attn.o / mlp.fc1 / mlp.fc2 weight (fixtures use 3 so that the
    blocks, not the tied embedding, dominate: greedy text then varies from token to token)."""
    m = init_random(VladModel(c), seed)
    if gain != 1.0:
        with torch.no_grad():
            for n, t in m.state_dict().items():
                if n.endswith(("attn.o.weight", "mlp.fc1.weight", "mlp.fc2.weight")):
                    t.mul_(gain)
    if round_bf16:
        with torch.no_grad():
            for n, t in m.state_dict().items():
                if not n.startswith("norm."):
                    t.copy_(t.to(torch.bfloat16).to(t.dtype))
    return m.to(dtype).eval()
