"""dnaHNet: tokenizer-free hierarchical DNA language models, baselines, sweeps and evaluations."""

# `dnahnet.generate` is the sampling function (the submodule of the same name holds it and the CLI,
# `python -m dnahnet.generate`); importing it here binds the name to the function, not the module.
from dnahnet.generate import generate  # noqa: E402  (after the registry: generate imports the tokenizer)
from dnahnet.registry import build_model, get_config, list_families

__all__ = ["build_model", "from_pretrained", "generate", "get_config", "list_families"]


def from_pretrained(folder, map_location="cpu"):
    """The model of a folder written by `python -m dnahnet.export` (model.safetensors + config.json), in eval
    mode, read without pickle (`dnahnet.export.from_pretrained`; imported on use, so that running
    `python -m dnahnet.export` does not find its module imported already)."""
    from dnahnet.export import from_pretrained as load

    return load(folder, map_location=map_location)
