"""The learned policy's network and the JSON config that rebuilds it (weights live in safetensors)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from policy.features import FeatureSpace


@dataclass(frozen=True)
class PolicyNetConfig:
    """Everything needed to rebuild the network and read observations the way training did."""

    features: FeatureSpace
    hidden: tuple[int, ...] = (128, 128)
    algorithm: str = "double-dqn"
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"features": self.features.to_dict(), "hidden": list(self.hidden), "algorithm": self.algorithm,
                "meta": self.meta}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PolicyNetConfig:
        return cls(features=FeatureSpace.from_dict(data["features"]), hidden=tuple(int(h) for h in data["hidden"]),
                   algorithm=str(data.get("algorithm", "double-dqn")), meta=dict(data.get("meta", {})))


class QNetwork(nn.Module):
    """An MLP from the feature vector to one Q-value per action of the bot's flows."""

    def __init__(self, config: PolicyNetConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = config.features.dim
        for h in config.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, len(config.features.actions)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def masked(q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Q-values with the forbidden actions at -inf (so argmax/max can never pick them)."""
    return q.masked_fill(~mask, float("-inf"))
