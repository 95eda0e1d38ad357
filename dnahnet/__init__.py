"""dnaHNet: tokenizer-free hierarchical DNA language models, baselines, sweeps and evaluations."""

from dnahnet.registry import build_model, get_config, list_families

__all__ = ["build_model", "get_config", "list_families", "generate"]


def __getattr__(name):
    if name == "generate":
        from dnahnet.generate import generate

        return generate
    raise AttributeError(name)
