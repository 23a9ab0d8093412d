"""DSTformer, the MotionBERT 2D-to-3D lifting backbone, in plain torch.

Written from the MotionBERT paper (Zhu et al., ICCV 2023) and the published checkpoint layout
(``shared/reference/motionbert/keys_*.json``); the module and parameter names are chosen so that an official
checkpoint (``{'model_pos': state_dict}``, keys prefixed ``module.``) loads with ``strict=True`` once the
prefix is stripped (see :mod:`export.motionbert.convert`).

Architecture, for an input ``x`` of shape ``[B, T, J, 3]`` (x, y, confidence per joint):

* every joint is embedded with one linear layer to ``dim_feat`` channels, then a learned spatial (per joint)
  and temporal (per frame, the first ``T`` of ``maxlen`` rows) positional embedding is added;
* ``depth`` dual-stream stages. Each stage runs two branches on the same input: ``blocks_st`` (spatial
  transformer layer, then temporal) and ``blocks_ts`` (temporal, then spatial). A transformer layer is the
  usual pre-norm ``x + attn(norm(x))``, ``x + mlp(norm(x))``; spatial attention mixes the joints of one frame,
  temporal attention mixes the frames of one joint (non-causal, over the whole clip). The two branch outputs
  are fused per joint and frame with weights ``softmax(ts_attn(concat(st, ts)))`` (a linear layer to two
  logits);
* final LayerNorm, "pre-logits" ``Tanh(Linear(dim_feat -> dim_rep))`` (the motion representation), and a
  linear head to ``dim_out`` (3D) per joint.

LayerNorm eps is 1e-6 everywhere, the qkv projections have biases, GELU is the exact (erf) form; dropout and
drop-path are not implemented because the released models use none at inference.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import torch
from torch import Tensor, nn

__all__ = [
    "FULL",
    "LITE",
    "PRESETS",
    "TINY",
    "DSTformer",
    "DSTformerConfig",
    "randomize_",
]

LN_EPS = 1e-6


@dataclass(frozen=True)
class DSTformerConfig:
    """Hyper-parameters of a DSTformer (names as in the official configs)."""

    dim_in: int = 3
    dim_out: int = 3
    dim_feat: int = 512
    dim_rep: int = 512
    depth: int = 5
    num_heads: int = 8
    mlp_ratio: float = 2.0
    num_joints: int = 17
    maxlen: int = 243
    qk_scale: float | None = None

    def __post_init__(self) -> None:
        if self.dim_feat % self.num_heads:
            raise ValueError(f"dim_feat {self.dim_feat} is not divisible by num_heads {self.num_heads}")
        for name in (
            "dim_in",
            "dim_out",
            "dim_feat",
            "dim_rep",
            "depth",
            "num_heads",
            "num_joints",
            "maxlen",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DSTformerConfig:
        """Build from a mapping such as ``tiny_config.json`` or the ``hyperparameters`` entry of
        ``keys_*.json``. Unknown keys are ignored; settings this port does not implement are rejected."""
        if "hyperparameters" in data and isinstance(data["hyperparameters"], dict):
            data = data["hyperparameters"]
        if not data.get("att_fuse", True):
            raise ValueError("att_fuse=False (plain averaging of the two streams) is not supported")
        if not data.get("qkv_bias", True):
            raise ValueError("qkv_bias=False is not supported")
        eps = data.get("layernorm_eps", LN_EPS)
        if not math.isclose(float(eps), LN_EPS):
            raise ValueError(f"layernorm_eps {eps} is not supported (MotionBERT uses {LN_EPS})")
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FULL = DSTformerConfig(dim_feat=512, dim_rep=512, depth=5, num_heads=8, mlp_ratio=2, maxlen=243)
LITE = DSTformerConfig(dim_feat=256, dim_rep=512, depth=5, num_heads=8, mlp_ratio=4, maxlen=243)
TINY = DSTformerConfig(dim_feat=32, dim_rep=64, depth=2, num_heads=4, mlp_ratio=2, maxlen=27)
PRESETS: dict[str, DSTformerConfig] = {"full": FULL, "lite": LITE, "tiny": TINY}


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head self-attention over the joints of a frame (``spatial``) or the frames of a joint
    (``temporal``). Input and output are ``[B*T, J, C]`` (frame-major), as everywhere in the trunk."""

    def __init__(
        self, dim: int, num_heads: int, mode: Literal["spatial", "temporal"], qk_scale: float | None
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = qk_scale if qk_scale is not None else self.head_dim**-0.5
        self.mode = mode
        # Registration order (proj before qkv) follows the checkpoint's key order.
        self.proj = nn.Linear(dim, dim)
        self.qkv = nn.Linear(dim, dim * 3, bias=True)

    def forward(self, x: Tensor, seqlen: int) -> Tensor:
        bt, j, c = x.shape
        h, d = self.num_heads, self.head_dim
        if self.mode == "spatial":
            # [BT, J, 3, H, d] -> [3, BT, H, J, d]
            qkv = self.qkv(x).reshape(bt, j, 3, h, d).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
            out = (attn @ v).transpose(1, 2).reshape(bt, j, c)
        else:
            # [B, T, J, 3, H, d] -> [3, B, H, J, T, d]
            qkv = self.qkv(x).reshape(-1, seqlen, j, 3, h, d).permute(3, 0, 4, 2, 1, 5)
            q, k, v = qkv[0], qkv[1], qkv[2]
            attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
            # [B, H, J, T, d] -> [B, T, J, H, d] -> [BT, J, C]
            out = (attn @ v).permute(0, 3, 2, 1, 4).reshape(bt, j, c)
        return self.proj(out)


class Block(nn.Module):
    """One stream of a stage: spatial then temporal layer (``order="st"``) or the reverse (``"ts"``)."""

    def __init__(self, cfg: DSTformerConfig, order: Literal["st", "ts"]) -> None:
        super().__init__()
        dim = cfg.dim_feat
        hidden = int(dim * cfg.mlp_ratio)
        self.order = order
        self.norm1_s = nn.LayerNorm(dim, eps=LN_EPS)
        self.norm1_t = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn_s = Attention(dim, cfg.num_heads, "spatial", cfg.qk_scale)
        self.attn_t = Attention(dim, cfg.num_heads, "temporal", cfg.qk_scale)
        self.norm2_s = nn.LayerNorm(dim, eps=LN_EPS)
        self.norm2_t = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp_s = Mlp(dim, hidden)
        self.mlp_t = Mlp(dim, hidden)

    def _spatial(self, x: Tensor, seqlen: int) -> Tensor:
        x = x + self.attn_s(self.norm1_s(x), seqlen)
        return x + self.mlp_s(self.norm2_s(x))

    def _temporal(self, x: Tensor, seqlen: int) -> Tensor:
        x = x + self.attn_t(self.norm1_t(x), seqlen)
        return x + self.mlp_t(self.norm2_t(x))

    def forward(self, x: Tensor, seqlen: int) -> Tensor:
        if self.order == "st":
            return self._temporal(self._spatial(x, seqlen), seqlen)
        return self._spatial(self._temporal(x, seqlen), seqlen)


class DSTformer(nn.Module):
    """Dual-stream spatio-temporal transformer: ``[B, T, J, dim_in]`` -> ``[B, T, J, dim_out]``
    (or ``[B, T, J, dim_rep]`` with ``return_rep=True``). ``T`` may be anything from 1 to ``maxlen``."""

    def __init__(self, cfg: DSTformerConfig = FULL) -> None:
        super().__init__()
        self.cfg = cfg
        # Parameters owned directly by the module come first in the state dict, as in the checkpoints.
        self.temp_embed = nn.Parameter(torch.zeros(1, cfg.maxlen, 1, cfg.dim_feat))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_joints, cfg.dim_feat))
        self.joints_embed = nn.Linear(cfg.dim_in, cfg.dim_feat)
        self.blocks_st = nn.ModuleList([Block(cfg, "st") for _ in range(cfg.depth)])
        self.blocks_ts = nn.ModuleList([Block(cfg, "ts") for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(cfg.dim_feat, eps=LN_EPS)
        self.pre_logits = nn.Sequential(
            OrderedDict([("fc", nn.Linear(cfg.dim_feat, cfg.dim_rep)), ("act", nn.Tanh())])
        )
        self.head = nn.Linear(cfg.dim_rep, cfg.dim_out)
        self.ts_attn = nn.ModuleList([nn.Linear(2 * cfg.dim_feat, 2) for _ in range(cfg.depth)])
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Training-time initialisation (truncated normal 0.02 for linears and embeddings, zero biases,
        unit LayerNorms; fusion layers at weight 0 / bias 0.5, i.e. an even mix of the two streams)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.temp_embed, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for fuse in self.ts_attn:
            assert isinstance(fuse, nn.Linear)
            nn.init.zeros_(fuse.weight)
            nn.init.constant_(fuse.bias, 0.5)

    def forward(self, x: Tensor, return_rep: bool = False) -> Tensor:
        b, t, j, cin = x.shape
        if not torch.jit.is_tracing() and not 1 <= t <= self.cfg.maxlen:
            raise ValueError(f"clip length {t} is outside [1, maxlen={self.cfg.maxlen}]")
        dim = self.cfg.dim_feat
        h = self.joints_embed(x.reshape(b * t, j, cin)) + self.pos_embed
        # temporal embedding: first T rows of [1, maxlen, 1, C]
        h = (h.reshape(b, t, j, dim) + self.temp_embed[:, :t]).reshape(b * t, j, dim)
        for blk_st, blk_ts, fuse in zip(self.blocks_st, self.blocks_ts, self.ts_attn, strict=True):
            h_st = blk_st(h, t)
            h_ts = blk_ts(h, t)
            alpha = fuse(torch.cat([h_st, h_ts], dim=-1)).softmax(dim=-1)
            h = h_st * alpha[..., 0:1] + h_ts * alpha[..., 1:2]
        h = self.norm(h).reshape(b, t, j, dim)
        rep = self.pre_logits(h)
        if return_rep:
            return rep
        return self.head(rep)


@torch.no_grad()
def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Re-draw every parameter at O(1) scale, in place (for tests and plumbing checks with random weights).

    The training initialisation gives near-constant outputs (~1e-3) and an exact 50/50 stream fusion, which
    would hide most porting mistakes. Here: LayerNorm weights ``1 + 0.2 N(0,1)``, 2-D linear weights
    ``N(0,1)/sqrt(fan_in)``, embeddings ``0.5 N(0,1)``, every other (1-D) parameter ``0.2 N(0,1)``.
    """
    gen = torch.Generator().manual_seed(seed)
    layer_norm_weights = {
        id(m.weight) for m in model.modules() if isinstance(m, nn.LayerNorm) and m.weight is not None
    }
    for name, p in model.named_parameters():
        if id(p) in layer_norm_weights:
            p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
        elif name.endswith(("temp_embed", "pos_embed")):
            p.copy_(0.5 * torch.randn(p.shape, generator=gen))
        elif p.ndim == 2:
            p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))
        else:
            p.copy_(0.2 * torch.randn(p.shape, generator=gen))
    return model
