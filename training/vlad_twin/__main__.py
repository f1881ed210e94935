"""python3 -m vlad_twin {random,fixture,run,bench} ...   (PYTHONPATH=training)"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import torch

from .config import PRESETS, VladConfig
from .fixtures import make_fixture, random_config
from .model import load_checkpoint, random_model, save_checkpoint


def cmd_random(a):
    c = VladConfig.from_json(a.config) if a.config else PRESETS[a.preset]()
    save_checkpoint(random_model(c, a.seed), a.out, a.dtype)


def cmd_fixture(a):
    if a.random_config:
        c = random_config(a.seed)
    elif a.config:
        c = VladConfig.from_json(a.config)
    else:
        c = PRESETS[a.preset]()
    r = make_fixture(c, a.out, a.name, a.seed, a.dtype, min_text=a.min_text)
    print(json.dumps({"name": r["name"], "S": r["S"], "text_hex": r["text"].hex(),
                      "config": json.loads(c.to_json())}))


def _read_ppm(path):
    with open(path, "rb") as f:
        data = f.read()
    parts, i = [], 2
    while len(parts) < 3:
        while data[i:i + 1].isspace():
            i += 1
        j = i
        while not data[j:j + 1].isspace():
            j += 1
        parts.append(int(data[i:j]))
        i = j
    w, h, _ = parts
    px = data[i + 1:i + 1 + w * h * 3]
    return torch.frombuffer(bytearray(px), dtype=torch.uint8).reshape(h, w, 3)


def cmd_run(a):
    m = load_checkpoint(a.model, torch.float64 if a.float64 else torch.float32)
    c = m.c
    with open(a.input) as f:
        obs = json.load(f)
    d = os.path.dirname(os.path.abspath(a.input))
    imgs = torch.stack([_read_ppm(os.path.join(d, p)) for p in obs["images"]])[None]
    dt = m.embed.weight.dtype
    state = torch.tensor(obs["state"], dtype=dt)[None]
    if obs.get("noise") is None:
        raise SystemExit("vlad_twin run: needs an explicit noise array")
    noise = torch.tensor(obs["noise"], dtype=dt).reshape(1, c.chunk_size, c.action_dim)
    with torch.no_grad():
        kv, S = m.encode_prefix(imgs, obs.get("prompt", "").encode("latin-1"))
        act = m.sample_actions(kv, S, state, noise)[0]
        out = {"actions": act.tolist(), "prefix_len": S}
        if obs.get("question") is not None:
            text, end = m.generate(kv, S, obs["question"].encode("latin-1"))
            out["text"] = text.decode("latin-1")
            out["end_token"] = end
    print(json.dumps(out))


def _median_ms(fn, iters):
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort()
    return ts[len(ts) // 2]


def cmd_bench(a):
    """Times of the twin on a checkpoint (F32 compute), as JSON on stdout."""
    torch.set_num_threads(a.threads)
    m = load_checkpoint(a.model, torch.float32)
    c = m.c
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (1, c.n_cameras, c.image_size, c.image_size, 3), generator=g,
                         dtype=torch.uint8)
    prompt = b"pick up the red cube and put it in the bin"[: c.max_prompt_tokens]
    state = torch.randn(1, c.state_dim, generator=g)
    noise = torch.randn(1, c.chunk_size, c.action_dim, generator=g)
    res = {"threads": a.threads}
    with torch.inference_mode():
        kv, S = m.encode_prefix(imgs, prompt)
        st = m.state_token(state)
        m.sample_actions(kv, S, state, noise)  # warm-up
        res["prefix_ms"] = _median_ms(lambda: m.encode_prefix(imgs, prompt), a.iters)
        res["flow_step_ms"] = _median_ms(lambda: m.velocity(kv, S, st, noise, 1.0), a.iters)

        def full():
            kv2, S2 = m.encode_prefix(imgs, prompt)
            m.sample_actions(kv2, S2, state, noise)

        res["full_ms"] = _median_ms(full, a.iters)
        # per-token decode with a KV cache (HF-style incremental step: 1 query row vs cache)
        toks = [258, 258]
        x = m.embed(torch.tensor(toks))[None]
        cache = [(kv[L][0], kv[L][1]) for L in range(c.depth)]
        cos, sin = m._tables(S + 64 + len(toks))

        def step(x, pos, cache):
            new = []
            for L, layer in enumerate(m.vlm.layers):
                q, k, v = m._qkv(layer, x, pos, cos, sin)
                K = torch.cat([cache[L][0], k], 1)
                V = torch.cat([cache[L][1], v], 1)
                new.append((K, V))
                from .model import attention
                x = m._finish(layer, x, attention(q, K, V, c.n_heads))
            return m.vlm.norm(x[:, -1]) @ m.embed.weight.T, new

        lg, cache1 = step(x, S, cache)
        tok = m.embed(torch.argmax(lg, -1))[:, None]
        n_tok = 16
        t0 = time.perf_counter()
        cc = cache1
        for i in range(n_tok):
            lg, cc = step(tok, S + 2 + i, cc)
            tok = m.embed(torch.argmax(lg, -1))[:, None]
        res["decode_token_ms"] = (time.perf_counter() - t0) * 1e3 / n_tok
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps(res))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="vlad_twin")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("random", help="write a random checkpoint")
    p.add_argument("--out", required=True)
    p.add_argument("--preset", default="default", choices=sorted(PRESETS))
    p.add_argument("--config", help="vlad.config JSON text (overrides --preset)")
    p.add_argument("--dtype", default="F32", choices=["F32", "BF16"])
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=cmd_random)
    p = sub.add_parser("fixture", help="write a parity fixture (checkpoint, inputs, outputs)")
    p.add_argument("--out", required=True)
    p.add_argument("--name", default="live")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--random-config", action="store_true")
    p.add_argument("--preset", default="default", choices=sorted(PRESETS))
    p.add_argument("--config")
    p.add_argument("--dtype", default="F32", choices=["F32", "BF16"])
    p.add_argument("--min-text", type=int, default=0)
    p.set_defaults(fn=cmd_fixture)
    p = sub.add_parser("run", help="like vlad-policy run (explicit noise, PPM images)")
    p.add_argument("--model", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--float64", action="store_true")
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("bench", help="time the twin on a checkpoint")
    p.add_argument("--model", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--iters", type=int, default=5)
    p.set_defaults(fn=cmd_bench)
    a = ap.parse_args(argv)
    a.fn(a)


if __name__ == "__main__":
    sys.exit(main())
