"""The value head: V(s) from the last-layer hidden state of the final prompt token.

The paper's reference code puts a 3-layer MLP (hidden -> 1024 -> 512 -> 1, ReLU) on that hidden state;
that is our default (`hidden_dims=(1024, 512)`); `hidden_dims=()` gives a single linear layer. The layer
sizes travel in the safetensors metadata, so a saved head reloads with its own shape. The last layer
starts at zero (V = 0 everywhere before training: no random bias in the first advantages), the others
from a seeded generator, so a fresh head is the same on every machine.
"""

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

VALUE_HEAD_FILE = "value_head.safetensors"
DEFAULT_HIDDEN_DIMS = (1024, 512)


class ValueHead(nn.Module):
    def __init__(self, hidden_size: int, hidden_dims: Sequence[int] = DEFAULT_HIDDEN_DIMS, seed: int = 0):
        super().__init__()
        self.hidden_size, self.hidden_dims = hidden_size, tuple(int(d) for d in hidden_dims)
        dims = [hidden_size, *self.hidden_dims, 1]
        layers: list[nn.Module] = []
        for i in range(len(dims) - 1):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < len(dims) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for layer in self.net:
                if isinstance(layer, nn.Linear):
                    bound = layer.in_features**-0.5  # nn.Linear's default range, from our own generator
                    layer.weight.uniform_(-bound, bound, generator=gen)
                    layer.bias.zero_()
            self.net[-1].weight.zero_()

    def forward(self, hidden: Tensor) -> Tensor:
        """hidden [B, H] (any float dtype) -> values [B] in the head's dtype (fp32 by default)."""
        return self.net(hidden.to(self.net[0].weight.dtype)).squeeze(-1)


def save_value_head(head: ValueHead, path: str | Path) -> None:
    # one metadata key: safetensors writes several in no fixed order, and the file should be reproducible
    meta = {
        "value_head": json.dumps({"hidden_size": head.hidden_size, "hidden_dims": list(head.hidden_dims)})
    }
    state = {k: v.detach().contiguous().cpu() for k, v in head.state_dict().items()}
    save_file(state, str(path), metadata=meta)


def load_value_head(path: str | Path, device: str | torch.device = "cpu") -> ValueHead:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "value_head" not in meta:
        raise ValueError(f"{path}: not a vlmagent value head (no value_head entry in its metadata)")
    try:
        cfg = json.loads(meta["value_head"])
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: its value_head metadata is not valid JSON ({e})") from None
    head = ValueHead(cfg["hidden_size"], cfg["hidden_dims"])
    head.load_state_dict(load_file(str(path)))
    return head.to(device)
