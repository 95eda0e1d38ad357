"""A crafted checkpoint: one whose unpickling would run code (test helper)."""

from __future__ import annotations

from pathlib import Path

import torch


class CreatesFile:
    """Unpickling this calls open(path, "w"): a stand-in for any code a crafted checkpoint could run."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def crafted_checkpoint(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"global_step": 3, "hyper_parameters": {"family": "transformer", "model_config": {},
                                                       "payload": CreatesFile(marker)}, "state_dict": {}}, path)
    return path
