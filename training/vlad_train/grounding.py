"""Grounding probe: does a checkpoint send the arm to the *named* ball?

    cd training && /usr/bin/python3 -m vlad_train.grounding MODEL.safetensors EPISODE_DIR \
        [--episodes 30] [--frames 0,6] [--draws 3] [--seed 0]

For reach episodes of EPISODE_DIR (the recorder's files), at the given frames, samples action
chunks with the twin (MODEL.md flow, `draws` noise draws each) from the recorded image, prompt
and measured state, and compares the chunk's action at the touch tick with the expert's touch
pose (the episode's last command). At frame 0 the arm is still at home, so only the image and
the instruction say which ball; a few frames in, the arm's own motion gives it away. A model
that has bound the colour to a place has a small frame-0 error; one that has only learned to
continue the arm's motion has a large one (the wrong ball: > 0.15 rad of base yaw).
No simulator, no daemon: it measures the network alone, on data with known answers.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys

import numpy as np
import torch

from vlad_twin import safetensors_io
from vlad_twin.model import load_checkpoint
from vlad_train.data import frame_views


sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "sim"))
from read_episode import read_episode  # noqa: E402


def sample_chunks(m, image, prompt: bytes, state, draws: int, gen: torch.Generator):
    """[draws, H, A] actions (denormalised) for one observation: the twin's own MODEL.md
    forward (prefix once per draw, Euler flow from `draws` noise tensors)."""
    c = m.c
    with torch.no_grad():
        images = torch.from_numpy(image[None].copy()).expand(draws, *image.shape)
        kv, S = m.encode_prefix(images, prompt)
        noise = torch.randn(draws, c.chunk_size, c.action_dim, generator=gen)
        return m.sample_actions(kv, S, torch.from_numpy(state[None].copy()).expand(draws, -1), noise)


def load_probe(model: str, episodes_dir: str, task: str, n: int):
    """A probe's inputs: the checkpoint (one torch thread), its views [(camera, lag)] and up to
    n successful `task` episodes [(tensors, meta)] of episodes_dir (none: a message on stderr)."""
    torch.set_num_threads(1)
    m = load_checkpoint(model).eval()
    meta_views = safetensors_io.load(model)[1].get("vlad.views")
    views = ([(v["camera"], v["lag"]) for v in json.loads(meta_views)] if meta_views
             else [(c, 0) for c in range(m.c.n_cameras)])
    paths = sorted(glob.glob(os.path.join(episodes_dir, "**", "episode_*.safetensors"), recursive=True))
    eps = []
    for p in paths:
        t, meta = read_episode(p)
        if meta.get("task") == task and meta.get("success", True):
            eps.append((t, meta))
        if len(eps) == n:
            break
    if not eps:
        print(f"{episodes_dir}: no successful {task} episodes", file=sys.stderr)
    return m, views, eps


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("episodes_dir")
    ap.add_argument("--episodes", type=int, default=30)
    ap.add_argument("--frames", default="0,6")
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    m, views, eps = load_probe(a.model, a.episodes_dir, "reach", a.episodes)
    if not eps:
        return 2
    gen = torch.Generator().manual_seed(a.seed)
    print(f"{a.model}: {len(eps)} reach episodes x {a.draws} draws")
    print("| frame | mean abs error per joint (rad) | base yaw < 0.05 | base yaw > 0.15 (wrong ball) |")
    print("|---:|---|---:|---:|")
    for f in (int(x) for x in a.frames.split(",")):
        errs = []
        for t, meta in eps:
            T = len(t["action"])
            if f >= T - 1:
                continue
            image = frame_views(t["images"], f, views)
            a_ = sample_chunks(m, image, meta["instruction"].encode(), t["state"][f],
                               a.draws, gen)
            i = min(T - 1 - f, m.c.chunk_size - 1)   # the touch tick, within the chunk
            errs.append((a_[:, i] - torch.from_numpy(t["action"][T - 1].copy())).abs().numpy())
        e = np.concatenate(errs)
        print(f"| {f} | {' '.join(f'{v:.3f}' for v in e.mean(0))} | {(e[:, 0] < 0.05).mean():.0%} "
              f"| {(e[:, 0] > 0.15).mean():.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
