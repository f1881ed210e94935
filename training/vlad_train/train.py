"""Train the default vlad model from vlad-sim demonstrations.

    cd training && /usr/bin/python3 -m vlad_train.train --data DIR --out MODEL.safetensors \
        [--work DIR] [--steps N] [--batch B] [--time-limit-min M] [--seed S] ...

Losses, on one shared prefix per sample (the unified KV cache of DESIGN.md):
  * flow matching on action chunks with future-state augmentation (VLASH): image at t,
    state at t+δ (measured, or the pending target action[t+δ-1]), actions from t+δ;
  * language: the frame's commentary or one scene question, teacher-forced after the prefix.
Seeded and resumable (WORK/state.pt holds model, optimiser, RNG and step); writes a
progress bar with loss and ETA, WORK/loss.csv and WORK/loss.png (gnuplot), and exports a
MODEL.md checkpoint with the data's normalisation statistics.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from vlad_twin.config import VladConfig, default_config
from vlad_twin.model import VladModel, load_checkpoint, save_checkpoint

from . import batched
from .colours import COLOURS, colour_masks, first_colour, patch_fraction
from .data import Episodes, language_pairs, make_batch, parse_views, views_json


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True,
                    help="directory of episode_*.safetensors (searched recursively), or several "
                         "separated by commas")
    ap.add_argument("--out", required=True, help="checkpoint to write (.safetensors)")
    ap.add_argument("--work", default=None, help="state, loss log and curve (default: OUT.work)")
    ap.add_argument("--config", default=None, help="JSON of config fields overriding the default")
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--delta-max", type=int, default=4, help="future-state augmentation Δmax")
    ap.add_argument("--init", default=None,
                    help="start from this checkpoint's weights (same config but n_cameras: a "
                         "model given more views keeps every weight, the vision encoder is "
                         "shared by the views) instead of random ones; its norm stats are kept")
    ap.add_argument("--views", default="",
                    help="the model's image inputs as camera:lag,... (lag: ticks before the "
                         "frame; default every camera at lag 0), e.g. 0:0,0:4 sees motion")
    ap.add_argument("--frame-stack", type=int, default=1,
                    help="fuse each group of this many consecutive --views into one set of image "
                         "tokens (the patch embedding sees them side by side: motion at no extra "
                         "tokens); must divide the number of views")
    ap.add_argument("--stack-diff", type=float, default=0.0,
                    help="with --frame-stack >= 2: train the patch embedding on each patch's "
                         "current frame and this scale times its difference to each older frame "
                         "(StackDiffEmbed: same exported layer, motion learned apart from "
                         "appearance; from scratch the older frames' weights start at zero); "
                         "0 = off")
    ap.add_argument("--branches", type=int, default=4,
                    help="future-state branches (δ, flow time, noise) per shared image prefix")
    ap.add_argument("--state-source", choices=["measured", "target", "both"], default="both")
    ap.add_argument("--lang-weight", type=float, default=0.3)
    ap.add_argument("--p-commentary", type=float, default=0.3)
    ap.add_argument("--task-weights", default="",
                    help="sampling weight per task, e.g. reach=3,track=1 (default: equal)")
    ap.add_argument("--goal-weight", type=float, default=0.0,
                    help="weight of the auxiliary subtask-end regression from the prefix (0 = off)")
    ap.add_argument("--p-early", type=float, default=0.0,
                    help="probability that a sample is one of the first frames of a subtask")
    ap.add_argument("--subgoal-weight", type=float, default=0.0,
                    help="weight of the auxiliary subtask-end regression from the expert's state "
                         "token (0 = off)")
    ap.add_argument("--bind-weight", type=float, default=0.0,
                    help="weight of the auxiliary per-patch 'is the instruction's colour here?' "
                         "loss on the prefix (0 = off)")
    ap.add_argument("--attn-weight", type=float, default=0.0,
                    help="weight of the auxiliary attention supervision (0 = off): backbone head 0 "
                         "of --attn-layer, from the instruction's colour word to the patches of "
                         "that colour, and expert head 0 of the next layer, from every suffix "
                         "token to the colour word")
    ap.add_argument("--attn-layer", type=int, default=0,
                    help="backbone layer (0-based) of the supervised colour-word head")
    ap.add_argument("--locate-weight", type=float, default=1.0,
                    help="with --attn-weight: weight of the regression of the colour's pixel "
                         "centroid from the colour word's hidden state after --attn-layer")
    ap.add_argument("--motion-weight", type=float, default=0.0,
                    help="with --attn-weight and two or more views: weight of the auxiliary motion "
                         "losses (0 = off): backbone head 1 of --attn-layer looks from the colour "
                         "word at that colour's patches in the oldest view, and a linear head "
                         "reads from the word's hidden state how far the colour moved between the "
                         "oldest view and the current one")
    ap.add_argument("--attn-expert-patches", action="store_true",
                    help="with --attn-weight: also supervise expert head 0 of layer --attn-layer+2, "
                         "from every suffix token to the patches of the instruction's colour")
    ap.add_argument("--pretrain-prefix-min", type=float, default=0.0,
                    help="spend the first minutes of the budget on the prefix alone, through the "
                         "auxiliary prefix losses (--attn-weight, --goal-weight, --bind-weight): "
                         "its steps are about 5x cheaper than full ones")
    ap.add_argument("--prefix-only", action="store_true",
                    help="probe: train only the prefix through --goal-weight / --bind-weight / --attn-weight "
                         "(no flow matching, no language; the exported model cannot act)")
    ap.add_argument("--pos-init", choices=["sincos", "random"], default="sincos",
                    help="vision position embedding at step 0: 2D sine-cosine code or N(0, 0.02)")
    ap.add_argument("--pos-scale", type=float, default=0.2, help="scale of the sincos code")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time-limit-min", type=float, default=0, help="stop (and export) after this")
    ap.add_argument("--save-every", type=int, default=500)
    ap.add_argument("--dtype", choices=["F32", "BF16"], default="F32")
    return ap.parse_args(argv)


def sincos_2d(grid: int, dim: int) -> torch.Tensor:
    """[grid*grid, dim] fixed 2D sine-cosine position code (MAE-style), row-major patches:
    the first half of the channels encode the row, the second half the column, each as
    sin/cos over dim/4 geometric frequencies. Unit-free; the caller scales it."""
    q = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(q, dtype=torch.float64) / max(1, q)))
    rows, cols = torch.meshgrid(torch.arange(grid, dtype=torch.float64),
                                torch.arange(grid, dtype=torch.float64), indexing="ij")
    parts = []
    for coord in (rows.reshape(-1), cols.reshape(-1)):
        ang = coord[:, None] * omega[None, :]
        parts += [torch.sin(ang), torch.cos(ang)]
    out = torch.cat(parts, dim=1)
    if out.shape[1] < dim:  # dim not divisible by 4: zero-pad
        out = torch.cat([out, torch.zeros(out.shape[0], dim - out.shape[1], dtype=out.dtype)], 1)
    return out.float()


def init_weights(model: VladModel, seed: int, pos_init: str = "sincos",
                 pos_scale: float = 0.2) -> VladModel:
    """GPT-style initialisation for training: N(0, 0.02) matrices and embeddings, residual
    output projections scaled by 1/sqrt(2 depth), zero biases, unit norms. The vision
    position embedding starts as a 2D sine-cosine code times `pos_scale` (pos_init
    "sincos"; trainable from there) or N(0, 0.02) ("random"): everything the policy does
    depends on *where* things are in the image, and a from-scratch ViT with random
    position embeddings must first learn the image's geometry."""
    g = torch.Generator().manual_seed(seed)
    depth = max(model.c.depth, model.c.vit_depth)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.zero_()
            elif "norm" in name and p.dim() == 1:
                p.fill_(1.0)
            else:
                std = 0.02
                if name.endswith("attn.o.weight") or name.endswith("mlp.fc2.weight"):
                    std /= math.sqrt(2 * depth)
                p.copy_(torch.randn(p.shape, generator=g) * std)
        if pos_init == "sincos":
            grid = model.c.image_size // model.c.patch_size
            model.vision.pos_embed.copy_(sincos_2d(grid, model.c.vit_width) * pos_scale)
    return model


class GoalHead(torch.nn.Module):
    """Training-only auxiliary head (not exported): attention-pools the prefix hidden states
    entering the last backbone layer and regresses the commanded pose at the end of the
    frame's subtask (normalised; for reach, the pose touching the named ball). A
    deterministic target for (image, instruction): it pushes the backbone to bind the named
    colour to a place in the image, which the flow loss alone -- free to model the balls as
    equally likely modes -- barely does."""

    def __init__(self, width: int, out: int):
        super().__init__()
        self.query = torch.nn.Parameter(torch.randn(width) * 0.02)
        self.fc1 = torch.nn.Linear(width, width)
        self.fc2 = torch.nn.Linear(width, out)

    def forward(self, h, valid):
        score = (h @ self.query) / math.sqrt(h.shape[-1])
        score = score.masked_fill(~valid, float("-inf"))
        pooled = (torch.softmax(score, dim=1)[:, :, None] * h).sum(1)
        return self.fc2(F.gelu(self.fc1(pooled)))


class SubgoalHead(torch.nn.Module):
    """Training-only auxiliary head (not exported): regresses the commanded pose at the end
    of the frame's subtask (normalised) from the action expert's *state token* half-way up
    the expert. The state token sees the prefix and the state, and every later action token
    reads it: teaching it where the subtask goes trains the expert's own attention to find
    the named object, which the flow loss alone teaches slowly."""

    def __init__(self, width: int, out: int):
        super().__init__()
        self.fc1 = torch.nn.Linear(width, width)
        self.fc2 = torch.nn.Linear(width, out)

    def forward(self, h):
        return self.fc2(F.gelu(self.fc1(h)))


def named_colour(c, prompts, images):
    """Per sample: the instruction's (first-named) colour word and where its pixels are in
    every view. Returns a dict: word_pos [B] long (prefix position of the word's first
    byte), ok [B] bool (the prompt names a colour within max_prompt_tokens), frac
    [B,n_views,n_patches] float32 (fraction of each patch in that colour) and xy
    [B,n_views,2] (centroid of that colour's pixels, -1..1; view 0 is the current image)."""
    col = np.array([first_colour(p) for p in prompts])
    start = np.array([p.decode(errors="replace").lower().find(COLOURS[k]) if k >= 0 else -1
                      for p, k in zip(prompts, col)])
    ok = (col >= 0) & (start >= 0) & (start < c.max_prompt_tokens)
    B, V = images.shape[:2]
    masks = colour_masks(images)                                        # [B,V,4,H,W]
    named = masks[np.arange(B), :, np.maximum(col, 0)]                  # [B,V,H,W]
    frac = patch_fraction(named, c.patch_size)
    xy = centroid(named.reshape(B * V, *named.shape[2:])).reshape(B, V, 2)
    word_pos = c.n_image_tokens + 1 + np.maximum(start, 0)    # after BOS
    return {"word_pos": torch.from_numpy(word_pos).long(), "ok": ok, "frac": frac, "xy": xy}


def centroid(mask):
    """bool [B,H,W] -> float32 [B,2]: the set pixels' mean (column, row), scaled to -1..1
    (0 where none is set)."""
    B, H, W = mask.shape
    n = np.maximum(mask.sum((1, 2)), 1)
    cols = (mask * np.arange(W)[None, None, :]).sum((1, 2)) / n
    rows = (mask * np.arange(H)[None, :, None]).sum((1, 2)) / n
    out = np.stack([cols / (W - 1) * 2 - 1, rows / (H - 1) * 2 - 1], -1)
    return (out * (mask.any((1, 2)))[:, None]).astype(np.float32)


def attention_loss(c, named, probe_b, probe_e, R, locate_head, locate_weight):
    """Where the instruction's colour is, taught three ways: cross-entropy of backbone head
    rows at the colour word's first byte -> patches of that colour (weighted by pixel count);
    the MSE of locate_head on that row's hidden state after the layer -> the colour's pixel
    centroid (so the attended values carry the place, not only the colour); cross-entropy of
    expert rows (state and action tokens) -> the colour word's first byte. Samples whose
    colour is not in sight (whack between balls) are skipped. `named` is the batch's
    named_colour()."""
    word_pos, ok, frac, xy = named["word_pos"], named["ok"], named["frac"][:, 0], named["xy"][:, 0]
    seen = ok & (frac.sum(-1) > 0)
    if not seen.any():
        return torch.zeros(())
    w = torch.from_numpy(seen.astype(np.float32))
    tgt = torch.from_numpy(frac / np.maximum(frac.sum(-1, keepdims=True), 1e-9))
    B = len(ok)
    row = probe_b["logp"][torch.arange(B), word_pos, : c.n_patches]   # [B,n_patches]
    ce_b = -(tgt * row).sum(-1)
    loc = ((locate_head(probe_b["hidden"][torch.arange(B), word_pos]) - torch.from_numpy(xy)) ** 2).sum(-1)
    total = ((ce_b + locate_weight * loc) * w).sum() / w.sum()
    wr = w.repeat_interleave(R)
    for pe in probe_e or []:
        lp = pe["logp"]                                                 # [BR,H+1,keys]
        if pe["to"] == "word":
            ce_e = -lp[torch.arange(B * R), :, word_pos.repeat_interleave(R)].mean(-1)
        else:  # the patches of the colour, as for the backbone head
            ce_e = -(tgt.repeat_interleave(R, 0)[:, None, :] * lp[:, :, : c.n_patches]).sum(-1).mean(-1)
        total = total + (ce_e * wr).sum() / wr.sum()
    return total


MOTION_SCALE = 8.0  # the motion head's target: centroid displacement (-1..1 image units) x this


def motion_loss(c, named, probe_b, motion_head, locate_weight):
    """What moved, taught on the prefix of a model with two or more views: cross-entropy of
    backbone head probe_b["head2"] at the colour word -> that colour's patches in the oldest
    view (head probe_b["head"] already looks at them in the current one), and the MSE of
    motion_head on the word's hidden state after the layer -> the colour's centroid in the
    current view minus its centroid in the oldest, times MOTION_SCALE (for `track`, where the
    ball is going; about 0 for a resting ball). Samples whose colour is not in sight in both
    views are skipped. With frame_stack > 1 the views share tokens, so only the motion_head
    term applies."""
    word_pos, ok, frac, xy = named["word_pos"], named["ok"], named["frac"], named["xy"]
    seen = ok & (frac[:, 0].sum(-1) > 0) & (frac[:, -1].sum(-1) > 0)
    if not seen.any():
        return torch.zeros(())
    w = torch.from_numpy(seen.astype(np.float32))
    B, V = frac.shape[:2]
    if c.frame_stack > 1:
        ce = torch.zeros(B)
    else:
        old = frac[:, -1]
        tgt = torch.from_numpy(old / np.maximum(old.sum(-1, keepdims=True), 1e-9))
        lo = (V - 1) * c.n_patches
        row = probe_b["logp2"][torch.arange(B), word_pos, lo: lo + c.n_patches]
        ce = -(tgt * row).sum(-1)
    moved = torch.from_numpy((xy[:, 0] - xy[:, -1]) * MOTION_SCALE)
    pred = motion_head(probe_b["hidden"][torch.arange(B), word_pos])
    mse = ((pred - moved) ** 2).sum(-1)
    return ((ce + locate_weight * mse) * w).sum() / w.sum()


class StackDiffEmbed(torch.nn.Module):
    """Training-only reparameterisation of a frame_stack F patch embedding (--stack-diff S):
    the layer sees each patch's current frame x_0 and, for every older frame x_k of its set,
    the scaled difference u_k = S (x_0 - x_k) instead of x_k, with its own weights A_k. The
    function is the same linear map, y = A_0 x_0 + sum_k A_k u_k + b, so the exported layer is
    an ordinary MODEL.md patch embedding (weight(): W_0 = A_0 + S sum_k A_k, W_k = -S A_k) and
    the engine needs nothing new. What changes is the optimisation: the A_k see only what
    moved (a still scene gives u_k = 0), so Adam's steps on them learn motion rather than a
    second copy of the appearance, and zero A_k (from_linear(zero_old=True)) start the model
    as exactly a one-frame one."""

    def __init__(self, out: int, d: int, frames: int, scale: float):
        super().__init__()
        self.d, self.frames, self.scale = d, frames, float(scale)
        self.a_now = torch.nn.Parameter(torch.zeros(out, d))
        self.a_diff = torch.nn.Parameter(torch.zeros(out, (frames - 1) * d))
        self.bias = torch.nn.Parameter(torch.zeros(out))

    @classmethod
    def from_linear(cls, lin: torch.nn.Linear, frames: int, scale: float, zero_old: bool):
        """The same function as `lin` (a frame_stack `frames` patch embedding); with zero_old
        the older frames' weights are zeroed first."""
        if frames < 2 or lin.in_features % frames:
            raise ValueError(f"--stack-diff needs --frame-stack >= 2 (got {frames})")
        if not scale > 0:
            raise ValueError(f"--stack-diff {scale}: the scale must be > 0")
        d = lin.in_features // frames
        m = cls(lin.out_features, d, frames, scale)
        with torch.no_grad():
            w = lin.weight.detach().clone()
            if zero_old:
                w[:, d:] = 0
            old = w[:, d:].reshape(w.shape[0], frames - 1, d)
            m.a_now.copy_(w[:, :d] + old.sum(1))
            m.a_diff.copy_((-old / scale).reshape(w.shape[0], -1))
            m.bias.copy_(lin.bias)
        return m

    def weight(self) -> torch.Tensor:
        old = self.a_diff.reshape(self.a_now.shape[0], self.frames - 1, self.d)
        w_now = self.a_now + self.scale * old.sum(1)
        return torch.cat([w_now, (-self.scale * old).reshape(self.a_now.shape[0], -1)], 1)

    def forward(self, x):
        return F.linear(x, self.weight(), self.bias)

    def to_linear(self) -> torch.nn.Linear:
        lin = torch.nn.Linear(self.frames * self.d, self.a_now.shape[0])
        with torch.no_grad():
            lin.weight.copy_(self.weight())
            lin.bias.copy_(self.bias)
        return lin.to(self.a_now.dtype)


def widen_frame_stack(state: dict, old, new) -> dict:
    """A frame_stack 1 checkpoint's weights for a model whose views are fused in sets of
    new.frame_stack: the first image of each set gets the old patch embedding, the others
    zero weights, so the widened model's outputs start equal to the old one's (on the first
    image of each set). Same frame_stack: unchanged. ValueError for any other change."""
    if old.frame_stack == new.frame_stack:
        return state
    if old.frame_stack != 1:
        raise ValueError(f"frame_stack {old.frame_stack} -> {new.frame_stack}: only a "
                         f"frame_stack 1 model can be widened")
    st = dict(state)
    pe = st["vision.patch_embed.weight"]
    wide = torch.zeros(pe.shape[0], new.patch_dim, dtype=pe.dtype)
    wide[:, : pe.shape[1]] = pe
    st["vision.patch_embed.weight"] = wide
    return st


def masked_mse(pred, target, mask):
    """Mean over rows with mask 1 of the per-row mean squared error; pred/target [N,D], mask [N]."""
    return ((pred - target) ** 2).mean(-1).mul(mask).sum() / mask.sum()


def cosine_lr(step, progress, base, warmup):
    """Linear warm-up, then cosine decay to 5% over `progress` in [0, 1] (the larger of
    the step fraction and the time-budget fraction, so a time limit ends the schedule)."""
    if step < warmup:
        return base * (step + 1) / warmup
    p = min(1.0, max(0.0, progress))
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * p)))


def plot(work: str, aux=()):
    """loss.png from loss.csv: flow matching, language, and the named auxiliary losses."""
    csv = os.path.join(work, "loss.csv")
    png = os.path.join(work, "loss.png")
    if not shutil.which("gnuplot") or not os.path.exists(csv):
        return
    script = f"""
set terminal pngcairo size 800,450 noenhanced
set output '{png}'
set datafile separator ','
set key autotitle columnhead
set logscale y
set xlabel 'step'
set ylabel 'loss (EMA)'
set grid
plot '{csv}' using 1:3 with lines lw 2 title 'flow matching', \\
     '' using 1:4 with lines lw 2 title 'language'""" + "".join(
        f""", \\
     '' using 1:{col} with lines lw 2 title '{name} (auxiliary)'"""
        for name, col in (("goal", 5), ("subgoal", 6), ("bind", 7), ("attention", 8), ("motion", 9))
        if name in aux) + "\n"
    try:
        subprocess.run(["gnuplot"], input=script.encode(), check=True, capture_output=True)
    except (subprocess.CalledProcessError, OSError) as e:  # a plot is not worth a crash
        print(f"\nloss curve: gnuplot failed: {e}", file=sys.stderr)


class Progress:
    """A progress line: steps, losses, learning rate, speed and ETA -- the sooner of the
    step budget and the time budget (`limit_s` seconds of training in all, `spent_s` of them
    spent by earlier runs; limit_s None = no time limit)."""

    def __init__(self, total, start, limit_s=None, spent_s=0.0):
        self.total, self.start_step, self.t0 = total, start, time.time()
        self.limit_s, self.spent_s = limit_s, spent_s
        self.deadline = None if limit_s is None else self.t0 + limit_s - spent_s
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def show(self, step, flow, lang, lr, force=False, aux=None):
        now = time.time()
        if not force and now - self.last < (0.5 if self.tty else 30):
            return
        self.last = now
        done = step - self.start_step
        rate = done / max(1e-9, now - self.t0)
        eta = (self.total - step) / max(rate, 1e-9)
        frac = step / self.total
        if self.deadline is not None and self.deadline - now < eta:
            eta = max(0.0, self.deadline - now)
            frac = (self.spent_s + now - self.t0) / self.limit_s
        w = 30
        fill = int(w * min(1.0, frac))
        bar = "#" * fill + "." * (w - fill)
        line = (f"[{bar}] {step}/{self.total}  flow {flow or 0:.4f}  lang {lang or 0:.4f}  lr {lr:.2e}  "
                + "".join(f"{k} {v:.4f}  " for k, v in (aux or {}).items() if v)
                + f"{rate:.2f} it/s  ETA {int(eta // 60)}m{int(eta % 60):02d}s")
        print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", file=sys.stderr,
              flush=True)


def main(argv=None) -> int:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    work = a.work or (a.out + ".work")
    os.makedirs(work, exist_ok=True)
    c = default_config()
    if a.config:
        for k, v in json.loads(a.config).items():
            setattr(c, k, v)
    if a.attn_weight > 0 and a.attn_layer + (2 if a.attn_expert_patches else 1) >= c.depth:
        raise SystemExit(f"--attn-layer {a.attn_layer}: the supervised expert layers must exist "
                         f"(depth {c.depth})")
    if (a.prefix_only or a.pretrain_prefix_min > 0) and not (
            a.goal_weight > 0 or a.bind_weight > 0 or a.attn_weight > 0):
        raise SystemExit("--prefix-only and --pretrain-prefix-min train the prefix through "
                         "--goal-weight, --bind-weight or --attn-weight: give at least one of them "
                         "a weight > 0")
    print(f"loading {a.data} ...", file=sys.stderr)
    eps = Episodes(a.data)
    J = eps.state.shape[1]
    c.state_dim = c.action_dim = J
    views = parse_views(a.views, eps.images.shape[1])
    c.n_cameras = len(views)
    c.frame_stack = a.frame_stack
    c.image_size = eps.images.shape[2]
    c.validate()
    if a.motion_weight > 0 and not (a.attn_weight > 0 and c.n_cameras >= 2 and c.n_heads >= 2):
        raise SystemExit("--motion-weight needs --attn-weight > 0 (it reads the colour word's "
                         "hidden state there), two or more --views (what moved between them) "
                         "and two backbone heads (it supervises head 1)")
    print(f"{len(eps.lengths)} episodes, {len(eps)} frames, {J} joints, "
          f"{c.n_cameras} view(s) {views} {c.image_size}px; tasks: "
          f"{ {t: eps.tasks.count(t) for t in sorted(set(eps.tasks))} }", file=sys.stderr)

    weights = {}
    for item in filter(None, a.task_weights.split(",")):
        name, _, w = item.partition("=")
        try:
            w = float(w)
        except ValueError:
            w = -1.0
        if name not in eps.tasks or not w >= 0:
            raise SystemExit(f"--task-weights: '{item}' is not TASK=WEIGHT with a task of the data "
                             f"({', '.join(sorted(set(eps.tasks)))}) and a weight >= 0")
        weights[name] = w
    if weights and sum(weights.get(t, 1.0) for t in set(eps.tasks)) <= 0:
        raise SystemExit("--task-weights: all weights are 0")
    model = init_weights(VladModel(c).float(), a.seed, a.pos_init, a.pos_scale)
    (sm, ss), (am, asd) = eps.stats()
    with torch.no_grad():
        model.norm.state.mean.copy_(torch.from_numpy(sm))
        model.norm.state.std.copy_(torch.from_numpy(ss))
        model.norm.action.mean.copy_(torch.from_numpy(am))
        model.norm.action.std.copy_(torch.from_numpy(asd))
    if a.init:
        init = load_checkpoint(a.init)
        ci, cm = json.loads(init.c.to_json()), json.loads(c.to_json())
        diff = [k for k in cm if k not in ("n_cameras", "frame_stack") and ci.get(k) != cm[k]]
        if diff:
            raise SystemExit(f"--init {a.init}: its config differs in {', '.join(diff)}")
        try:
            st = widen_frame_stack(init.state_dict(), init.c, c)
        except ValueError as e:
            raise SystemExit(f"--init {a.init}: {e}") from None
        model.load_state_dict(st, strict=True)
        print(f"initialised from {a.init}", file=sys.stderr)
    if a.stack_diff:
        try:  # before the optimiser and the resumed state, which hold its parameters
            model.vision.patch_embed = StackDiffEmbed.from_linear(
                model.vision.patch_embed, c.frame_stack, a.stack_diff, zero_old=not a.init)
        except ValueError as e:
            raise SystemExit(str(e)) from None
    goal_head = GoalHead(c.width, c.action_dim)
    bind_head = torch.nn.Linear(c.width, 1)
    locate_head = torch.nn.Linear(c.width, 2)
    motion_head = torch.nn.Linear(c.width, 2)
    subgoal_head = SubgoalHead(c.expert_width, c.action_dim)
    state_after = max(0, c.depth // 2 - 1)  # later expert layers read the state token's K/V
    params = (list(model.named_parameters())
              + [("aux." + n, p) for n, p in goal_head.named_parameters()]
              + [("aux2." + n, p) for n, p in subgoal_head.named_parameters()]
              + [("aux3." + n, p) for n, p in bind_head.named_parameters()]
              + [("aux4." + n, p) for n, p in locate_head.named_parameters()]
              # only when used: a run without it keeps the optimiser state of earlier versions
              + ([("aux5." + n, p) for n, p in motion_head.named_parameters()]
                 if a.motion_weight > 0 else []))
    decay = [p for n, p in params if p.dim() >= 2]
    no_decay = [p for n, p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=a.lr, betas=(0.9, 0.95))
    rng = np.random.default_rng(a.seed)
    torch.manual_seed(a.seed)
    step = 0
    elapsed0 = 0.0  # training seconds of earlier runs (resume)
    ema = {"flow": None, "lang": None, "goal": None, "subgoal": None, "bind": None, "attn": None,
           "motion": None}
    state_path = os.path.join(work, "state.pt")
    if os.path.exists(state_path):
        st = torch.load(state_path)
        model.load_state_dict(st["model"])
        if "goal_head" in st:
            goal_head.load_state_dict(st["goal_head"])
        if "subgoal_head" in st:
            subgoal_head.load_state_dict(st["subgoal_head"])
        if "bind_head" in st:
            bind_head.load_state_dict(st["bind_head"])
        if "locate_head" in st:
            locate_head.load_state_dict(st["locate_head"])
        if "motion_head" in st:
            motion_head.load_state_dict(st["motion_head"])
        opt.load_state_dict(st["opt"])
        rng.bit_generator.state = st["rng"]
        torch.set_rng_state(st["torch_rng"])
        step, ema = st["step"], st["ema"]
        ema.setdefault("goal", None)
        ema.setdefault("subgoal", None)
        ema.setdefault("bind", None)
        ema.setdefault("attn", None)
        ema.setdefault("motion", None)
        elapsed0 = st.get("elapsed", 0.0)
        print(f"resumed from {state_path} at step {step}", file=sys.stderr)
    csv_path = os.path.join(work, "loss.csv")
    if step == 0 or not os.path.exists(csv_path):
        with open(csv_path, "w") as f:
            f.write("step,seconds,flow,lang,goal,subgoal,bind,attn,motion\n")
    with open(os.path.join(work, "args.json"), "w") as f:
        json.dump(vars(a), f, indent=1)

    def save_state():
        torch.save({"model": model.state_dict(), "goal_head": goal_head.state_dict(),
                    "subgoal_head": subgoal_head.state_dict(), "bind_head": bind_head.state_dict(),
                    "locate_head": locate_head.state_dict(), "motion_head": motion_head.state_dict(),
                    "opt": opt.state_dict(),
                    "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                    "step": step, "ema": ema, "elapsed": elapsed0 + time.time() - t_start},
                   state_path + ".tmp")
        os.replace(state_path + ".tmp", state_path)

    am_t, as_t = model.norm.action.mean, model.norm.action.std
    sm_t, ss_t = model.norm.state.mean, model.norm.state.std
    beta = torch.distributions.Beta(torch.tensor(1.5), torch.tensor(1.0))
    prog = Progress(a.steps, step, a.time_limit_min * 60 if a.time_limit_min else None, elapsed0)
    t_start = time.time()
    model.train()
    while step < a.steps:
        if a.time_limit_min and elapsed0 + time.time() - t_start > a.time_limit_min * 60:
            print(f"\ntime limit of {a.time_limit_min} min reached at step {step}", file=sys.stderr)
            break
        progress = (step - a.warmup) / max(1, a.steps - a.warmup)
        if a.time_limit_min:
            progress = max(progress, (elapsed0 + time.time() - t_start) / (a.time_limit_min * 60))
        lr = cosine_lr(step, progress, a.lr, a.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        idx = eps.sample(rng, a.batch, weights, a.p_early)
        b = make_batch(eps, idx, rng, c.chunk_size, a.delta_max, a.state_source, a.branches,
                       views)
        images = torch.from_numpy(b["images"])
        probe_b = ({"layer": a.attn_layer, "head": 0, "head2": 1 if a.motion_weight > 0 else None}
                   if a.attn_weight > 0 else None)
        prefix_step = a.prefix_only or (
            a.pretrain_prefix_min > 0 and elapsed0 + time.time() - t_start < a.pretrain_prefix_min * 60)
        probe_e = None
        if a.attn_weight > 0 and not prefix_step:
            probe_e = [{"layer": a.attn_layer + 1, "head": 0, "to": "word"}]
            if a.attn_expert_patches:
                probe_e.append({"layer": a.attn_layer + 2, "head": 0, "to": "patches"})
        kv, valid, S, hid = batched.encode_prefix(model, images, b["prompt"], hidden_after=c.depth - 2,
                                                  probe=probe_b)
        R, BR = a.branches, a.batch * a.branches
        if prefix_step:  # the prefix and its auxiliary heads alone (probe, or pre-training)
            flow = lang = loss = torch.zeros(())
            state_h = None
        else:
            # flow matching on R branches per prefix: x_t = t noise + (1-t) a_n, target noise - a_n
            kv_r = [(k.repeat_interleave(R, 0), v.repeat_interleave(R, 0)) for k, v in kv]
            a_n = (torch.from_numpy(b["actions"]).reshape(BR, c.chunk_size, -1) - am_t) / as_t
            s_n = (torch.from_numpy(b["state"]).reshape(BR, -1) - sm_t) / ss_t
            noise = torch.randn_like(a_n)
            t = 0.001 + 0.999 * beta.sample((BR,))
            x_t = t[:, None, None] * noise + (1 - t[:, None, None]) * a_n
            v, state_h = batched.velocity(model, kv_r, valid.repeat_interleave(R, 0),
                                          S.repeat_interleave(R, 0), s_n, x_t, t, state_after,
                                          probe=probe_e)
            mask = torch.from_numpy(b["mask"]).reshape(BR, c.chunk_size)[:, :, None]
            flow = (((v - (noise - a_n)) ** 2) * mask).sum() / (mask.sum() * c.action_dim)
            # language on the same prefix
            pairs = language_pairs(eps, idx, rng, a.p_commentary)
            tok, tgt = batched.stream_tokens(c, pairs)
            logits = batched.lang_logits(model, kv, valid, S, tok)
            lang = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100)
            loss = flow + a.lang_weight * lang
        gm = torch.from_numpy(b["subgoal_mask"])
        g_n = (torch.from_numpy(b["subgoal"]) - am_t) / as_t
        goal = torch.zeros(())
        if a.goal_weight > 0 and gm.sum() > 0:
            goal = masked_mse(goal_head(hid, valid), g_n, gm)
            loss = loss + a.goal_weight * goal
        sgm = gm.repeat_interleave(R, 0)
        subgoal = torch.zeros(())
        if a.subgoal_weight > 0 and sgm.sum() > 0 and state_h is not None:
            subgoal = masked_mse(subgoal_head(state_h), g_n.repeat_interleave(R, 0), sgm)
            loss = loss + a.subgoal_weight * subgoal
        # the instruction's colour and its pixels, for the attention and binding losses
        named = named_colour(c, b["prompt"], b["images"]) if a.attn_weight > 0 or a.bind_weight > 0 else None
        attn = torch.zeros(())
        if a.attn_weight > 0:
            attn = attention_loss(c, named, probe_b, probe_e, R, locate_head, a.locate_weight)
            loss = loss + a.attn_weight * attn
        motion = torch.zeros(())
        if a.motion_weight > 0:
            motion = motion_loss(c, named, probe_b, motion_head, a.locate_weight)
            loss = loss + a.motion_weight * motion
        bind = torch.zeros(())
        if a.bind_weight > 0:
            # per image patch of camera 0: does it hold pixels of the instruction's colour?
            frac, ok = named["frac"][:, 0], named["ok"]
            if ok.any():
                target = torch.from_numpy((frac > 0.02).astype(np.float32))  # [B,n_patches]
                logit = bind_head(hid[:, : c.n_patches]).squeeze(-1)
                per = F.binary_cross_entropy_with_logits(logit, target, reduction="none").mean(-1)
                okt = torch.from_numpy(ok.astype(np.float32))
                bind = (per * okt).sum() / okt.sum()
                loss = loss + a.bind_weight * bind
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        for k, val in (("flow", float(flow)), ("lang", float(lang)), ("goal", float(goal)),
                         ("subgoal", float(subgoal)), ("bind", float(bind)), ("attn", float(attn)),
                         ("motion", float(motion))):
            if prefix_step and k in ("flow", "lang", "subgoal"):
                continue  # not computed on prefix steps
            ema[k] = val if ema[k] is None else 0.98 * ema[k] + 0.02 * val
        if step % 20 == 0:
            with open(csv_path, "a") as f:
                cols = ",".join("" if ema[k] is None else f"{ema[k]:.6f}"
                                for k in ("flow", "lang", "goal", "subgoal", "bind", "attn", "motion"))
                f.write(f"{step},{elapsed0 + time.time() - t_start:.1f},{cols}\n")
        aux = {k: ema[k] for k in ("goal", "subgoal", "bind", "attn", "motion")}
        prog.show(step, ema["flow"], ema["lang"], lr, aux=aux)
        if step % a.save_every == 0:
            save_state()
    prog.show(step, ema["flow"], ema["lang"], lr, force=True)
    print(file=sys.stderr)
    save_state()
    plot(work, aux=[n for n, w in (("goal", a.goal_weight), ("subgoal", a.subgoal_weight),
                                   ("bind", a.bind_weight), ("attention", a.attn_weight),
                                   ("motion", a.motion_weight)) if w > 0])
    model.eval()
    if a.stack_diff:  # export the ordinary layer (the same function)
        model.vision.patch_embed = model.vision.patch_embed.to_linear()
    save_checkpoint(model, a.out, dtype=a.dtype, extra_meta={"vlad.train.delta_max": a.delta_max,
                                                                   "vlad.views": views_json(views)})
    took = time.time() - t_start
    summary = {"steps": step, "batch": a.batch, "seconds_this_run": round(took, 1),
               "final_flow_loss_ema": ema["flow"], "final_lang_loss_ema": ema["lang"],
               "final_goal_loss_ema": ema["goal"],
               "episodes": int(len(eps.lengths)), "frames": int(len(eps)),
               "config": json.loads(c.to_json()), "args": vars(a)}
    with open(os.path.join(work, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"wrote {a.out} after {step} steps ({took / 60:.1f} min this run); "
          f"loss curve {os.path.join(work, 'loss.png')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
