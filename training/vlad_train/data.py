"""Demonstration episodes (vlad-sim --record-dataset) as training samples.

Every frame t of every episode can be a sample. Future-state augmentation (VLASH): draw
δ in 0..delta_max, keep the image at t, give the model the state at t+δ -- either the
measured joint positions state[t+δ] or the pending target action[t+δ-1] (what a VLASH
daemon passes: the last commanded target before the chunk starts) -- and supervise the
actions [t+δ, t+δ+H). Indices past the episode end are clamped and masked.
"""
from __future__ import annotations

import glob
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "sim"))
from read_episode import read_episode  # noqa: E402


def parse_views(text: str, n_cameras: int):
    """"0:0,0:4" (camera:lag, ...) -> [(camera, lag), ...]; "" -> every camera at lag 0.
    A view is camera `camera` as it was `lag` ticks before the frame (MODEL.md "Views")."""
    if not text:
        return [(c, 0) for c in range(n_cameras)]
    out = []
    for item in text.split(","):
        cam, _, lag = item.partition(":")
        try:
            cam, lag = int(cam), int(lag or 0)
        except ValueError:
            raise SystemExit(f"--views {text!r}: {item!r} is not camera:lag") from None
        if not (0 <= cam < n_cameras and 0 <= lag <= 64):
            raise SystemExit(f"--views {text!r}: {item!r}: camera in [0, {n_cameras}), lag in [0, 64]")
        out.append((cam, lag))
    return out


def views_json(views) -> str:
    """The checkpoint's "vlad.views" metadata (common/views.h)."""
    return json.dumps([{"camera": c, "lag": lag} for c, lag in views], separators=(",", ":"))


def frame_views(images: np.ndarray, k: int, views) -> np.ndarray:
    """Frame k's image inputs from one episode's images [T, n_cameras, H, W, 3]: view (camera,
    lag) is the camera's image at frame max(k - lag, 0), the rule of Episodes.view_images.
    -> [n_views, H, W, 3]."""
    return np.stack([images[max(k - lag, 0), cam] for cam, lag in views])


class Episodes:
    """All episodes of a directory (or of several, comma-separated), concatenated frame-wise."""

    def __init__(self, directory: str, limit: int | None = None):
        paths = [p for d in directory.split(",")
                 for p in sorted(glob.glob(os.path.join(d, "**", "episode_*.safetensors"),
                                           recursive=True))]
        if limit:
            paths = paths[:limit]
        if not paths:
            raise FileNotFoundError(f"{directory}: no episode_*.safetensors files")
        images, state, action, ep_of, t_of = [], [], [], [], []
        self.starts, self.lengths, self.prompts, self.labels, self.tasks = [], [], [], [], []
        self.success = []
        off = 0
        for i, p in enumerate(paths):
            t, m = read_episode(p)
            T = t["state"].shape[0]
            images.append(t["images"])
            state.append(t["state"].astype(np.float32))
            action.append(t["action"].astype(np.float32))
            ep_of.append(np.full(T, i, np.int64))
            t_of.append(np.arange(T, dtype=np.int64))
            self.starts.append(off)
            self.lengths.append(T)
            self.prompts.append(m.get("instruction", "").encode())
            self.labels.append(m.get("labels", [{}] * T))
            self.tasks.append(m.get("task", "?"))
            self.success.append(m.get("success", True))
            off += T
        self.paths = paths
        self.images = np.concatenate(images)   # [N, n_cam, H, W, 3] uint8
        self.state = np.concatenate(state)     # [N, J]
        self.action = np.concatenate(action)   # [N, J]
        self.ep_of = np.concatenate(ep_of)
        self.t_of = np.concatenate(t_of)
        self.starts = np.array(self.starts)
        self.lengths = np.array(self.lengths)
        # per frame, from the commentary labels (a run of equal labels is a subtask: "moving
        # to the red ball", "pushing the yellow block", ...):
        # * seg_end: the global index of the last frame of the frame's subtask (the commanded
        #   pose there is where the subtask goes);
        # * early: the frame is one of the first EARLY_TICKS of its subtask. There the arm has
        #   not yet moved toward the subtask's goal, so the image's objects and the
        #   instruction are the only clue to it; later frames can be solved by continuing the
        #   arm's motion (a shortcut a policy learns first: see sample(p_early=...))
        self.seg_end = np.zeros(len(self.ep_of), np.int64)
        self.early = np.zeros(len(self.ep_of), bool)
        for e, (s0, T) in enumerate(zip(self.starts, self.lengths)):
            com = [(lab or {}).get("commentary", "") for lab in self.labels[e]][:T]
            com += [None] * (T - len(com))
            end = T - 1
            for i in range(T - 1, -1, -1):
                if i < T - 1 and com[i] != com[i + 1]:
                    end = i
                self.seg_end[s0 + i] = s0 + end
                if i == 0 or com[i] != com[i - 1]:
                    self.early[s0 + i: s0 + min(T, i + self.EARLY_TICKS)] = True

    EARLY_TICKS = 3

    def view_images(self, idx: np.ndarray, views) -> np.ndarray:
        """The model's image inputs for frames idx: view (camera, lag) is the camera's image
        `lag` frames earlier in the same episode, the episode's first frame when there is none
        that old (the daemon's frame history does the same: common/views.h).
        -> [B, n_views, H, W, 3] uint8."""
        start = self.starts[self.ep_of[idx]]
        return np.stack([self.images[np.maximum(idx - lag, start), cam] for cam, lag in views], 1)

    def __len__(self):
        return len(self.ep_of)

    def sample(self, rng: np.random.Generator, n: int, weights: dict | None = None,
               p_early: float = 0.0) -> np.ndarray:
        """n frame indices: a task is drawn (equally likely, or by `weights` {task: w},
        missing tasks weigh 1), then a frame uniformly within it -- short-episode tasks are
        not drowned by long ones -- or, with probability p_early, uniformly among the
        task's early frames (the first ticks of a subtask, self.early)."""
        if not hasattr(self, "_by_task"):
            task_of_frame = np.array([self.tasks[e] for e in self.ep_of])
            self._names = sorted(set(self.tasks))
            self._by_task = [np.flatnonzero(task_of_frame == t) for t in self._names]
            self._early_by_task = [f[self.early[f]] for f in self._by_task]
        w = np.array([(weights or {}).get(t, 1.0) for t in self._names], float)
        k = rng.choice(len(self._by_task), size=n, p=w / w.sum())
        early = rng.random(n) < p_early
        out = []
        for i, e in zip(k, early):
            pool = self._early_by_task[i] if e and len(self._early_by_task[i]) else self._by_task[i]
            out.append(pool[rng.integers(len(pool))])
        return np.array(out)

    def stats(self):
        """Normalisation statistics (mean, std) of state and action; std floored."""
        def ms(x):
            return x.mean(0), np.maximum(x.std(0), 1e-2)
        return ms(self.state), ms(self.action)


def make_batch(eps: Episodes, idx: np.ndarray, rng: np.random.Generator, horizon: int,
               delta_max: int, state_source: str, branches: int = 1, views=None):
    """Samples for frames idx, each with `branches` independent future-state draws that
    share the frame's image (VLASH's shared-observation training: one prefix, several
    (state at t+δ, actions from t+δ) branches). Returns dict of numpy arrays:
    images [B,n_views,...] u8 (views: [(camera, lag)], default every camera now), state [B,R,J], actions [B,R,H,J], mask [B,R,H] (1 = real action),
    delta [B,R], prompt list[bytes], ep [B], t [B], subgoal [B,J] (the commanded pose at the end of the frame's subtask, Episodes.seg_end)
    and subgoal_mask [B] (1 = a successful episode of a task other than track, whose
    "following" subtask has no end pose)."""
    B, R = len(idx), branches
    ep = np.repeat(eps.ep_of[idx], R)
    t = np.repeat(eps.t_of[idx], R)
    start = eps.starts[ep]
    T = eps.lengths[ep]
    delta = rng.integers(0, delta_max + 1, size=B * R)
    td = np.minimum(t + delta, T - 1)                     # future tick, clamped
    if state_source == "measured":
        use_target = np.zeros(B * R, bool)
    elif state_source == "target":
        use_target = np.ones(B * R, bool)
    else:  # both
        use_target = rng.random(B * R) < 0.5
    # the pending target at td-1 (at td = 0 there is none: the measured state)
    prev = np.maximum(td - 1, 0)
    state = np.where((use_target & (td > 0))[:, None], eps.action[start + prev], eps.state[start + td])
    steps = td[:, None] + np.arange(horizon)[None, :]        # [B*R,H]
    mask = (steps < T[:, None]).astype(np.float32)
    steps = np.minimum(steps, (T - 1)[:, None])
    actions = eps.action[start[:, None] + steps]            # [B*R,H,J]
    J = eps.state.shape[1]
    ep0 = eps.ep_of[idx]
    subgoal_mask = np.array([eps.tasks[e] != "track" and eps.success[e] for e in ep0], np.float32)
    return {
        "subgoal": eps.action[eps.seg_end[idx]].astype(np.float32),
        "subgoal_mask": subgoal_mask,
        "images": eps.images[idx] if views is None else eps.view_images(idx, views),
        "state": state.astype(np.float32).reshape(B, R, J),
        "actions": actions.astype(np.float32).reshape(B, R, horizon, J),
        "mask": mask.reshape(B, R, horizon),
        "delta": delta.reshape(B, R),
        "prompt": [eps.prompts[e] for e in eps.ep_of[idx]],
        "ep": eps.ep_of[idx],
        "t": eps.t_of[idx],
    }


def language_pairs(eps: Episodes, idx: np.ndarray, rng: np.random.Generator, p_commentary: float):
    """One (question, answer) per sample from its frame's labels; an empty question asks
    for the running commentary."""
    out = []
    for e, t in zip(eps.ep_of[idx], eps.t_of[idx]):
        lab = eps.labels[e][t] if t < len(eps.labels[e]) else {}
        qa = lab.get("qa", [])
        if qa and rng.random() >= p_commentary:
            q, a = qa[rng.integers(len(qa))]
            out.append((q.encode(), a.encode()))
        else:
            out.append((b"", lab.get("commentary", "").encode()))
    return out
