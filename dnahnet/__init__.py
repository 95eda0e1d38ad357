"""dnaHNet: tokenizer-free hierarchical DNA language models, baselines, sweeps and evaluations."""

# `dnahnet.generate` is the sampling function (the submodule of the same name holds it and the CLI,
# `python -m dnahnet.generate`); importing it here binds the name to the function, not the module.
from dnahnet.export import from_pretrained  # an exported folder (model.safetensors + config.json) -> model
from dnahnet.generate import generate  # noqa: E402  (after the registry: generate imports the tokenizer)
from dnahnet.registry import build_model, get_config, list_families

__all__ = ["build_model", "from_pretrained", "generate", "get_config", "list_families"]
