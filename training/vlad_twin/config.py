"""The model configuration of MODEL.md ("vlad.config" in a checkpoint)."""
from __future__ import annotations

import dataclasses
import json
import math

VOCAB_SIZE = 260
BOS, EOS, SEP, PAD = 256, 257, 258, 259

INT_FIELDS = {  # name: (min, max) -- the same ranges as policy/config.c
    "image_size": (1, 4096), "patch_size": (1, 4096), "n_cameras": (1, 16),
    "vit_width": (1, 16384), "vit_depth": (1, 256), "vit_heads": (1, 1024),
    "vit_mlp": (1, 65536), "width": (1, 16384), "depth": (1, 256),
    "n_heads": (1, 1024), "head_dim": (2, 1024), "mlp": (1, 65536),
    "expert_width": (2, 16384), "expert_mlp": (1, 65536), "vocab_size": (260, 260),
    "max_prompt_tokens": (0, 4096), "max_text_tokens": (1, 4096), "state_dim": (1, 4096),
    "action_dim": (1, 4096), "chunk_size": (1, 4096), "flow_steps": (1, 1000),
}
# name: (min, max, default): may be absent (the default), written only when not the default
# (the same rule as policy/config.c's OPT fields)
OPTIONAL_INT_FIELDS = {"frame_stack": (1, 16, 1)}
ALL_INT_FIELDS = {**INT_FIELDS, **{k: v[:2] for k, v in OPTIONAL_INT_FIELDS.items()}}


@dataclasses.dataclass
class VladConfig:
    image_size: int = 64
    patch_size: int = 16
    n_cameras: int = 1
    vit_width: int = 128
    vit_depth: int = 2
    vit_heads: int = 4
    vit_mlp: int = 256
    width: int = 128
    depth: int = 4
    n_heads: int = 4
    head_dim: int = 32
    mlp: int = 384
    expert_width: int = 96
    expert_mlp: int = 256
    vocab_size: int = VOCAB_SIZE
    max_prompt_tokens: int = 32
    max_text_tokens: int = 48
    state_dim: int = 4
    action_dim: int = 4
    chunk_size: int = 26
    flow_steps: int = 5
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6
    frame_stack: int = 1  # image inputs fused into one token set (MODEL.md 6.1), divides n_cameras

    @property
    def n_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def n_groups(self) -> int:
        """Token sets of image inputs: n_cameras / frame_stack."""
        return self.n_cameras // self.frame_stack

    @property
    def n_image_tokens(self) -> int:
        """Prefix rows of the images: n_groups * n_patches."""
        return self.n_groups * self.n_patches

    @property
    def patch_dim(self) -> int:
        """Values per patch token: 3 * patch_size^2 per fused image input."""
        return 3 * self.frame_stack * self.patch_size ** 2

    @property
    def kv_dim(self) -> int:
        return self.n_heads * self.head_dim

    def validate(self) -> "VladConfig":
        for k, (lo, hi) in ALL_INT_FIELDS.items():
            v = getattr(self, k)
            if not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"config field '{k}' = {v} out of range [{lo}, {hi}]")
        if self.image_size % self.patch_size:
            raise ValueError("config field 'patch_size' does not divide image_size")
        if self.n_cameras % self.frame_stack:
            raise ValueError(f"config field 'frame_stack' = {self.frame_stack} does not divide "
                             f"n_cameras {self.n_cameras}")
        if self.vit_width % self.vit_heads:
            raise ValueError("config field 'vit_heads' does not divide vit_width")
        if self.head_dim % 2 or self.expert_width % 2:
            raise ValueError("config fields 'head_dim' and 'expert_width' must be even")
        if not (math.isfinite(self.rope_theta) and 1.0 < self.rope_theta <= 1e9):
            raise ValueError(f"config field 'rope_theta' = {self.rope_theta} out of range")
        if not (math.isfinite(self.norm_eps) and 0.0 < self.norm_eps <= 0.1):
            raise ValueError(f"config field 'norm_eps' = {self.norm_eps} out of range")
        return self

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        for k, (_, _, default) in OPTIONAL_INT_FIELDS.items():
            if d[k] == default:
                del d[k]  # checkpoints that do not use it read as before
        return json.dumps(d, separators=(",", ":"))

    @staticmethod
    def from_json(text: str) -> "VladConfig":
        d = json.loads(text)
        if not isinstance(d, dict):
            raise ValueError("vlad.config: not a JSON object")
        names = {f.name for f in dataclasses.fields(VladConfig)}
        for k in d:
            if k not in names:
                raise ValueError(f"vlad.config: unknown field '{k}'")
        for k in INT_FIELDS:
            if k not in d:
                raise ValueError(f"vlad.config: missing field '{k}'")
        c = VladConfig(**d)
        for k in ALL_INT_FIELDS:
            v = getattr(c, k)
            if isinstance(v, float) and v.is_integer():
                setattr(c, k, int(v))
        c.rope_theta = float(c.rope_theta)
        c.norm_eps = float(c.norm_eps)
        return c.validate()


def default_config() -> VladConfig:
    """The default tiny model (same as vlad_config_default() in policy/config.c)."""
    return VladConfig()


def smolvla_config() -> VladConfig:
    """SmolVLA-scale config of the benchmark (same as vlad_config_smolvla())."""
    return VladConfig(image_size=128, patch_size=16, n_cameras=3, vit_width=768, vit_depth=12,
                      vit_heads=12, vit_mlp=3072, width=960, depth=16, n_heads=15, head_dim=64,
                      mlp=2560, expert_width=720, expert_mlp=2048, max_prompt_tokens=48,
                      max_text_tokens=64, state_dim=6, action_dim=6, chunk_size=50,
                      flow_steps=10)


PRESETS = {"default": default_config, "tiny": default_config, "smolvla": smolvla_config}
