"""Reaction probe: how a checkpoint starts a whack hit, against the expert, open loop.

    cd training && /usr/bin/python3 -m vlad_train.react_probe MODEL.safetensors EPISODE_DIR \
        [--episodes 20] [--draws 2] [--seed 0]

For every "hitting ..." subtask of the whack episodes in EPISODE_DIR (the recorder's files; a
subtask starts on the tick its ball appears), at the subtask's ticks 0-2 (the arm still at
rest, only the image says where to go) and 4-6 (the arm already moving), samples action chunks
with the twin from the recorded views, prompt and measured state, and compares the chunk's
first 8 actions with the expert's recorded commands for those ticks: the mean absolute error
per joint, and how far the chunk moves the arm by its 8th action against how far the expert
does (1.0: as far; a model that copies the arm's own motion from its older frame starts a hit
late, below 1 at rest). No simulator, no daemon: the network alone, on data with known answers.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from vlad_train.data import frame_views
from vlad_train.grounding import load_probe, sample_chunks

N_ACT = 8


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("episodes_dir")
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--draws", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    m, views, eps = load_probe(a.model, a.episodes_dir, "whack", a.episodes)
    if not eps:
        return 2
    gen = torch.Generator().manual_seed(a.seed)
    rows = {"rest (ticks 0-2)": range(0, 3), "moving (ticks 4-6)": range(4, 7)}
    out = {k: ([], []) for k in rows}
    n_hits = 0
    for t, meta in eps:
        T = len(t["action"])
        com = [(lab or {}).get("commentary", "") for lab in meta["labels"]][:T]
        starts = [i for i in range(1, len(com)) if com[i].startswith("hitting") and com[i] != com[i - 1]]
        for s in starts:
            if s + 6 + N_ACT > T:
                continue
            n_hits += 1
            for name, offs in rows.items():
                for o in offs:
                    f = s + o
                    image = frame_views(t["images"], f, views)
                    ch = sample_chunks(m, image, meta["instruction"].encode(), t["state"][f],
                                       a.draws, gen)[:, :N_ACT].numpy()
                    exp = t["action"][f: f + N_ACT]
                    out[name][0].append(np.abs(ch - exp[None]).mean((0, 1)))
                    moved = np.linalg.norm(ch[:, -1] - t["state"][f][None], axis=-1).mean()
                    out[name][1].append(moved / max(np.linalg.norm(exp[-1] - t["state"][f]), 1e-3))
    print(f"{a.model}: {n_hits} hits in {len(eps)} whack episodes x {a.draws} draws, "
          f"the chunk's first {N_ACT} actions against the expert's")
    print("| hit ticks | mean abs error per joint (rad) | distance moved, model / expert (median) |")
    print("|---|---|---:|")
    for name, (err, ratio) in out.items():
        e = np.mean(err, 0)
        print(f"| {name} | {' '.join(f'{v:.3f}' for v in e)} | {np.median(ratio):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
