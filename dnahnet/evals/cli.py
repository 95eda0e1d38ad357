"""Shared command-line pieces of the evaluations: model selection, scoring options, atomic outputs, resume.

Every evaluation CLI takes either ``--checkpoint CKPT`` (a Lightning checkpoint, a run directory or a folder
exported by ``python -m dnahnet.export``) or
``--family NAME [--preset tiny] [--variant V] [--seed 0]`` for an untrained model (smoke runs), plus
``--device``, ``--batch-size``, ``--precision`` and the scoring options of `dnahnet.evals.scoring`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from dnahnet.checkpoint import CheckpointError, load_model, resolve_device, weights_file
from dnahnet.evals.scoring import Scorer
from dnahnet.evals.trainsplit import training_split_warning
from dnahnet.fileio import atomic_write_text
from dnahnet.registry import build_model

log = logging.getLogger(__name__)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse names the option in its error)."""
    return _bounded_int(text, 1)


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _bounded_int(text, 0)


def _bounded_int(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
    return value


def check_output_dir(path: str | Path, arg: str = "--out", create: bool = True) -> Path:
    """Create the output directory now (ValueError naming it when it is a file, or not writable), so that a
    long evaluation does not fail at its very end. `create=False`: only check that it could be created (a
    command refused later, e.g. for its checkpoint, then leaves nothing behind)."""
    import tempfile

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{arg} {path}: is a file, not a directory")
    if not create and not path.exists():
        parent = next(p for p in path.parents if p.exists())
        if not parent.is_dir():
            raise ValueError(f"{arg} {path}: {parent} is a file, not a directory")
        try:  # a real attempt: os.access says yes for root on a read-only mount
            os.rmdir(tempfile.mkdtemp(dir=parent, prefix=".dnahnet-out-check-"))
        except OSError as exc:
            raise ValueError(f"{arg} {path}: cannot create it ({exc.strerror or exc})") from None
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"{arg} {path}: cannot create it ({exc.strerror or exc})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"{arg} {path}: not writable")
    return path


def run_main(main: Callable, argv: list[str] | None = None) -> int:
    """Run an evaluation's `main` as a command: exit code 0, or 2 with one `error:` line (no traceback)
    for bad input (arguments, files, checkpoints, devices, a model without what the evaluation needs)."""
    try:
        main(argv)
    except SystemExit as exc:  # argparse (already printed) or the evaluation's own `error: ...` exits
        if isinstance(exc.code, str):
            text = exc.code if exc.code.startswith("error:") else f"error: {exc.code}"
            print(text, file=sys.stderr)
            return 2
        return exc.code or 0
    except (CheckpointError, ValueError, KeyError) as exc:
        print(f"error: {str(exc).strip(chr(39))}", file=sys.stderr)
        return 2
    except OSError as exc:  # a missing file, a directory for a file, a read-only or full filesystem
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


def evaluation_parser(module: str, doc: str | None, scoring: bool = True) -> argparse.ArgumentParser:
    """The parser of a zero-shot evaluation command (`python -m dnahnet.evals.<module>`, its docstring as the
    description) with its --out and the model's options (`add_model_args`)."""
    parser = argparse.ArgumentParser(prog=f"python -m dnahnet.evals.{module}", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    add_model_args(parser, scoring)
    return parser


def add_paired_inputs(group, inputs: dict[str, str]) -> None:
    """Input files given once per item (an organism, an assay), in pairs or triples: each flag repeatable and
    required; `inputs` maps each flag to its help. `count_paired` checks that they pair up."""
    for flag, text in inputs.items():
        group.add_argument(flag, action="append", required=True, type=Path, help=text)


def count_paired(args: argparse.Namespace, flags: tuple[str, ...]) -> int:
    """How many items the paired input flags give (`add_paired_inputs`); SystemExit with one `error:` line
    when they are given different numbers of times."""
    counts = [len(getattr(args, flag.lstrip("-").replace("-", "_"))) for flag in flags]
    if len(set(counts)) > 1:
        given = ", ".join(f"{c} {flag}" for c, flag in zip(counts, flags, strict=True))
        raise SystemExit(f"error: give {' and '.join(flags)} together, in pairs ({given})")
    return counts[0]


def parse_evaluation_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """An evaluation command's arguments, with its logging set up at their --log-level."""
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    return args


def add_model_args(parser: argparse.ArgumentParser, scoring: bool = True) -> None:
    """--checkpoint | --family/--preset/--variant/--seed, --device, --batch-size (+ scoring options)."""
    g = parser.add_argument_group("model")
    which = g.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", help="Lightning checkpoint (.ckpt), run directory (its checkpoints/last.ckpt) "
                       "or exported folder (model.safetensors + config.json)")
    which.add_argument("--family", help="build an untrained model of this family instead (smoke runs)")
    g.add_argument("--preset", default="tiny", help="preset of --family (default: tiny)")
    g.add_argument("--variant", default=None, help="variant of --family (e.g. dnaHNet 3,2)")
    g.add_argument("--seed", type=int, default=0, help="seed of the untrained model's initialisation and of sampling")
    g.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1, ...")
    g.add_argument("--batch-size", type=positive_int, default=8, help="sequences per forward pass")
    g.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32", help="autocast dtype")
    if scoring:
        s = parser.add_argument_group("scoring")
        s.add_argument("--max-context", type=positive_int, default=None,
                       help="longest window fed to the model; longer sequences need --stride")
        s.add_argument("--stride", type=positive_int, default=None,
                       help="sliding-window stride for sequences longer than --max-context")
        s.add_argument("--rc-average", action="store_true", help="average the scores of both strands")
    parser.add_argument("--log-level", default="INFO", help="logging level (DEBUG, INFO, WARNING)")


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=getattr(logging, str(level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def model_from_args(args: argparse.Namespace):
    """(model, description) from --checkpoint or --family/--preset/--variant/--seed. Checks --device and
    --out (when the command has one) first: both fail in seconds rather than after the model is loaded."""
    resolve_device(args.device)
    if getattr(args, "out", None) is not None:
        check_output_dir(args.out, create=False)  # created by the first write (a refused command leaves nothing)
    if args.checkpoint:
        path = Path(args.checkpoint)
        model = load_model(path, map_location="cpu")
        warn_if_trained_on_eval_genome(path)
        stat = weights_file(path)
        desc = {"checkpoint": str(path.resolve())}
        if stat.exists():
            desc.update(size=stat.stat().st_size, mtime=stat.stat().st_mtime)
        return model, desc

    torch.manual_seed(args.seed)
    model = build_model(args.family, preset=args.preset, variant=args.variant)
    return model, {"family": args.family, "preset": args.preset, "variant": args.variant, "seed": args.seed,
                   "trained": False}


def warn_if_trained_on_eval_genome(path: str | Path) -> str | None:
    """Warn (one clear line on stderr, and the log) when the model at `path` trained on E. coli K-12, the
    evaluation genome (`dnahnet.evals.trainsplit`); returns the warning."""
    text = training_split_warning(path)
    if text is not None:
        print(f"warning: {text}", file=sys.stderr)
    return text


def scorer_from_args(args: argparse.Namespace) -> tuple[Scorer, dict]:
    model, desc = model_from_args(args)
    scorer = Scorer(
        model, device=args.device, batch_size=args.batch_size, max_context=getattr(args, "max_context", None),
        stride=getattr(args, "stride", None), rc_average=getattr(args, "rc_average", False), precision=args.precision,
    )
    n_params = sum(p.numel() for p in scorer.model.parameters())
    log.info("model: %s (%s parameters) on %s", desc, f"{n_params:,}", scorer.device)
    return scorer, {**desc, "n_params": n_params, "device": str(scorer.device)}


# ------------------------------------------------------------------------------------------------ outputs


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Strict JSON: NaN / inf (an undefined correlation or AUROC) are written as null."""
    text = json.dumps(_finite(obj), indent=2, default=_json_default, allow_nan=False)
    atomic_write_text(path, text + "\n")


def _finite(o):
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if hasattr(o, "item") and getattr(o, "ndim", 1) == 0:
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def atomic_write_csv(path: str | Path, frame) -> None:
    atomic_write_text(path, frame.to_csv(index=False))


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


class ScoreCache:
    """Scores already computed by an interrupted run, so a rerun resumes (DIR/<name>.partial.jsonl).

    The first line holds a fingerprint of everything that changes a score (model, scoring options,
    inputs); a cache with another fingerprint is discarded. Each later line is {"key", "sum_ll", "mean_ll"}.
    The file is removed by `finish()` once the final outputs are written.
    """

    def __init__(self, out_dir: str | Path, name: str, fingerprint: dict):
        self.path = Path(out_dir) / f"{name}.partial.jsonl"
        self.fingerprint = hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()
        self.scores: dict[str, tuple[float, float]] = {}
        if self.path.exists():
            self._load()
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps({"fingerprint": self.fingerprint}) + "\n")

    def _load(self) -> None:
        with open(self.path) as fh:
            lines = fh.read().splitlines()
        try:
            head = json.loads(lines[0]) if lines else {}
        except json.JSONDecodeError:
            head = {}
        if head.get("fingerprint") != self.fingerprint:
            log.info("%s belongs to another run (model/options/inputs differ): starting afresh", self.path)
            self.path.unlink()
            return
        for line in lines[1:]:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a crash
                continue
            self.scores[row["key"]] = (row["sum_ll"], row["mean_ll"])
        log.info("resuming: %d scores already in %s", len(self.scores), self.path)

    def __contains__(self, key: str) -> bool:
        return key in self.scores

    def add(self, keys: Iterable[str], sum_ll: Iterable[float], mean_ll: Iterable[float]) -> None:
        lines = []
        for k, s, m in zip(keys, sum_ll, mean_ll, strict=True):
            self.scores[k] = (float(s), float(m))
            lines.append(json.dumps({"key": k, "sum_ll": float(s), "mean_ll": float(m)}))
        with open(self.path, "a") as fh:
            fh.write("".join(line + "\n" for line in lines))
            fh.flush()
            os.fsync(fh.fileno())

    def finish(self) -> None:
        self.path.unlink(missing_ok=True)


def score_with_cache(scorer: Scorer, items: list[tuple[str, str]], cache: ScoreCache, desc: str,
                     chunk: int = 64) -> None:
    """Score (key, sequence) items not yet in `cache`, `chunk` at a time, with a progress bar."""
    from tqdm.auto import tqdm

    todo = [(k, s) for k, s in items if k not in cache]
    with tqdm(total=len(items), initial=len(items) - len(todo), desc=desc, unit="seq") as bar:
        for i in range(0, len(todo), chunk):
            part = todo[i : i + chunk]
            res = scorer.score([s for _, s in part])
            cache.add([k for k, _ in part], res.sum_ll, res.mean_ll)
            bar.update(len(part))
