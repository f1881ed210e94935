"""Parity fixtures: a random checkpoint, its inputs and the twin's outputs.

<name>.safetensors           the checkpoint (MODEL.md format)
<name>.cam<i>.ppm            camera images (image_size^2 RGB)
<name>.obs.json              the `vlad-policy run` input: images, state, prompt, noise, question
<name>.expected.safetensors  actions [H,A], prefix_k / prefix_v [S, kv_dim] of layer
                             `kv_layer` (metadata), greedy text (metadata text_hex, end_token)
The reference is computed in float64 from the checkpoint's stored weights.

A views fixture (make_views_fixture: a model whose image inputs are views of a robot's cameras
and their past, checkpoint metadata "vlad.views") is one file besides its checkpoint:
<name>.expected.safetensors  frames [T, n_robot_cameras, H, W, 3] U8 (one per tick from tick
                             0), for each evaluated tick (metadata ticks "t0,t1,..."): state
                             [n, state_dim], noise [n, H, A] and actions [n, H, A], the views
                             taken by the training rule (camera c of frame max(t - lag, 0)).
"""
from __future__ import annotations

import json
import os
import random

import torch

from . import safetensors_io
from .config import VladConfig
from .model import load_checkpoint, random_model, save_checkpoint


def write_ppm(path: str, img) -> None:
    h, w, _ = img.shape
    with open(path, "wb") as f:
        f.write(b"P6\n%d %d\n255\n" % (w, h))
        f.write(bytes(img.reshape(-1).tolist()))


def random_config(seed: int) -> VladConfig:
    """A small random config (for the live twin test): every size drawn from `seed`."""
    r = random.Random(seed)
    p = r.choice([2, 4])
    heads = r.choice([1, 2, 3])
    vh = r.choice([1, 2])
    return VladConfig(
        image_size=p * r.randint(2, 4), patch_size=p, n_cameras=r.randint(1, 3),
        vit_width=vh * r.choice([8, 12]), vit_depth=r.randint(1, 2), vit_heads=vh,
        vit_mlp=r.choice([16, 40]), width=r.choice([16, 24, 40]), depth=r.randint(1, 3),
        n_heads=heads, head_dim=r.choice([4, 8, 10]), mlp=r.choice([24, 48]),
        expert_width=r.choice([12, 20]), expert_mlp=r.choice([20, 36]),
        max_prompt_tokens=r.randint(4, 12), max_text_tokens=r.randint(4, 12),
        state_dim=r.randint(1, 6), action_dim=r.randint(1, 5), chunk_size=r.randint(1, 7),
        flow_steps=r.randint(1, 5), rope_theta=r.choice([10000.0, 500.0]),
        norm_eps=r.choice([1e-6, 1e-5])).validate()


def make_fixture(c: VladConfig, outdir: str, name: str, seed: int, dtype: str = "F32",
                 prompt: bytes = b"pick up the cube", question: bytes = b"what now?",
                 kv_layer: int | None = None, min_text: int = 0, min_distinct: int = 0,
                 min_margin: float = 1e-3, gain: float = 3.0, tries: int = 50,
                 post_save=None) -> dict:
    """Write one fixture; retries model seeds until the greedy text has >= min_text bytes and
    every greedy choice wins by >= min_margin logits (so float32 rounding cannot flip it).
    post_save(path), when given, rewrites the saved checkpoint before the reference is
    computed from it (the quantised fixtures: training/quantize.py)."""
    os.makedirs(outdir, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    imgs = torch.randint(0, 256, (1, c.n_cameras, c.image_size, c.image_size, 3), generator=g,
                         dtype=torch.uint8)
    state = torch.randn(1, c.state_dim, generator=g, dtype=torch.float64).float()
    noise = torch.randn(1, c.chunk_size, c.action_dim, generator=g, dtype=torch.float64).float()
    ck = os.path.join(outdir, name + ".safetensors")
    best = None
    for t in range(tries):
        m = random_model(c, seed * 1000 + t, torch.float32, round_bf16=(dtype == "BF16"),
                         gain=gain)
        save_checkpoint(m, ck, dtype)
        if post_save is not None:
            post_save(ck)
        ref = load_checkpoint(ck, torch.float64)  # exactly the stored weights
        with torch.no_grad():
            kv, S = ref.encode_prefix(imgs, prompt)
            text, end, margins = ref.generate(kv, S, question, return_margins=True)
        ok = (len(text) >= min_text and len(set(text)) >= min_distinct
              and min(margins) >= min_margin)
        if ok:
            best = (ref, kv, S, text, end)
            break
    if best is None:
        raise RuntimeError(f"fixture {name}: no model seed gave a usable greedy text")
    ref, kv, S, text, end = best
    with torch.no_grad():
        actions = ref.sample_actions(kv, S, state.double(), noise.double())[0]
    L = (c.depth - 1) // 2 if kv_layer is None else kv_layer
    cams = []
    for i in range(c.n_cameras):
        fn = f"{name}.cam{i}.ppm"
        write_ppm(os.path.join(outdir, fn), imgs[0, i].numpy())
        cams.append(fn)
    obs = {"images": cams, "state": [float(x) for x in state[0]], "prompt": prompt.decode("latin-1"),
           "noise": [[float(x) for x in row] for row in noise[0]],
           "question": question.decode("latin-1")}
    with open(os.path.join(outdir, name + ".obs.json"), "w") as f:
        json.dump(obs, f, indent=1)
    meta = {"kv_layer": str(L), "prefix_len": str(S), "text_hex": text.hex(),
            "end_token": str(-1 if end is None else end), "checkpoint_dtype": dtype}
    safetensors_io.save(os.path.join(outdir, name + ".expected.safetensors"),
                        {"actions": actions.float(), "prefix_k": kv[L][0][0].float(),
                         "prefix_v": kv[L][1][0].float()}, meta)
    return {"name": name, "S": S, "text": text, "end": end}


def make_views_fixture(c: VladConfig, outdir: str, name: str, seed: int, views, n_robot_cameras: int,
                       T: int, ticks, prompt: bytes = b"follow the ball") -> None:
    """Write a views fixture (see the module doc): c.n_cameras must be len(views)."""
    assert c.n_cameras == len(views)
    os.makedirs(outdir, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (T, n_robot_cameras, c.image_size, c.image_size, 3), generator=g,
                           dtype=torch.uint8)
    ck = os.path.join(outdir, name + ".safetensors")
    vj = json.dumps([{"camera": cam, "lag": lag} for cam, lag in views], separators=(",", ":"))
    save_checkpoint(random_model(c, seed, torch.float32, gain=3.0), ck, "F32",
                    extra_meta={"vlad.views": vj})
    ref = load_checkpoint(ck, torch.float64)
    states, noises, actions = [], [], []
    for t in ticks:
        imgs = torch.stack([frames[max(t - lag, 0), cam] for cam, lag in views])[None]
        state = torch.randn(1, c.state_dim, generator=g, dtype=torch.float64)
        noise = torch.randn(1, c.chunk_size, c.action_dim, generator=g, dtype=torch.float64)
        with torch.no_grad():
            kv, S = ref.encode_prefix(imgs, prompt)
            actions.append(ref.sample_actions(kv, S, state, noise)[0])
        states.append(state[0])
        noises.append(noise[0])
    safetensors_io.save(os.path.join(outdir, name + ".expected.safetensors"),
                        {"frames": frames, "state": torch.stack(states), "noise": torch.stack(noises),
                         "actions": torch.stack(actions)},
                        {"ticks": ",".join(str(t) for t in ticks), "prompt": prompt.decode("latin-1")},
                        {"frames": "U8"})
