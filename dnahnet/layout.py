"""H-Net layout strings (Hwang, Wang, Gu 2025; `goombalab/hnet` configs) -> per-stage block lists and block specs.

A layout is a nested list, outermost stage first: three entries per stage, ``[encoder, inner,
decoder]``, where ``inner`` is the next stage's list, and one entry for the innermost (main) network.
Each entry is a run of ``<letter><count>`` tokens, letters from ``m M t T`` (Mamba-2 / attention,
upper case = followed by a SwiGLU MLP)::

    ["m4", ["T1m4", ["T8"], "m4T1"], "m4"]     # 2 stages, main = 8 Transformer blocks
    ["m2", ["T2"], "m2"]                       # 1 stage
    ["T4"]                                     # 0 stages: a plain isotropic network

Stages are numbered from 0 (outermost); the main network is "stage S" for S chunking stages. The
per-stage lists of a config (widths, MLP widths, heads, ...) have S + 1 entries, the main network's
last; sliding windows have one entry per outer stage (the main network attends globally).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from dnahnet.nn.block import LAYOUT_LETTERS, BlockSpec

_TOKEN = re.compile(r"([A-Za-z])(\d*)")


class LayoutError(ValueError):
    """A malformed layout; the message names the offending token or entry."""


@dataclass(frozen=True)
class StageLayout:
    """The blocks of one chunking stage, one letter per block (e.g. "Tmmmm")."""

    encoder: str
    decoder: str


@dataclass(frozen=True)
class Layout:
    """A parsed layout: the chunking stages (outermost first) and the main network."""

    stages: tuple[StageLayout, ...]
    main: str

    @property
    def n_stages(self) -> int:
        return len(self.stages)

    def letters(self, stage: int) -> str:
        """Every block letter of stage `stage` (encoder then decoder; the main network for S)."""
        if stage == self.n_stages:
            return self.main
        return self.stages[stage].encoder + self.stages[stage].decoder

    def to_list(self) -> list:
        """The nested-list form, with compact tokens (the inverse of `parse_layout`)."""
        node: list = [compact(self.main)]
        for st in reversed(self.stages):
            node = [compact(st.encoder), node, compact(st.decoder)]
        return node

    def keep_outer(self, n_stages: int) -> Layout:
        """The layout with only the `n_stages` outermost stages, the main network kept (the inner
        stages' encoders and decoders are dropped): how a 2-stage preset becomes a 1-stage one."""
        if not 0 <= n_stages <= self.n_stages:
            raise LayoutError(f"cannot keep {n_stages} stages of a {self.n_stages}-stage layout {self.to_list()}")
        return Layout(self.stages[:n_stages], self.main)

    def __str__(self) -> str:
        return json.dumps(self.to_list())


def expand_entry(entry: str, where: str = "layout") -> str:
    """"T1m4" -> "Tmmmm"; errors name the bad token."""
    if not isinstance(entry, str):
        raise LayoutError(f"{where}: expected a string of <letter><count> tokens, got {entry!r}")
    text = entry.replace(" ", "")
    if not text:
        raise LayoutError(f"{where}: empty entry; every encoder, decoder and main network needs >= 1 block")
    out, pos = [], 0
    for match in _TOKEN.finditer(text):
        if match.start() != pos:
            raise LayoutError(f"{where}: bad token {text[pos:match.start()]!r} in {entry!r}; "
                              f"expected <letter><count> with letters {LAYOUT_LETTERS!r}")
        letter, count = match.group(1), match.group(2)
        token = match.group(0)
        if letter not in LAYOUT_LETTERS:
            raise LayoutError(f"{where}: bad token {token!r} in {entry!r}: unknown letter {letter!r} "
                              f"(m = Mamba-2, M = Mamba-2 + MLP, t = attention, T = attention + MLP)")
        if not count:
            raise LayoutError(f"{where}: bad token {token!r} in {entry!r}: missing block count "
                              f"(write e.g. {letter + '1'!r})")
        if int(count) < 1:
            raise LayoutError(f"{where}: bad token {token!r} in {entry!r}: the count must be >= 1")
        out.append(letter * int(count))
        pos = match.end()
    if pos != len(text):
        raise LayoutError(f"{where}: bad token {text[pos:]!r} in {entry!r}; "
                          f"expected <letter><count> with letters {LAYOUT_LETTERS!r}")
    return "".join(out)


def compact(letters: str) -> str:
    """"Tmmmm" -> "T1m4"."""
    out, i = [], 0
    while i < len(letters):
        j = i
        while j < len(letters) and letters[j] == letters[i]:
            j += 1
        out.append(f"{letters[i]}{j - i}")
        i = j
    return "".join(out)


def _load_string(text: str) -> Any:
    """A layout's string form: JSON / Python literal (quoted tokens) or YAML flow (bare tokens)."""
    for loader in (json.loads, ast.literal_eval, yaml.safe_load):
        try:
            return loader(text)
        except (ValueError, SyntaxError, yaml.YAMLError):
            continue
    raise LayoutError(f"layout {text!r} is not a nested list, e.g. '[\"m4\", [\"T8\"], \"m4\"]'")


def parse_layout(layout: Layout | Sequence | str) -> Layout:
    """Parse a nested list (or its string form) into a Layout; errors name the bad token/entry."""
    if isinstance(layout, Layout):
        return layout
    root = _load_string(layout) if isinstance(layout, str) else layout
    stages: list[StageLayout] = []
    node, path = root, "layout"
    while True:
        if not isinstance(node, (list, tuple)):
            raise LayoutError(f"{path}: expected a list [encoder, inner, decoder] or [main], got {node!r}")
        if len(node) == 1:
            return Layout(tuple(stages), expand_entry(node[0], f"{path}[0] (main network)"))
        if len(node) != 3:
            raise LayoutError(f"{path}: a stage has 3 entries [encoder, inner, decoder] and the innermost "
                              f"network 1 entry; got {len(node)}: {node!r}")
        enc = expand_entry(node[0], f"{path}[0] (stage {len(stages)} encoder)")
        dec = expand_entry(node[2], f"{path}[2] (stage {len(stages)} decoder)")
        stages.append(StageLayout(enc, dec))
        node, path = node[1], f"{path}[1]"


def per_stage(name: str, values: Sequence, n_layout: int, n_kept: int, with_main: bool) -> tuple:
    """The entries of the kept stages of a per-stage list (see `Layout.keep_outer`).

    `n_layout` / `n_kept` count stages before / after dropping inner stages. `values` may already have
    one entry per kept stage (used as is) or one per layout stage: then the entries of the dropped
    inner stages go, i.e. the outermost ones stay, plus the last (main network) entry when the list
    has one (`with_main`: d_model, d_intermediate, n_heads, lr_multipliers; not window or ratios).
    """
    values = tuple(values)
    extra = 1 if with_main else 0
    if len(values) == n_kept + extra:
        return values
    if len(values) == n_layout + extra and n_kept < n_layout:
        return values[:n_kept] + (values[-1:] if with_main else ())
    want = f"{n_kept + extra}" if n_layout == n_kept else f"{n_kept + extra} (or {n_layout + extra} " \
        f"before dropping to {n_kept} stages)"
    main = ", the main network last" if with_main else " (outer stages only)"
    raise ValueError(f"{name} has {len(values)} entries {values}; the layout needs {want}{main}")


def stage_block_specs(
    layout: Layout,
    d_model: Sequence[int],
    d_intermediate: Sequence[int],
    n_heads: Sequence[int],
    window: Sequence[int],
    rotary_fraction: float = 0.5,
    rotary_base: float = 10000.0,
    attn_backend: str = "auto",
    mamba: dict | None = None,
) -> list[BlockSpec]:
    """One BlockSpec per stage (outermost first, main network last), validated against the layout.

    d_model, d_intermediate, n_heads: S + 1 entries; window: S entries (outer stages; -1 = global),
    the main network is global. Rotary embeddings cover `rotary_fraction` of each head (H-Net: half).
    """
    n = layout.n_stages + 1
    for name, values in (("d_model", d_model), ("d_intermediate", d_intermediate), ("n_heads", n_heads)):
        if len(values) != n:
            raise ValueError(f"{name} has {len(values)} entries {tuple(values)}; a {layout.n_stages}-stage "
                             f"layout needs {n} (one per stage, the main network last)")
    if len(window) != layout.n_stages:
        raise ValueError(f"window has {len(window)} entries {tuple(window)}; a {layout.n_stages}-stage layout "
                         f"needs {layout.n_stages} (one per outer stage; the main network attends globally)")
    if not 0.0 <= rotary_fraction <= 1.0:
        raise ValueError(f"rotary_fraction must lie in [0, 1], got {rotary_fraction}")
    specs = []
    for s in range(n):
        d, d_int, heads = int(d_model[s]), int(d_intermediate[s]), int(n_heads[s])
        where = "main network" if s == layout.n_stages else f"stage {s}"
        if d <= 0:
            raise ValueError(f"d_model[{s}] ({where}) must be positive, got {d}")
        if s and d < int(d_model[s - 1]):
            raise ValueError(f"widths must grow inward (D^0 <= D^1 <= ...), got d_model={tuple(d_model)}")
        if d_int < 0:
            raise ValueError(f"d_intermediate[{s}] ({where}) must be >= 0, got {d_int}")
        letters = layout.letters(s)
        if d_int == 0 and any(c.isupper() for c in letters):
            raise ValueError(f"{where} uses MLP blocks ({compact(letters)}: upper-case letters) but "
                             f"d_intermediate[{s}] = 0; give it a width or use lower-case letters")
        if heads <= 0 or d % heads:
            raise ValueError(f"n_heads[{s}] = {heads} must be positive and divide d_model[{s}] = {d}")
        head_dim = d // heads
        rotary = int(head_dim * rotary_fraction) // 2 * 2
        win = None if s == layout.n_stages or int(window[s]) < 0 else int(window[s])
        specs.append(BlockSpec(
            d_model=d, d_intermediate=d_int, n_heads=heads, rotary_dim=rotary, window=win,
            rotary_base=rotary_base, attn_backend=attn_backend, mamba=dict(mamba or {}),
        ))
    return specs
