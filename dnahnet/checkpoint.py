"""Load a trained model from a run's Lightning checkpoint, without Lightning.

A checkpoint written by `dnahnet.lit.LitLM` holds `hyper_parameters = {"family", "model_config", ...}`
and the model's weights under the `model.` prefix of `state_dict`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dnahnet.registry import build_model_from_config, config_from_dict


def load_model(path: str | Path, map_location: str | torch.device = "cpu"):
    """The model stored in a checkpoint (or a run directory: its checkpoints/last.ckpt), in eval mode."""
    path = Path(path)
    if path.is_dir():
        candidates = [path / "checkpoints" / "last.ckpt", path / "last.ckpt"]
        found = [c for c in candidates if c.exists()]
        if not found:
            raise FileNotFoundError(f"{path}: no checkpoints/last.ckpt in this run directory")
        path = found[0]
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    ckpt = torch.load(path, map_location=map_location, weights_only=False)
    hparams = ckpt.get("hyper_parameters") or {}
    if "family" not in hparams or "model_config" not in hparams:
        raise ValueError(f"{path}: not a dnaHNet checkpoint (hyper_parameters lack family/model_config)")
    model = build_model_from_config(hparams["family"], config_from_dict(hparams["family"], hparams["model_config"]))
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(state)
    return model.to(map_location).eval()
