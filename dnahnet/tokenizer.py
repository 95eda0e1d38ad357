"""Nucleotide vocabulary: encode/decode, reverse complement.

Ids (shared interface, see CONTRIBUTING.md): ``A=0 C=1 G=2 T=3 N=4 <pad>=5 <bos>=6 <eos>=7``.
Lower case folds to upper case (soft-masked repeats are ordinary sequence); the IUPAC ambiguity
codes ``R Y S W K M B D H V N`` all map to ``N``. Anything else (``U``, gaps ``-``/``.``, ``*``,
digits, whitespace) is an error: a DNA language model should never silently learn from it.

Two paths share one table:
- ``encode``/``decode``/``reverse_complement`` work on torch tensors (model code, tests, evals);
- ``ENCODE_LUT``/``encode_bytes``/``COMPLEMENT_LUT`` are numpy uint8 lookups used by ingestion and
  window sampling, where a whole chromosome is translated in one vectorised gather.
The numpy half is what ingestion and a run's configuration (its genomes' identity) import, so torch is
imported by the tensor functions when they are first called, not by this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

A_ID, C_ID, G_ID, T_ID, N_ID = 0, 1, 2, 3, 4
PAD_ID, BOS_ID, EOS_ID = 5, 6, 7
VOCAB_SIZE = 8

NUCLEOTIDES = "ACGTN"
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>")
ID_TO_TOKEN: tuple[str, ...] = tuple(NUCLEOTIDES) + SPECIAL_TOKENS
IUPAC_AMBIGUOUS = "RYSWKMBDHVN"

INVALID = 255  # marker in ENCODE_LUT for bytes that are not nucleotides


def _build_encode_lut() -> np.ndarray:
    lut = np.full(256, INVALID, dtype=np.uint8)
    for i, base in enumerate("ACGT"):
        lut[ord(base)] = i
        lut[ord(base.lower())] = i
    for code in IUPAC_AMBIGUOUS:
        lut[ord(code)] = N_ID
        lut[ord(code.lower())] = N_ID
    lut.setflags(write=False)
    return lut


ENCODE_LUT: np.ndarray = _build_encode_lut()  # (256,) uint8: ASCII byte -> id, INVALID otherwise

# Complement on ids; N and the special tokens are their own complement.
COMPLEMENT_LUT: np.ndarray = np.array([T_ID, G_ID, C_ID, A_ID, N_ID, PAD_ID, BOS_ID, EOS_ID], np.uint8)
COMPLEMENT_LUT.setflags(write=False)

_DECODE_CHARS = "ACGTN"  # ids >= 5 decode to their bracketed names
_VALID_CHARS = frozenset("ACGTNRYSWKMBDHVacgtnryswkmbdhv")
_DNA_COMPLEMENT_STR = str.maketrans("ACGTNRYSWKMBDHVacgtnryswkmbdhv", "TGCANYRSWMKVHDBtgcanyrswmkvhdb")


def first_invalid(raw: np.ndarray) -> int:
    """Index of the first byte of ``raw`` (uint8) that is not a nucleotide, or -1."""
    bad = np.flatnonzero(ENCODE_LUT[raw] == INVALID)
    return int(bad[0]) if bad.size else -1


def encode_bytes(raw: bytes | np.ndarray) -> np.ndarray:
    """ASCII bytes -> uint8 ids (fast path for ingestion). Raises ValueError on a bad byte."""
    arr = np.frombuffer(raw, dtype=np.uint8) if isinstance(raw, (bytes, bytearray, memoryview)) else raw
    ids = ENCODE_LUT[arr]
    if ids.size and ids.max() == INVALID:
        pos = int(np.flatnonzero(ids == INVALID)[0])
        raise ValueError(f"invalid nucleotide {chr(arr[pos])!r} at index {pos}")
    return ids


def encode(seq: str) -> torch.Tensor:
    """DNA string -> LongTensor (L,) of ids. Lower case folds; IUPAC ambiguity codes -> N."""
    import torch  # heavy: see the module's docstring

    try:
        raw = seq.encode("ascii")
    except UnicodeEncodeError as e:
        raise ValueError(f"invalid nucleotide {seq[e.start]!r} at index {e.start}") from None
    return torch.from_numpy(encode_bytes(raw).astype(np.int64))


def decode(ids: torch.Tensor | np.ndarray | list[int]) -> str:
    """Ids (1-D) -> string; special tokens are written as ``<pad>``, ``<bos>``, ``<eos>``."""
    arr = ids.detach().cpu().numpy() if hasattr(ids, "detach") else np.asarray(ids)  # a tensor, or array-like
    if arr.ndim != 1:
        raise ValueError(f"decode expects a 1-D sequence of ids, got shape {tuple(arr.shape)}")
    if arr.size and (arr.min() < 0 or arr.max() >= VOCAB_SIZE):
        bad = arr[(arr < 0) | (arr >= VOCAB_SIZE)][0]
        raise ValueError(f"id {int(bad)} is outside the vocabulary (0..{VOCAB_SIZE - 1})")
    if arr.size == 0 or arr.max() < len(_DECODE_CHARS):  # common case: plain nucleotides
        return np.frombuffer(b"ACGTN", np.uint8)[arr.astype(np.int64)].tobytes().decode("ascii")
    return "".join(ID_TO_TOKEN[int(i)] for i in arr)


def reverse_complement(ids: torch.Tensor) -> torch.Tensor:
    """Reverse complement of id tensor(s) along the last dimension; N and specials map to themselves."""
    import torch  # heavy: see the module's docstring

    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"reverse_complement expects a torch.Tensor of ids, got {type(ids).__name__}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= VOCAB_SIZE):
        raise ValueError(f"ids outside the vocabulary (0..{VOCAB_SIZE - 1})")
    lut = torch.tensor(COMPLEMENT_LUT.tolist(), dtype=torch.long, device=ids.device)  # 8 ids
    return lut[ids.long().flip(-1)].to(ids.dtype)


def reverse_complement_np(ids: np.ndarray) -> np.ndarray:
    """Reverse complement of uint8 id array(s) along the last axis (numpy fast path)."""
    return COMPLEMENT_LUT[ids[..., ::-1]]


def reverse_complement_str(seq: str) -> str:
    """Reverse complement of a DNA string; IUPAC codes map to their complements, case is kept."""
    if not _VALID_CHARS.issuperset(seq):
        i = next(i for i, ch in enumerate(seq) if ch not in _VALID_CHARS)
        raise ValueError(f"invalid nucleotide {seq[i]!r} at index {i}")
    return seq.translate(_DNA_COMPLEMENT_STR)[::-1]
