#!/usr/bin/env python3
"""Regenerate the committed parity fixtures of tests/policy/fixtures/.

    /usr/bin/python3 training/make_fixtures.py [--out tests/policy/fixtures]

Deterministic (fixed seeds). Two tiny random checkpoints of different shapes: an F32 one with
one camera and a BF16 one with two cameras, plus their inputs and the twin's outputs; and a
views fixture: a model seeing two robot cameras now and in the past (three views), with a
stream of frames and the twin's actions at ticks before and after the oldest view exists; a
stacked views fixture (four views fused in pairs, frame_stack 2: MODEL.md 6.1); and two quantised checkpoints (MODEL.md 1.1: Q4 with AWQ scales, Q8 without; QFIXTURES)."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from vlad_twin.config import VladConfig  # noqa: E402
from vlad_twin.fixtures import make_fixture, make_views_fixture  # noqa: E402

FIXTURES = [
    ("tiny_f32_1cam", "F32", 11, VladConfig(
        image_size=16, patch_size=4, n_cameras=1, vit_width=32, vit_depth=2, vit_heads=2,
        vit_mlp=64, width=32, depth=2, n_heads=2, head_dim=16, mlp=64, expert_width=24,
        expert_mlp=48, max_prompt_tokens=12, max_text_tokens=12, state_dim=3, action_dim=2,
        chunk_size=5, flow_steps=4)),
    ("tiny_bf16_2cam", "BF16", 22, VladConfig(
        image_size=12, patch_size=4, n_cameras=2, vit_width=24, vit_depth=2, vit_heads=3,
        vit_mlp=48, width=40, depth=3, n_heads=4, head_dim=8, mlp=80, expert_width=20,
        expert_mlp=40, max_prompt_tokens=10, max_text_tokens=10, state_dim=5, action_dim=3,
        chunk_size=4, flow_steps=3, rope_theta=500.0, norm_eps=1e-5)),
]


# Quantised fixtures (MODEL.md 1.1): a Q4 one with AWQ scales (calibrated on random frames,
# group 32) and a Q8 one without (RTN, group 64, so the matrices with 32 inputs stay F32).
QFIXTURES = [
    ("tiny_q4_awq", 44, dict(bits=4, group=32, method="awq"), VladConfig(
        image_size=8, patch_size=4, n_cameras=1, vit_width=32, vit_depth=1, vit_heads=2,
        vit_mlp=96, width=32, depth=2, n_heads=2, head_dim=16, mlp=64, expert_width=32,
        expert_mlp=64, max_prompt_tokens=8, max_text_tokens=8, state_dim=3, action_dim=2,
        chunk_size=3, flow_steps=3)),
    ("tiny_q8_rtn", 55, dict(bits=8, group=64, method="rtn"), VladConfig(
        image_size=8, patch_size=4, n_cameras=1, vit_width=32, vit_depth=1, vit_heads=2,
        vit_mlp=64, width=32, depth=1, n_heads=2, head_dim=16, mlp=64, expert_width=32,
        expert_mlp=64, max_prompt_tokens=8, max_text_tokens=8, state_dim=3, action_dim=2,
        chunk_size=3, flow_steps=2)),
]


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "policy", "fixtures"))
    a = ap.parse_args()
    for name, dt, seed, cfg in FIXTURES:
        r = make_fixture(cfg, a.out, name, seed, dt, min_text=6, min_distinct=3)
        print(f"{name}: S={r['S']} text={r['text']!r} end={r['end']}")
    from quantize import quantize_file  # noqa: E402
    for name, seed, q, cfg in QFIXTURES:
        def post(path, q=q):
            quantize_file(path, path, q["bits"], q["group"], q["method"], "random", frames=2,
                          seed=seed, rows=64, verbose=False)
        r = make_fixture(cfg, a.out, name, seed, "F32", min_text=4, min_distinct=2,
                         post_save=post)
        print(f"{name}: S={r['S']} text={r['text']!r} end={r['end']}")
    views = [(0, 0), (0, 3), (1, 1)]
    make_views_fixture(VladConfig(
        image_size=8, patch_size=4, n_cameras=len(views), vit_width=16, vit_depth=1, vit_heads=2,
        vit_mlp=32, width=24, depth=2, n_heads=2, head_dim=8, mlp=48, expert_width=16,
        expert_mlp=32, max_prompt_tokens=16, max_text_tokens=8, state_dim=3, action_dim=3,
        chunk_size=4, flow_steps=3), a.out, "views_3of2cam", 33, views, n_robot_cameras=2, T=9,
        ticks=[0, 1, 2, 5, 8])
    print("views_3of2cam: views", views)
    stack = [(0, 0), (0, 3), (1, 0), (1, 2)]  # fused in pairs: each camera now and before
    make_views_fixture(VladConfig(
        image_size=8, patch_size=4, n_cameras=len(stack), vit_width=16, vit_depth=1, vit_heads=2,
        vit_mlp=32, width=24, depth=2, n_heads=2, head_dim=8, mlp=48, expert_width=16,
        expert_mlp=32, max_prompt_tokens=16, max_text_tokens=8, state_dim=3, action_dim=3,
        chunk_size=4, flow_steps=3, frame_stack=2), a.out, "stack_4of2cam", 34, stack,
        n_robot_cameras=2, T=9, ticks=[0, 1, 2, 5, 8])
    print("stack_4of2cam: views", stack, "frame_stack 2")


if __name__ == "__main__":
    main()
