"""Shared test setup: small thread counts (CI has 2 cores), GPU marker handling."""

import pytest
import torch

torch.set_num_threads(1)  # tiny test models: threading overhead dominates on 2 shared cores


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
