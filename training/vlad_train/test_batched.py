"""The batched training forward equals the one-sample twin (MODEL.md) per sample.

    cd training && /usr/bin/python3 -m vlad_train.test_batched
"""
from __future__ import annotations

import sys

import numpy as np
import torch

from vlad_twin.config import SEP, VladConfig
from vlad_twin.model import VladModel, init_random, time_embedding as twin_temb

from . import batched


def check_frame_stack() -> float:
    """Views fused in pairs (frame_stack 2): the batched prefix equals the twin's, and a
    frame_stack 1 model widened by train.widen_frame_stack gives the old model's prefix on the
    first view of each pair, whatever the second holds. Returns the worst difference."""
    import dataclasses
    from .train import widen_frame_stack
    c1 = VladConfig(image_size=16, patch_size=8, n_cameras=2, vit_width=32, vit_depth=1, vit_heads=2,
                    vit_mlp=64, width=32, depth=2, n_heads=2, head_dim=16, mlp=64, expert_width=24,
                    expert_mlp=48, max_prompt_tokens=12, max_text_tokens=8, state_dim=3,
                    action_dim=3, chunk_size=5, flow_steps=3)
    c2 = dataclasses.replace(c1, n_cameras=4, frame_stack=2).validate()
    assert c2.n_image_tokens == 2 * c2.n_patches and c2.patch_dim == 2 * 3 * 64
    m1 = init_random(VladModel(c1), 5).float().eval()
    m2 = VladModel(c2).float().eval()
    m2.load_state_dict(widen_frame_stack(m1.state_dict(), c1, c2), strict=True)
    now = torch.randint(0, 256, (2, 2, 16, 16, 3), dtype=torch.uint8)
    old = torch.randint(0, 256, (2, 2, 16, 16, 3), dtype=torch.uint8)
    fused = torch.stack([now[:, 0], old[:, 0], now[:, 1], old[:, 1]], 1)
    worst = 0.0
    with torch.no_grad():
        kv, valid, S = batched.encode_prefix(m2, fused, [b"go", b"touch red"])
        for b in range(2):
            p = [b"go", b"touch red"][b]
            kv1, S1 = m1.encode_prefix(now[b:b + 1], p)
            kv2, S2 = m2.encode_prefix(fused[b:b + 1], p)
            assert S1 == S2 == c2.n_image_tokens + 1 + len(p)
            for (k1, v1), (k2, v2), (kb, vb) in zip(kv1, kv2, kv):
                worst = max(worst, float((k1 - k2).abs().max()), float((v1 - v2).abs().max()),
                            float((kb[b, :S2] - k2[0]).abs().max()))
        # the second view of a pair reaches the tokens once its weights are not zero
        before, _ = m2.encode_prefix(fused[:1], b"go")
        m2.vision.patch_embed.weight.data[:, 3 * 64:] += 0.05
        after, _ = m2.encode_prefix(fused[:1], b"go")
        assert float((after[0][0] - before[0][0]).abs().max()) > 1e-3
    try:
        widen_frame_stack(m2.state_dict(), c2, dataclasses.replace(c2, frame_stack=4))
        raise AssertionError("widening a frame_stack 2 model was accepted")
    except ValueError:
        pass
    print(f"frame_stack 2: batched and widened prefixes vs twin, max abs difference {worst:.2e}")
    return max(worst, check_stack_diff())


def check_stack_diff() -> float:
    """train.StackDiffEmbed (--stack-diff): the same function as the linear layer it wraps,
    exported back unchanged; with zero_old the older frames do not reach the output; its
    difference weights get no gradient from a still patch. Returns the worst difference."""
    from .train import StackDiffEmbed
    torch.manual_seed(3)
    lin = torch.nn.Linear(3 * 6, 5)
    x = torch.randn(4, 7, 3 * 6)
    worst = 0.0
    for scale in (1.0, 2.5):
        m = StackDiffEmbed.from_linear(lin, 3, scale, zero_old=False)
        with torch.no_grad():
            worst = max(worst, float((m(x) - lin(x)).abs().max()),
                        float((m.to_linear().weight - lin.weight).abs().max()),
                        float((m.to_linear()(x) - lin(x)).abs().max()))
    z = StackDiffEmbed.from_linear(lin, 3, 2.0, zero_old=True)
    x2 = x.clone()
    x2[..., 6:] = torch.randn(4, 7, 12)
    with torch.no_grad():
        assert float((z(x) - z(x2)).abs().max()) == 0.0
        assert float((z.weight()[:, :6] - lin.weight[:, :6]).abs().max()) < 1e-6
    still = x[..., :6].repeat(1, 1, 3)   # every older frame equals the current one
    z(still).square().sum().backward()
    assert float(z.a_diff.grad.abs().max()) == 0.0 and float(z.a_now.grad.abs().max()) > 0
    for bad in ((1, 1.0), (4, 1.0), (3, 0.0)):  # one frame, 18 not in 4 parts, no scale
        try:
            StackDiffEmbed.from_linear(torch.nn.Linear(18, 5), *bad, zero_old=True)
            raise AssertionError(f"--stack-diff accepted {bad}")
        except ValueError:
            pass
    StackDiffEmbed.from_linear(torch.nn.Linear(18, 5), 2, 1.0, zero_old=True)  # 2 frames of 9
    print(f"stack-diff embedding vs the linear layer: max abs difference {worst:.2e}")
    return worst


def main() -> int:
    torch.manual_seed(0)
    c = VladConfig(image_size=16, patch_size=8, n_cameras=2, vit_width=32, vit_depth=1, vit_heads=2,
                   vit_mlp=64, width=32, depth=2, n_heads=2, head_dim=16, mlp=64, expert_width=24,
                   expert_mlp=48, max_prompt_tokens=12, max_text_tokens=8, state_dim=3, action_dim=3,
                   chunk_size=5, flow_steps=3)
    m = init_random(VladModel(c), 3).float().eval()
    B = 3
    images = torch.randint(0, 256, (B, 2, 16, 16, 3), dtype=torch.uint8)
    prompts = [b"touch red", b"", b"a much longer prompt text"]
    state = torch.randn(B, 3)
    x_t = torch.randn(B, 5, 3)
    t = torch.tensor([0.9, 0.3, 0.55])
    pairs = [(b"colour?", b"red"), (b"", b"reach"), (b"where", b"left")]
    worst = 0.0
    with torch.no_grad():
        kv, valid, S = batched.encode_prefix(m, images, prompts)
        s_n = (state - m.norm.state.mean) / m.norm.state.std
        v = batched.velocity(m, kv, valid, S, s_n, x_t, t)
        tok, _ = batched.stream_tokens(c, pairs)
        lg = batched.lang_logits(m, kv, valid, S, tok)
        for b in range(B):
            kv1, S1 = m.encode_prefix(images[b:b + 1], prompts[b])
            assert S1 == int(S[b]), (S1, S[b])
            for L in range(c.depth):
                for j in range(2):
                    worst = max(worst, float((kv1[L][j][0] - kv[L][j][b, :S1]).abs().max()))
            st = m.state_token(state[b:b + 1])
            v1 = m.velocity(kv1, S1, st, x_t[b:b + 1], float(t[b]))
            worst = max(worst, float((v1[0] - v[b]).abs().max()))
            q, a = pairs[b]
            seq = [SEP] + list(q) + [SEP] + list(a)
            lg1 = m.lang_logits(kv1, S1, seq)
            worst = max(worst, float((lg1 - lg[b, len(seq) - 1]).abs().max()))
        # the state token's hidden state (auxiliary heads) sees the prefix and the state only
        v2, h2 = batched.velocity(m, kv, valid, S, s_n, x_t, t, state_after=0)
        _, h3 = batched.velocity(m, kv, valid, S, s_n, torch.randn_like(x_t), t * 0.5, state_after=0)
        worst = max(worst, float((v2 - v).abs().max()), float((h2 - h3).abs().max()))
        assert h2.shape == (B, c.expert_width)
        # attention probes (training-only supervision) leave the forward unchanged and give
        # normalised log weights, -inf exactly on the keys a row may not see
        pb, pe = {"layer": 1, "head": 1}, {"layer": 0, "head": 0}
        kvp, _, _ = batched.encode_prefix(m, images, prompts, probe=pb)
        vp = batched.velocity(m, kvp, valid, S, s_n, x_t, t, probe=pe)
        worst = max(worst, float((vp - v).abs().max()),
                    max(float((kvp[L][j] - kv[L][j]).abs().max()) for L in range(c.depth) for j in range(2)))
        S_max, H = valid.shape[1], c.chunk_size
        assert pb["logp"].shape == (B, S_max, S_max) and pe["logp"].shape == (B, H + 1, S_max + H + 1)
        for b in range(B):
            n = int(S[b])
            lb, le = pb["logp"][b, :n], pe["logp"][b]
            worst = max(worst, float(torch.logsumexp(lb, -1).abs().max()),
                        float(torch.logsumexp(le, -1).abs().max()))
            assert torch.isinf(lb[:, n:]).all() and torch.isfinite(lb[:, :n]).all()
            assert torch.isinf(le[:, n:S_max]).all() and torch.isfinite(le[:, :n]).all()
            assert torch.isinf(le[0, S_max + 1:]).all() and torch.isfinite(le[1:, S_max:]).all()
    # the supervised colour word: its first byte's prefix position, and the patches of its colour
    from .train import named_colour
    img = np.zeros((2, 2, 16, 16, 3), np.uint8) + 128
    img[0, 0, 8:16, 0:8] = (220, 30, 30)  # a red block in patch 2 of camera 0
    img[0, 1, 0:8, 8:16] = (220, 30, 30)  # and, in the older view, in patch 1
    named = named_colour(c, [b"touch the red ball", b"wave"], img)
    pos, ok, frac, xy = named["word_pos"], named["ok"], named["frac"], named["xy"]
    assert ok.tolist() == [True, False] and int(pos[0]) == 2 * 4 + 1 + 10, (ok, pos)
    assert frac[0, 0].tolist() == [0.0, 0.0, 1.0, 0.0] and frac[0, 1].tolist() == [0.0, 1.0, 0.0, 0.0], frac
    assert np.allclose(xy[0, 0], [3.5 / 15 * 2 - 1, 11.5 / 15 * 2 - 1]) and (xy[1] == 0).all(), xy
    assert np.allclose(xy[0, 1], [11.5 / 15 * 2 - 1, 3.5 / 15 * 2 - 1]), xy
    # the motion loss: zero-weight samples skipped; a head that predicts the move exactly and
    # an attention row that is all on the old view's red patch leave only -log(1) = 0
    from .train import MOTION_SCALE, motion_loss
    S_max = pb["hidden"].shape[1]
    probe = {"hidden": torch.zeros(2, S_max, c.width), "logp2": torch.full((2, S_max, S_max), -1e9)}
    probe["logp2"][0, int(pos[0]), 4 + 1] = 0.0   # view 1 starts at patch 4; its patch 1
    move = torch.from_numpy((xy[0, 0] - xy[0, 1]) * MOTION_SCALE)
    head = lambda h: move.expand(h.shape[0], 2)  # noqa: E731
    assert float(motion_loss(c, named, probe, head, 10.0)) == 0.0
    assert float(motion_loss(c, named, probe, lambda h: torch.zeros(h.shape[0], 2), 1.0)) == float((move ** 2).sum())
    assert pb["hidden"].shape == (B, S_max, c.width)
    te = batched.time_embedding(torch.tensor([0.25]), 24, 2)[0]
    worst = max(worst, float((te - twin_temb(0.25, 24, 2, torch.float32)).abs().max()))
    worst = max(worst, check_frame_stack())
    # one episode's views (quantize.py, grounding.py): lag L is frame max(k - L, 0)
    from .data import frame_views
    ep = np.arange(5 * 2 * 2 * 2 * 3).reshape(5, 2, 2, 2, 3)
    for k, want in ((1, (1, 0)), (3, (3, 1)), (0, (0, 0))):
        v = frame_views(ep, k, [(0, 0), (1, 2)])
        assert v.shape == (2, 2, 2, 3) and (v[0] == ep[want[0], 0]).all() and (v[1] == ep[want[1], 1]).all(), k
    print(f"batched vs twin: max abs difference {worst:.2e}")
    return 0 if worst < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
