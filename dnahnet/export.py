"""Portable weights: a trained model as `model.safetensors` + `config.json`, loaded back without pickle.

    python -m dnahnet.export --checkpoint runs/tiny-tf --out exported/tiny-tf
    >>> import dnahnet
    >>> model = dnahnet.from_pretrained("exported/tiny-tf")

`--checkpoint` takes a run directory (its checkpoints/last.ckpt), a `.ckpt` file or an FSDP2 checkpoint
directory. `config.json` holds the format version, the family, variant and preset, the resolved model config
(every field) and the tokenizer's vocabulary (id -> token); `model.safetensors` holds the weights (a tied
weight once). `from_pretrained` rebuilds the model from the config and fills it from the safetensors file:
neither file is unpickled, so a folder from anywhere is safe to open. Every command that takes
`--checkpoint` (generation, the evaluations) accepts an exported folder too (`dnahnet.checkpoint.load_model`).

Exit codes: 0 written, 2 refused (one `error:` line naming the file or argument). The folder appears whole
or not at all (written beside it, then renamed); an existing export in --out is replaced, anything else
there is refused.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import sys
from pathlib import Path

from dnahnet import checkpoint as ckptlib
from dnahnet import tokenizer

# The folder's format and reading it back are the loader's (`dnahnet.checkpoint`: every --checkpoint accepts an
# exported folder); this module writes it. The names stay importable from here.
from dnahnet.checkpoint import (  # noqa: F401
    CONFIG_FILE,
    FORMAT,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    from_pretrained,
    read_config,
)


def _run_config(checkpoint_path: Path) -> dict:
    """The run's resolved config.yaml (preset, variant), found beside a checkpoint; {} when there is none."""
    import yaml

    for run_dir in (checkpoint_path, checkpoint_path.parent, checkpoint_path.parent.parent):
        path = run_dir / "config.yaml"
        if path.is_file():
            try:
                data = yaml.safe_load(path.read_text())
            except (yaml.YAMLError, OSError):
                return {}
            return data if isinstance(data, dict) else {}
    return {}


def export(checkpoint: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write `out/model.safetensors` and `out/config.json` for the model of `checkpoint`; returns `out`.
    Raises CheckpointError naming a bad checkpoint, ValueError naming an unusable --out."""
    from safetensors import SafetensorError
    from safetensors.torch import save_model

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not ckptlib.is_exported(out):
        raise ValueError(f"--out {out}: a folder with other files in it (not an exported model); use another --out")
    loaded = ckptlib.load_checkpoint_model(checkpoint)
    run = _run_config(Path(checkpoint))
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "family": loaded.family,
        "variant": run.get("variant"),
        "preset": run.get("preset"),
        "model_config": loaded.model_config,
        "tokenizer": {"id_to_token": list(tokenizer.ID_TO_TOKEN), "vocab_size": tokenizer.VOCAB_SIZE},
        "params": loaded.model.param_counts().total if hasattr(loaded.model, "param_counts") else
        sum(p.numel() for p in loaded.model.parameters()),
        "global_step": loaded.global_step,
        "seq_len": (run.get("data") or {}).get("seq_len"),  # the training context
        # The run's data settings (data directory, inputs, holdout, split seed): which genomes it trained on,
        # so an evaluation can tell whether its genome was in the training split (dnahnet.evals.trainsplit).
        "data": run.get("data"),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        try:
            save_model(loaded.model, str(tmp / WEIGHTS_FILE), metadata={"format": "pt", "family": loaded.family})
        except SafetensorError as exc:  # a full disk or an I/O error, in safetensors' own (Rust) words
            raise OSError(errno.EIO, f"cannot write {WEIGHTS_FILE} ({ckptlib._first_line(exc)})", str(out)) from None
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        if out.exists():  # an earlier export: swap it for the new one, then drop it
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dnahnet.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="run directory, .ckpt file or FSDP2 checkpoint directory")
    parser.add_argument("--out", required=True, help="folder to write model.safetensors and config.json into")
    args = parser.parse_args(argv)
    try:
        out = export(args.checkpoint, args.out)
    except (ValueError, FileNotFoundError) as exc:  # CheckpointError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a read-only or full filesystem (the folder named: its temporary copy is gone)
        print(f"error: --out {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    config = json.loads((out / CONFIG_FILE).read_text())
    print(f"exported {config['family']} ({config['params']:,} parameters, step {config['global_step']}) to {out}: "
          f"{WEIGHTS_FILE}, {CONFIG_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
