"""Batched training forward passes over a vlad_twin.VladModel, equal to MODEL.md.

The twin (vlad_twin.model) is the literal, one-sample reference used for parity with the
C engine; training needs batches whose prompts (hence prefix lengths S) differ. Prompts
are right-padded and padded keys masked, so each sample computes exactly what the
unpadded MODEL.md forward computes (RoPE positions are per sample). test_batched.py
checks these functions against the twin.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vlad_twin.config import BOS, EOS, PAD, SEP


def _rope(c, pos):
    """cos, sin [B,T,head_dim/2] for integer positions pos [B,T]."""
    half = c.head_dim // 2
    i = torch.arange(half, dtype=torch.float64)
    freq = c.rope_theta ** (-2.0 * i / c.head_dim)
    ang = pos.to(torch.float64)[..., None] * freq
    return torch.cos(ang).float(), torch.sin(ang).float()


def _apply_rope(x, cos, sin, n_heads):
    B, T, D = x.shape
    hd = D // n_heads
    half = hd // 2
    x = x.view(B, T, n_heads, hd)
    c, s = cos[:, :, None, :], sin[:, :, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1).view(B, T, D)


def _attention(q, k, v, n_heads, mask, probe=None):
    """q [B,Tq,D], k/v [B,Tk,D], mask [B,Tq,Tk] bool (True = visible). With probe =
    {"head": h}, stores the log attention weights of head h, [B,Tq,Tk] (-inf where masked),
    as probe["logp"] (training-only attention supervision); with probe["head2"] = h2 also
    head h2's as probe["logp2"]."""
    B, Tq, D = q.shape
    hd = D // n_heads
    q = q.view(B, Tq, n_heads, hd).transpose(1, 2)
    k = k.view(B, -1, n_heads, hd).transpose(1, 2)
    v = v.view(B, -1, n_heads, hd).transpose(1, 2)
    s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
    s = s.masked_fill(~mask[:, None], float("-inf"))
    if probe is not None:
        probe["logp"] = torch.log_softmax(s[:, probe["head"]], dim=-1)
        if probe.get("head2") is not None:
            probe["logp2"] = torch.log_softmax(s[:, probe["head2"]], dim=-1)
    return (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(B, Tq, D)


def _probe_at(probe, layer):
    """The probe dict (of `probe`: None, one dict or a list of dicts) asking for `layer`."""
    for pr in [probe] if isinstance(probe, dict) else (probe or []):
        if pr["layer"] == layer:
            return pr
    return None


def _layer(model, layer, x, pos, K_pre, V_pre, mask, probe=None):
    """One backbone/expert layer for rows x at positions pos, attending to the given prefix
    K/V (or none) plus its own rows. Returns (x, k, v) with k, v of its own rows."""
    c = model.c
    cos, sin = _rope(c, pos)
    h = layer.attn_norm(x)
    q = _apply_rope(layer.attn.q(h), cos, sin, c.n_heads)
    k = _apply_rope(layer.attn.k(h), cos, sin, c.n_heads)
    v = layer.attn.v(h)
    K = k if K_pre is None else torch.cat([K_pre, k], dim=1)
    V = v if V_pre is None else torch.cat([V_pre, v], dim=1)
    x = x + layer.attn.o(_attention(q, K, V, c.n_heads, mask, probe))
    x = x + layer.mlp(layer.mlp_norm(x))
    return x, k, v


def prompt_tokens(c, prompts):
    """[BOS, bytes...] right-padded with PAD: (tokens [B,P] long, lengths [B])."""
    toks = [[BOS] + list(p[: c.max_prompt_tokens]) for p in prompts]
    P = max(len(t) for t in toks)
    out = torch.full((len(toks), P), PAD, dtype=torch.long)
    for i, t in enumerate(toks):
        out[i, : len(t)] = torch.tensor(t)
    return out, torch.tensor([len(t) for t in toks])


def encode_prefix(model, images, prompts, hidden_after=None, probe=None):
    """images uint8 [B,n_cam,H,W,3]; prompts list of bytes.
    Returns (kv list of (K,V) [B,S_max,kv_dim], key_valid [B,S_max] bool, S [B]); with
    hidden_after=L also the hidden states [B,S_max,width] after backbone layer L (0-based).
    probe = {"layer": L, "head": h} receives probe["logp"]: that head's log attention
    weights [B,S_max,S_max] (query row, key column), and probe["hidden"]: the hidden states
    [B,S_max,width] after that layer."""
    c = model.c
    img = model.vision(images)
    B, n_img = img.shape[:2]
    toks, plen = prompt_tokens(c, prompts)
    x = torch.cat([img, model.embed(toks)], dim=1)
    S_max = x.shape[1]
    S = n_img + plen
    key_valid = torch.arange(S_max)[None, :] < S[:, None]
    pos = torch.arange(S_max)[None, :].expand(B, -1)
    mask = key_valid[:, None, :].expand(B, S_max, S_max)
    kv, hidden = [], None
    for i, layer in enumerate(model.vlm.layers):
        pr = _probe_at(probe, i)
        x, k, v = _layer(model, layer, x, pos, None, None, mask, pr)
        if pr is not None:
            pr["hidden"] = x
        kv.append((k, v))
        if i == hidden_after:
            hidden = x
    if hidden_after is not None:
        return kv, key_valid, S, hidden
    return kv, key_valid, S


def time_embedding(t, e, H):
    """t [B] -> [B,H,e] (MODEL.md temb, the same for every action token)."""
    half = e // 2
    j = torch.arange(half, dtype=torch.float64)
    f = 10000.0 ** (-j / half)
    a = 1000.0 * t.to(torch.float64)[:, None] * f[None, :]
    te = torch.cat([torch.sin(a), torch.cos(a)], dim=-1).float()
    return te[:, None, :].expand(-1, H, -1)


def velocity(model, kv, key_valid, S, state_n, x_t, t, state_after=None, probe=None):
    """state_n [B,state_dim] normalised; x_t [B,H,A]; t [B] -> v [B,H,A]; with
    state_after=L also the state token's hidden state [B,expert_width] after expert layer L
    (0-based; it depends on the prefix and the state only, not on x_t or t).
    probe = {"layer": L, "head": h} (or a list of such, for other layers) receives
    probe["logp"]: that expert head's log attention weights [B,H+1,S_max+H+1] (suffix row;
    prefix keys, then the suffix's own)."""
    c = model.c
    ex = model.expert
    B, H, _ = x_t.shape
    st = ex.state_proj(state_n)[:, None, :]
    act = ex.time_mlp_out(F.silu(ex.time_mlp_in(torch.cat([ex.action_in(x_t), time_embedding(t, c.expert_width, H)], -1))))
    x = torch.cat([st, act], dim=1)
    pos = S[:, None] + torch.arange(H + 1)[None, :]
    S_max = key_valid.shape[1]
    suffix_vis = torch.ones(H + 1, H + 1, dtype=torch.bool)
    suffix_vis[0, 1:] = False  # the state token sees the prefix and itself
    mask = torch.cat([key_valid[:, None, :].expand(B, H + 1, S_max),
                      suffix_vis[None].expand(B, -1, -1)], dim=2)
    state_h = None
    for L, layer in enumerate(ex.layers):
        pr = _probe_at(probe, L)
        x, _, _ = _layer(model, layer, x, pos, kv[L][0], kv[L][1], mask, pr)
        if L == state_after:
            state_h = x[:, 0]
    v = ex.action_out(ex.norm(x[:, 1:]))
    return v if state_after is None else (v, state_h)


def stream_tokens(c, pairs):
    """[SEP, question, SEP, answer, EOS] per (question, answer) pair, right-padded.
    Returns tokens [B,T], target [B,T] (next token, -100 where not scored)."""
    rows, tgts = [], []
    for q, a in pairs:
        head = [SEP] + list(q[: c.max_prompt_tokens]) + [SEP]
        ans = list(a[: c.max_text_tokens - 1]) + [EOS]
        seq = head + ans
        tgt = [-100] * (len(head) - 1) + ans + [-100]
        rows.append(seq)
        tgts.append(tgt)
    T = max(len(r) for r in rows)
    tok = torch.full((len(rows), T), PAD, dtype=torch.long)
    tg = torch.full((len(rows), T), -100, dtype=torch.long)
    for i, (r, g) in enumerate(zip(rows, tgts)):
        tok[i, : len(r)] = torch.tensor(r)
        tg[i, : len(g)] = torch.tensor(g)
    return tok, tg


def lang_logits(model, kv, key_valid, S, tokens):
    """Teacher-forced language stream after the prefix: tokens [B,T] -> logits [B,T,vocab]."""
    c = model.c
    B, T = tokens.shape
    x = model.embed(tokens)
    pos = S[:, None] + torch.arange(T)[None, :]
    S_max = key_valid.shape[1]
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    mask = torch.cat([key_valid[:, None, :].expand(B, T, S_max), causal[None].expand(B, -1, -1)], 2)
    for L, layer in enumerate(model.vlm.layers):
        x, _, _ = _layer(model, layer, x, pos, kv[L][0], kv[L][1], mask)
    return model.vlm.norm(x) @ model.embed.weight.T
