"""dnaHNet: tokenizer-free hierarchical DNA language models, baselines, sweeps and evaluations."""

from dnahnet.registry import build_model, get_config, list_families

__all__ = ["build_model", "from_pretrained", "generate", "get_config", "list_families"]


def __getattr__(name: str):
    """`dnahnet.generate`, imported on first use: the submodule holding the sampling function and the CLI, and
    callable as that function (`dnahnet.generate(model, prompt, ...)`). Not imported with the package, so that
    `python -m dnahnet.generate` does not find its module imported already (runpy warns)."""
    if name == "generate":
        import importlib

        return importlib.import_module("dnahnet.generate")
    raise AttributeError(f"module 'dnahnet' has no attribute {name!r}")


def from_pretrained(folder, map_location="cpu"):
    """The model of a folder written by `python -m dnahnet.export` (model.safetensors + config.json), in eval
    mode, read without pickle (`dnahnet.checkpoint.from_pretrained`; imported on use, so that running
    `python -m dnahnet.export` does not find its module imported already)."""
    from dnahnet.checkpoint import from_pretrained as load

    return load(folder, map_location=map_location)
