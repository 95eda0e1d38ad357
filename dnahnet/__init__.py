"""dnaHNet: tokenizer-free hierarchical DNA language models, baselines, sweeps and evaluations."""

from dnahnet.registry import build_model, get_config, list_families

__all__ = ["build_model", "from_pretrained", "generate", "get_config", "list_families"]


def __getattr__(name: str):
    """`dnahnet.generate`: the sampling function (`dnahnet.sampling.generate`), imported on first use (torch).
    No submodule is named `generate`, so importing one never replaces the function."""
    if name == "generate":
        from dnahnet.sampling import generate

        return generate
    raise AttributeError(f"module 'dnahnet' has no attribute {name!r}")


def from_pretrained(folder, map_location="cpu"):
    """The model of a folder written by `python -m dnahnet.export` (model.safetensors + config.json), in eval
    mode, read without pickle (`dnahnet.checkpoint.from_pretrained`; imported on use, so that running
    `python -m dnahnet.export` does not find its module imported already)."""
    from dnahnet.checkpoint import from_pretrained as load

    return load(folder, map_location=map_location)
