"""Reading checkpoints safely: the model of a run (without Lightning), resume points, unreadable files.

A checkpoint written by `dnahnet.lit.LitLM` holds `hyper_parameters = {"family", "model_config", ...}`
and the model's weights under the `model.` prefix of `state_dict`. A single-process or DDP run writes one
file (`checkpoints/last.ckpt`); an FSDP2 run writes a directory of the same name: a distributed
checkpoint (`.metadata` + `*.distcp` shards) plus `meta.pt` (everything that is not a tensor).

Why everything here goes through `safe_load`: a full (not weights-only) `torch.load` unpickles arbitrary
objects, so a crafted `.ckpt` runs code the moment it is opened. Our checkpoints hold only tensors and
plain values, so `weights_only=True` loads all of them; anything else is refused, naming the file.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from dnahnet import tokenizer

log = logging.getLogger("dnahnet.checkpoint")

DCP_METADATA = ".metadata"  # torch.distributed.checkpoint's index of the shards
DCP_META_PT = "meta.pt"  # Lightning's non-tensor state of a distributed checkpoint


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file."""


class CheckpointNotFound(CheckpointError, FileNotFoundError):
    """No checkpoint at that path."""


class UnsafeCheckpoint(CheckpointError):
    """A checkpoint holding objects other than tensors and plain values (loading it could run code)."""


class CorruptCheckpoint(CheckpointError):
    """A checkpoint that is truncated, empty or not a checkpoint at all."""


# ------------------------------------------------------------------------------------ safe reading
def safe_load(path: str | os.PathLike, map_location="cpu", mmap: bool = False):
    """`torch.load(path, weights_only=True)`, with errors that name the file and say why.

    Raises UnsafeCheckpoint when the pickle references anything but tensors and plain containers,
    CorruptCheckpoint when the file is truncated or not a torch file."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    if not path.exists():
        raise CheckpointNotFound(f"{path}: checkpoint not found")
    try:
        with warnings.catch_warnings():  # "Detected pickle protocol 4": a crafted file; refused below, not warned
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location=map_location, mmap=mmap, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError,
            IndexError, TypeError, ImportError) as exc:
        # Code first: a file that asks for a global outside the allowlist carries code, whatever else is wrong
        # with it (a crafted file may also be truncated); it is refused and left where it is for inspection.
        code = code_references(path) or _refused_globals(str(exc))
        if code:
            raise UnsafeCheckpoint(
                f"{path}: refused: this file carries code (it asks for {', '.join(code[:3])}), which a checkpoint "
                "of tensors and plain values never holds; it was not loaded, nothing in it ran, and it is left in "
                "place for you to inspect or delete") from None
        detail = "not a torch pickle" if isinstance(exc, pickle.UnpicklingError) else _first_line(exc)
        raise CorruptCheckpoint(f"{path}: unreadable checkpoint, truncated or not a checkpoint ({detail})") from None


# The weights-only unpickler's refusals of a global (torch 2.4 .. 2.13 wordings): a blocked module
# ("Trying to load unsupported GLOBAL posix.system whose module posix is blocked"), a global outside the
# allowlist ("Unsupported global: GLOBAL builtins.eval was not an allowed global by default"), a call or
# construction of something not allowlisted, and the DTensor/NJT classes it only knows by name.
_REFUSED_GLOBAL = [
    re.compile(r"GLOBAL (\S+) whose module \S+ is blocked"),
    re.compile(r"Unsupported global: GLOBAL (\S+)"),
    re.compile(r"Trying to call reduce for unrecognized function (.+?)(?: which belongs|$)", re.M),
    re.compile(r"Can only create new object for nn\.Parameter or classes allowlisted .* but got (.+)$", re.M),
    re.compile(r"Can only build Tensor, Parameter, OrderedDict or types allowlisted .* but got (.+)$", re.M),
    re.compile(r"(``torch\.\w+(?:\.\w+)?``(?: and ``torch\.\w+``)?) must be imported to load"),
]


def _refused_globals(message: str) -> list[str]:
    """The globals a weights-only refusal message names (empty: the message is about something else)."""
    found = []
    for pattern in _REFUSED_GLOBAL:
        found += [m.group(1).strip().strip(".") for m in pattern.finditer(message)]
    return found


# Opcodes that import or call something: what `pickle` would execute. GLOBAL/INST name the global in their
# argument; STACK_GLOBAL takes it from the two strings pushed before it.
_IMPORTING_OPS = {"GLOBAL", "INST", "STACK_GLOBAL"}
_DOTTED = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+")
_CALLING_OPS = {"OBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4"}  # torch's weights-only unpickler supports none
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING", "SHORT_BINSTRING"}


def _python3_name(module: str, name: str = "") -> str:
    """module.name as Python 3 resolves it: protocol-2 pickles spell builtins `__builtin__` (as pickle's
    fix_imports maps them back, so does the allowlist check)."""
    import _compat_pickle

    module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    return f"{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{name}"


# What torch's weights-only unpickler allows by default, as far as a checkpoint of tensors and plain values uses it
# (its own list is private): tensor and storage rebuilding, dtypes and devices, ordered dicts, bytes.
_PLAIN_GLOBALS = {"collections.OrderedDict", "collections.Counter", "builtins.set", "builtins.frozenset",
                  "builtins.bytearray", "builtins.slice", "builtins.complex", "_codecs.encode", "torch.Size",
                  "torch.device", "torch.nn.parameter.Parameter", "torch.serialization._get_layout",
                  "torch._tensor._rebuild_from_type_v2"}


def _allowed_global(name: str) -> bool:
    module, _, attr = name.rpartition(".")
    if name in _PLAIN_GLOBALS or (module == "torch._utils" and attr.startswith("_rebuild_")):
        return True
    if module == "torch" and (attr.endswith("Storage") or isinstance(
            getattr(torch, attr, None), (torch.dtype, torch.layout, torch.memory_format))):
        return True
    user = set()  # what the user allowlisted through torch's public API
    for item in torch.serialization.get_safe_globals():
        obj, spelled = item if isinstance(item, tuple) else (item, None)
        user.add(spelled or f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}")
    return name in user


def code_references(path: str | os.PathLike) -> list[str]:
    """The globals outside torch's weights-only allowlist that the pickle(s) in a checkpoint file import or call,
    read with `pickletools` (which parses opcodes and executes nothing). Empty for our own checkpoints, and for a
    file that is not a pickle at all (then the caller calls it corrupt).

    Independent of torch's error wording, which changes between versions, and of the pickle protocol: a file
    saved with protocol 4 is refused by torch at its first FRAME opcode, before torch sees the global."""
    import pickletools
    import zipfile

    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                blobs = [zf.read(n) for n in zf.namelist() if n.endswith(".pkl")]
        else:  # torch's legacy format (and any raw pickle): consecutive pickles from the start
            blobs = [path.read_bytes()]
    except (OSError, zipfile.BadZipFile, RuntimeError, ValueError, EOFError):
        return []
    def refused(name: str) -> bool:
        return not _allowed_global(name)

    found: list[str] = []
    for blob in blobs:
        stream = io.BytesIO(blob)
        while stream.tell() < len(blob):
            start = stream.tell()
            # A pickle of protocol 2-5 announces itself (PROTO, its first byte); what it names counts even if it is
            # cut short. Anything else (protocol 0/1, or a text or random file, where "import sys" parses as INST)
            # counts only as a complete, well-formed pickle: read to its STOP with names that are names.
            framed = blob[start:start + 1] == b"\x80" and blob[start + 1:start + 2] in (b"\x02", b"\x03", b"\x04",
                                                                                   b"\x05")
            here: list[str] = []
            complete = False
            pushed: list = []  # what recent opcodes pushed (strings, or None for anything else)
            memo: dict = {}
            found_before = found
            found = here
            try:
                for op, arg, _ in pickletools.genops(stream):
                    name = op.name
                    complete = name == "STOP"
                    if name in ("GLOBAL", "INST"):
                        full = _python3_name(*str(arg).split(" ", 1))
                        if not _DOTTED.fullmatch(full):  # not a name: garbage that happens to hold the opcode
                            break
                        if refused(full):
                            found.append(full)
                        pushed.append(None)
                    elif name == "STACK_GLOBAL":
                        mod, attr = (pushed[-2:] if len(pushed) >= 2 else [None, None])
                        full = f"{mod}.{attr}" if isinstance(mod, str) and isinstance(attr, str) else "<hidden global>"
                        if full == "<hidden global>" or refused(full):
                            found.append(full)
                        pushed.append(None)
                    elif name in _CALLING_OPS:
                        found.append(f"<{name} opcode>")
                    elif name in _STRING_OPS:
                        pushed.append(arg.decode("latin-1") if isinstance(arg, bytes) else arg)
                    elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
                        memo[arg] = pushed[-1] if pushed else None
                    elif name == "MEMOIZE":
                        memo[len(memo)] = pushed[-1] if pushed else None
                    elif name in ("BINGET", "LONG_BINGET", "GET"):
                        pushed.append(memo.get(arg))
                    elif name not in ("FRAME", "PROTO", "MARK", "STOP"):
                        pushed.append(None)
                    del pushed[:-4]
            except Exception:  # noqa: BLE001 - not (or no longer) a pickle: what was read so far counts (framed)
                complete = False
            found = found_before
            if framed or complete:
                found += here
            if not complete or stream.tell() <= start:
                break
    return list(dict.fromkeys(found))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


class _MetadataUnpickler(pickle.Unpickler):
    """Unpickles a distributed checkpoint's `.metadata` (torch uses plain `pickle.load`, which would run
    any code a crafted file asks for) allowing only the classes that index holds."""

    _TORCH_NAMES = {"Size", "device", "layout", "memory_format", "strided", "sparse_coo", "contiguous_format",
                    "preserve_format", "channels_last"}

    def find_class(self, module: str, name: str):
        if module == "torch.distributed.checkpoint.metadata" or (module, name) in (
                ("torch.distributed.checkpoint.filesystem", "_StorageInfo"), ("torch.serialization", "_get_layout")):
            return super().find_class(module, name)
        if module == "torch" and (name in self._TORCH_NAMES or isinstance(getattr(torch, name, None), torch.dtype)):
            return super().find_class(module, name)
        if (module, name) in (("collections", "OrderedDict"), ("copyreg", "_reconstructor"),
                              ("builtins", "object"), ("builtins", "set"), ("builtins", "frozenset"),
                              ("pathlib", "PosixPath"), ("pathlib", "PurePosixPath")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"Unsupported global {module}.{name}")


def read_dcp_metadata(directory: str | os.PathLike):
    """The `.metadata` of a distributed checkpoint directory, unpickled with an allowlist."""
    path = Path(directory) / DCP_METADATA
    if not path.is_file():
        raise CorruptCheckpoint(f"{directory}: not a distributed checkpoint (no {DCP_METADATA})")
    try:
        with open(path, "rb") as fh:
            return _MetadataUnpickler(fh).load()
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):
            raise UnsafeCheckpoint(f"{path}: refused: it references {str(exc).split()[-1]}, which a checkpoint "
                                   "index never holds (loading it could run code)") from None
        raise CorruptCheckpoint(f"{path}: unreadable ({_first_line(exc)})") from None
    except (EOFError, OSError, ValueError, AttributeError, ImportError, TypeError, IndexError) as exc:
        raise CorruptCheckpoint(f"{path}: unreadable, truncated or not a checkpoint index ({_first_line(exc)})") \
            from None


def _safe_reader(directory: Path):
    """A FileSystemReader whose metadata goes through `read_dcp_metadata` (shards load weights-only)."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import StorageMeta

    class _SafeReader(FileSystemReader):
        def read_metadata(self, *args, **kwargs):
            metadata = read_dcp_metadata(directory)
            if getattr(metadata, "storage_meta", None) is None:
                metadata.storage_meta = StorageMeta()
            metadata.storage_meta.load_id = self.load_id
            return metadata

    return _SafeReader(str(directory))


def verify(path: str | os.PathLike) -> dict:
    """Read every pickle of a checkpoint (file or distributed directory) safely; returns its non-tensor
    state (a file's whole content, a directory's meta.pt). Raises CheckpointError naming what is wrong.

    Run before handing a checkpoint to Lightning: its distributed-checkpoint loader unpickles `.metadata`
    without restrictions."""
    path = Path(path)
    if path.is_dir():
        read_dcp_metadata(path)
        return safe_load(path / DCP_META_PT, mmap=True)
    return safe_load(path, mmap=True)


def global_step(path: str | os.PathLike) -> int:
    """The global step of a checkpoint (verified safe); raises CheckpointError."""
    state = verify(path)
    if not isinstance(state, dict) or "global_step" not in state:
        raise CorruptCheckpoint(f"{path}: not a Lightning checkpoint (no global_step)")
    return int(state["global_step"])


# ------------------------------------------------------------------------------------ resume points
@dataclass
class ResumePoint:
    path: Path  # the checkpoint to resume from
    step: int  # its global step


def step_of_name(path: Path) -> int | None:
    """N of a periodic checkpoint named `step=N.ckpt` (None for any other name)."""
    name = Path(path).name
    if not (name.startswith("step=") and name.endswith(".ckpt")):
        return None
    digits = name[len("step="):-len(".ckpt")]
    return int(digits) if digits.isdigit() else None


def set_aside(path: Path) -> Path:
    """Move an unreadable checkpoint out of the way (kept for inspection): last.ckpt -> last.corrupt-<t>.ckpt."""
    if path.is_symlink():  # last.ckpt -> step=N.ckpt: the file is what is broken; drop the link
        target = path.resolve()
        path.unlink()
        return set_aside(target) if target.exists() else path
    stem = path.name[: -len(".ckpt")] if path.name.endswith(".ckpt") else path.name
    aside = path.with_name(f"{stem}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.ckpt")
    os.replace(path, aside)
    return aside


def _candidates(run_dir: Path) -> list[Path]:
    """Every checkpoint a run may resume from: its checkpoints/*.ckpt (last.ckpt first) and the hpc_ckpt_*.ckpt
    Lightning saves on a SLURM requeue signal; set-aside files excluded."""
    ckpt_dir = run_dir / "checkpoints"
    found = [ckpt_dir / "last.ckpt"] if (ckpt_dir / "last.ckpt").exists() else []
    if ckpt_dir.is_dir():
        found += sorted(p for p in ckpt_dir.glob("*.ckpt") if p.name != "last.ckpt" and ".corrupt-" not in p.name)
    found += sorted(p for p in run_dir.glob("hpc_ckpt_*.ckpt") if ".corrupt-" not in p.name)
    unique, seen = [], set()
    for p in found:  # last.ckpt usually links to one of the others: read each file once
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def find_resume_point(run_dir: str | os.PathLike, set_aside_corrupt: bool = True) -> ResumePoint | None:
    """The readable checkpoint of `run_dir` with the highest step (None: start over).

    An unreadable (truncated) checkpoint is moved aside as `<name>.corrupt-<time>.ckpt` first, so that
    nothing (Lightning's resume, the CSV logger) trips on it again. A checkpoint that is *unsafe* (it would
    run code) is not a crash artefact: UnsafeCheckpoint propagates and the run is refused."""
    run_dir = Path(run_dir)
    best: ResumePoint | None = None
    for path in _candidates(run_dir):
        if not path.exists():  # a link whose target was set aside just now
            continue
        try:
            step = global_step(path)
        except UnsafeCheckpoint:
            raise
        except CheckpointError as exc:
            if not set_aside_corrupt:
                continue
            aside = set_aside(path)
            log.warning("%s; moved aside to %s", exc, aside.name)
            continue
        if best is None or step > best.step:
            best = ResumePoint(path, step)
    return best


# ------------------------------------------------------------------------------------ the model
def resolve_checkpoint_path(path: str | os.PathLike) -> Path:
    """A checkpoint file or distributed directory; a run directory means its checkpoints/last.ckpt."""
    path = Path(path)
    if path.is_dir() and not (path / DCP_METADATA).exists():
        candidates = [path / "checkpoints" / "last.ckpt", path / "last.ckpt"]
        found = [c for c in candidates if c.exists()]
        if not found:
            raise CheckpointNotFound(f"{path}: a directory without checkpoints/last.ckpt (not a run directory)")
        path = found[0]
    if not path.exists():
        raise CheckpointNotFound(f"{path}: checkpoint not found")
    return path


def _model_from_hparams(path: Path, state: dict):
    from dnahnet.registry import build_model_from_config, config_from_dict

    hparams = state.get("hyper_parameters") if isinstance(state, dict) else None
    if not isinstance(hparams, dict) or "family" not in hparams or "model_config" not in hparams:
        raise CheckpointError(f"{path}: not a dnaHNet checkpoint (hyper_parameters lack family/model_config)")
    try:
        return build_model_from_config(hparams["family"], config_from_dict(hparams["family"], hparams["model_config"]))
    except (ValueError, KeyError, TypeError, RuntimeError, ZeroDivisionError) as exc:  # e.g. a negative width
        raise CheckpointError(f"{path}: its model configuration is invalid ({_first_line(exc)})") from None


def _load_weights(path: Path, model, weights: dict) -> None:
    state = {k[len("model."):]: v for k, v in weights.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # missing/unexpected keys, shape mismatch
        raise CheckpointError(f"{path}: its weights do not match its model configuration "
                              f"({str(exc).strip().splitlines()[0][:200]})") from None


def _dcp_weights(directory: Path, model) -> dict:
    """The model's full (unsharded) weights from a distributed checkpoint, read without a process group:
    a state dict shaped like the model's is filled from the shards."""
    import torch.distributed.checkpoint as dcp

    metadata = read_dcp_metadata(directory)
    stored = set(metadata.state_dict_metadata)
    # Lightning stores the LightningModule's state under "state_dict" -> keys "state_dict.model.<name>"
    # (older versions: "model.<name>"); take whichever this checkpoint uses.
    prefix = next((p for p in ("state_dict.", "") if any(k.startswith(p + "model.") for k in stored)), None)
    if prefix is None:
        raise CheckpointError(f"{directory}: a distributed checkpoint without model weights")
    target = {f"{prefix}model.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    missing = sorted(k for k in target if k not in stored)
    if missing:
        raise CheckpointError(f"{directory}: its weights do not match its model configuration "
                              f"(missing {', '.join(missing[:3])})")
    try:
        with warnings.catch_warnings():  # "torch.distributed is disabled ...": loading in one process is the point
            warnings.simplefilter("ignore", UserWarning)
            dcp.load(target, storage_reader=_safe_reader(directory), no_dist=True)
    except CheckpointError:
        raise
    except Exception as exc:  # shape mismatch, a missing or truncated shard
        raise CheckpointError(f"{directory}: cannot read its shards ({_first_line(exc)})") from None
    return {k[len(prefix):]: v for k, v in target.items()}


# ---------------------------------------------------------------------- exported folders (read side)
# `python -m dnahnet.export` writes them (model.safetensors + config.json); reading them is the loader's.
FORMAT = "dnahnet-export"  # config.json's "format": what wrote the folder
FORMAT_VERSION = 1  # bumped when the layout changes; a newer folder is refused by older code
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def read_config(folder: str | os.PathLike) -> dict:
    """An exported folder's config.json, checked (CheckpointError naming the file)."""
    folder = Path(folder)
    path = folder / CONFIG_FILE
    if not folder.is_dir():
        raise CheckpointNotFound(f"{folder}: not an exported model folder (no such directory)")
    if not path.is_file():
        raise CheckpointNotFound(f"{path}: missing (an exported folder holds {CONFIG_FILE} and {WEIGHTS_FILE})")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise CorruptCheckpoint(f"{path}: unreadable, not JSON ({_first_line(exc)})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a dnaHNet export (format is not {FORMAT!r})")
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {version!r}; this code reads up to {FORMAT_VERSION} "
                                      "(update dnahnet)")
    vocab = (config.get("tokenizer") or {}).get("id_to_token")
    if vocab != list(tokenizer.ID_TO_TOKEN):
        raise CheckpointError(f"{path}: its tokenizer vocabulary {vocab!r} differs from this code's "
                                      f"{list(tokenizer.ID_TO_TOKEN)!r}; its token ids would mean other nucleotides")
    if not isinstance(config.get("family"), str) or not isinstance(config.get("model_config"), dict):
        raise CheckpointError(f"{path}: lacks family or model_config")
    return config


def from_pretrained(folder: str | os.PathLike, map_location: str | torch.device = "cpu") -> torch.nn.Module:
    """The model of an exported folder (model.safetensors + config.json), in eval mode; no pickle is read.
    Raises CheckpointError (a ValueError) naming the missing, corrupt or mismatched file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    from dnahnet.registry import build_model_from_config, config_from_dict

    folder = Path(folder)
    config = read_config(folder)
    try:
        model = build_model_from_config(config["family"], config_from_dict(config["family"], config["model_config"]))
    except (ValueError, KeyError, TypeError, RuntimeError, ZeroDivisionError) as exc:  # e.g. a negative width
        raise CheckpointError(f"{folder / CONFIG_FILE}: its model configuration is invalid "
                                      f"({_first_line(exc)})") from None
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointNotFound(f"{weights}: missing (the exported weights)")
    try:
        load_model(model, str(weights), strict=True)
    except SafetensorError as exc:
        raise CorruptCheckpoint(f"{weights}: unreadable safetensors file, truncated or corrupt "
                                        f"({_first_line(exc)})") from None
    except RuntimeError as exc:  # missing/unexpected keys, shapes that differ from config.json's model
        raise CheckpointError(f"{weights}: its weights do not match {CONFIG_FILE}'s model "
                                      f"({str(exc).strip().splitlines()[0][:200]})") from None
    except (OSError, ValueError) as exc:
        raise CorruptCheckpoint(f"{weights}: unreadable ({_first_line(exc)})") from None
    return model.to(map_location).eval()


@dataclass
class CheckpointModel:
    model: torch.nn.Module  # the trained model, on the CPU, in eval mode
    family: str  # its registry family
    model_config: dict  # its resolved config (every field, as the checkpoint's hyper_parameters hold it)
    path: Path  # the checkpoint file or distributed directory it came from
    global_step: int  # the optimizer steps it was trained for


def is_exported(path: str | os.PathLike) -> bool:
    """A folder written by `python -m dnahnet.export` (config.json + model.safetensors), not a run directory."""
    path = Path(path)
    return path.is_dir() and (path / CONFIG_FILE).is_file() and not (path / "checkpoints").exists() \
        and not (path / DCP_METADATA).exists()


def weights_file(path: str | os.PathLike) -> Path:
    """The file holding the weights `load_model(path)` reads (what a result computed from them depends on)."""
    if is_exported(path):
        return Path(path) / WEIGHTS_FILE
    resolved = resolve_checkpoint_path(path)
    return resolved.resolve() / DCP_META_PT if resolved.is_dir() else resolved.resolve()


def load_checkpoint_model(path: str | os.PathLike) -> CheckpointModel:
    """The model of a Lightning checkpoint file, an FSDP2 checkpoint directory or a run directory (its
    checkpoints/last.ckpt), with its family and config. Weights-only reading; CheckpointError naming the file."""
    path = resolve_checkpoint_path(path)
    if path.is_dir():
        state = verify(path)
        model = _model_from_hparams(path, state)
        _load_weights(path, model, _dcp_weights(path, model))
    else:
        state = safe_load(path, map_location="cpu")
        model = _model_from_hparams(path, state)
        weights = state.get("state_dict")
        if not isinstance(weights, dict):
            raise CheckpointError(f"{path}: no state_dict in this checkpoint")
        _load_weights(path, model, weights)
    from dnahnet import typed_config as cfglib

    hparams = state["hyper_parameters"]
    return CheckpointModel(model.eval(), hparams["family"], cfglib.to_dict(model.config), path,
                           int(state.get("global_step", 0)))


def load_model(path: str | Path, map_location: str | torch.device = "cpu"):
    """The model stored in a checkpoint file, an FSDP2 checkpoint directory, a run directory (its
    checkpoints/last.ckpt) or an exported folder (`dnahnet.export`: model.safetensors + config.json), in eval
    mode. Every CLI's `--checkpoint` comes here. Raises CheckpointError naming the file."""
    if is_exported(path):
        return from_pretrained(path, map_location=map_location)
    return load_checkpoint_model(path).model.to(map_location).eval()


def resolve_device(text: str | None, arg: str = "--device") -> torch.device:
    """A torch device from a command-line value ("auto", "cpu", "cuda", "cuda:1"), checked to exist."""
    if text is None or text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise ValueError(f"{arg} {text!r}: not a device (use cpu, cuda or cuda:N)") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{arg} {text!r}: unsupported device type (use cpu, cuda or cuda:N)")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{arg} {text}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{arg} {text}: only {torch.cuda.device_count()} CUDA device(s) visible")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{arg} {text}: MPS is not available on this machine")
    return device
