"""Learnable visual prompt tokens (paper §3.1.1, §3.3; VPT).

The encoder input is ``X = [VST, P_1..P_K, V_1..V_S]``: the S prompts are appended AFTER the
patch tokens, after the positional embedding was added to the class and patch tokens (prompts get
no position) and before ``ln_pre``. Initialised uniformly in ``±init_range``; optional dropout on
the prompt tokens during training.
"""

from __future__ import annotations

import torch
from torch import nn


class VisualPrompts(nn.Module):
    """S learnable tokens of size ``width``."""

    def __init__(self, num_prompts: int, width: int, init_range: float = 0.0625, dropout: float = 0.0) -> None:
        super().__init__()
        if num_prompts < 1:
            raise ValueError(f"num_prompts must be >= 1, got {num_prompts}")
        self.num_prompts = int(num_prompts)
        self.tokens = nn.Parameter(torch.empty(num_prompts, width).uniform_(-init_range, init_range))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def append(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1 + K, width) -> (B, 1 + K + S, width) with the prompts last."""
        prompts = self.dropout(self.tokens.to(x.dtype)).unsqueeze(0).expand(x.shape[0], -1, -1)
        return torch.cat([x, prompts], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.append(x)
