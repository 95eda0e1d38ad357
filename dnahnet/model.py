"""dnaHNet: the recursive hierarchical next-nucleotide model (the dnaHNet paper, Shah et al. 2026, built
on H-Net's dynamic chunking, Hwang, Wang, Gu 2025; docs/FIDELITY.md, "dnaHNet"), registered as the model
family "dnahnet".

One stage s = encoder E^s -> router -> chunk -> inner (stage s+1, or the main network) -> dechunk
(EMA + upsample) -> residual skip W_res -> decoder D^s:

    xh  = E^s(x)                                  # (B, L, D^s)
    p,b = route(xh)                               # (B, L)
    z'  = inner(pad(chunk(xh, b), D^{s+1}))       # (B, L', D^s), truncated back to D^s
    out = D^s(dechunk(z', p, b) * STE(c) + W_res xh)

Stages are numbered from 0 (outermost, nucleotide resolution); the main network comes last. Logged
metrics are `stage{s}/selection_rate` (F: fraction of that stage's positions that are boundaries),
`stage{s}/boundary_prob` (G: mean p) and `stage{s}/ratio_loss`; the measured compression of stage s is
1 / selection_rate.

Presets: `tiny` (2 stages), `tiny1`, `tiny3` train on a CPU in seconds; `small`, `base`, `large`, `xl`
follow the layout of the dnaHNet paper's appendix, `["m4", ["T1m4", ["TN"], "m4T1"], "m4"]`, which the
defaults follow; `small-text` ... `xl-text` follow the paper's main text, where every encoder and
decoder is "four Mamba layers and one Transformer layer": `["T1m4", ["T1m4", ["TN"], "m4T1"], "m4T1"]`.
Variants: "3,2" and "2,2" (two stages, target ratios), "3" (one stage, ratio 3: the inner stages'
encoders and decoders are dropped, see `DNAHNetConfig.n_stages`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dnahnet import flops as fl
from dnahnet import typed_config as cfglib
from dnahnet.chunking import (
    DeChunk,
    DechunkCache,
    Router,
    RouterCache,
    chunk,
    confidence,
    ratio_loss,
    ste,
)
from dnahnet.family import FamilySearch, Recipe, SearchDimension, SizeRule, fixed_depth, width_grid
from dnahnet.layout import Layout, parse_layout, per_stage, stage_block_specs
from dnahnet.nn import BlockSpec, BlockStack, LanguageModel, LMOutput
from dnahnet.nn.init import init_weights
from dnahnet.nn.mlp import round_up
from dnahnet.registry import register_family
from dnahnet.tokenizer import VOCAB_SIZE

APPENDIX_LAYOUT = ["m4", ["T1m4", ["T{n}"], "m4T1"], "m4"]  # dnaHNet appendix (defaults)
TEXT_LAYOUT = ["T1m4", ["T1m4", ["T{n}"], "m4T1"], "m4T1"]  # dnaHNet main text: 4 Mamba + 1 attention


@dataclass
class DNAHNetConfig:
    """dnaHNet hyperparameters; the defaults are the `tiny` preset (2 stages, trains on a CPU).

    Per-stage tuples run outermost first. d_model, d_intermediate, n_heads and lr_multipliers have one
    entry per stage plus the main network (last); window and ratios one per chunking stage. With
    `n_stages` below the layout's depth, each may list either the kept stages only or every layout
    stage (the dropped inner stages' entries are then ignored): so variant "3" turns any 2-stage preset
    into a 1-stage model, (2.0, 1.5, 1.0) learning-rate multipliers into (2.0, 1.0).
    """

    layout: Any = field(default_factory=lambda: ["m2", ["T1m1", ["T2"], "m1T1"], "m2"])  # H-Net layout (nested list or its string form)
    d_model: tuple[int, ...] = (64, 96, 128)  # width per stage, outermost first, main network last (non-decreasing)
    d_intermediate: tuple[int, ...] = (0, 192, 256)  # SwiGLU width per stage (0 = no MLP: lower-case letters only)
    n_heads: tuple[int, ...] = (4, 4, 4)  # attention heads per stage (main network last)
    window: tuple[int, ...] = (1023, 1023)  # sliding attention window per outer stage (-1 = global); main is global
    rotary_fraction: float = 0.5  # share of each head's channels with rotary embeddings (H-Net: half)
    rotary_base: float = 10000.0  # rotary frequency base
    ratios: tuple[float, ...] = (3.0, 2.0)  # target compression ratio N_s per stage (> 1), outermost first
    alpha: float = 0.02  # weight of the ratio loss: aux_loss = alpha * sum_s L_ratio^s (paper: 0.01-0.02)
    lr_multipliers: tuple[float, ...] = (2.0, 1.5, 1.0)  # learning-rate multiplier per stage, main last
    n_stages: int | None = None  # keep only this many outer stages (None = all the layout's; see Layout.keep_outer)
    d_state: int = 16  # Mamba-2 state size per head
    headdim: int = 16  # Mamba-2 head dim
    expand: int = 2  # Mamba-2 inner width = expand * d_model
    d_conv: int = 4  # Mamba-2 causal conv width
    ngroups: int = 1  # Mamba-2 B/C groups
    chunk_size: int = 64  # Mamba-2 SSD chunk length
    ema_chunk_size: int = 64  # chunk length of the dechunker's EMA scan
    mamba_backend: str = field(default="auto", metadata=cfglib.NEUTRAL)  # "auto" | "torch" | "kernel" (mamba_ssm + causal_conv1d)
    attn_backend: str = field(default="auto", metadata=cfglib.NEUTRAL)  # "auto" | "torch" | "kernel" (flash-attn)
    vocab_size: int = VOCAB_SIZE  # nucleotide vocabulary incl. special tokens
    init_std: float = 0.02  # std of linear weights (output projections / sqrt(residuals on the path))
    embedding_std: float = 1.0  # std of the token embedding (H-Net: 1)


@dataclass(frozen=True)
class Resolved:
    """A config's per-stage quantities, checked against the (possibly reduced) layout."""

    layout: Layout
    specs: tuple[BlockSpec, ...]  # S + 1, main network last
    ratios: tuple[float, ...]  # S
    lr_multipliers: tuple[float, ...]  # S + 1


def resolve(cfg: DNAHNetConfig) -> Resolved:
    """Parse the layout, drop inner stages if `n_stages` asks, and check every per-stage list
    (errors name the field)."""
    full = parse_layout(cfg.layout)
    n = full.n_stages if cfg.n_stages is None else int(cfg.n_stages)
    if not 0 <= n <= full.n_stages:
        raise ValueError(f"n_stages={cfg.n_stages} but the layout {full.to_list()} has {full.n_stages} stages")
    layout = full.keep_outer(n)

    def pick(name: str, with_main: bool) -> tuple:
        return per_stage(name, getattr(cfg, name), full.n_stages, n, with_main)

    mamba = dict(d_state=cfg.d_state, headdim=cfg.headdim, expand=cfg.expand, d_conv=cfg.d_conv,
                 ngroups=cfg.ngroups, chunk_size=cfg.chunk_size, backend=cfg.mamba_backend)
    specs = stage_block_specs(
        layout, pick("d_model", True), pick("d_intermediate", True), pick("n_heads", True),
        pick("window", False), rotary_fraction=cfg.rotary_fraction, rotary_base=cfg.rotary_base,
        attn_backend=cfg.attn_backend, mamba=mamba,
    )
    ratios = tuple(float(r) for r in pick("ratios", False))
    for s, r in enumerate(ratios):
        if r <= 1.0:
            raise ValueError(f"ratios[{s}] = {r}: a target compression ratio must be > 1")
    lrs = tuple(float(x) for x in pick("lr_multipliers", True))
    if any(x <= 0 for x in lrs):
        raise ValueError(f"lr_multipliers must be positive, got {lrs}")
    if cfg.alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {cfg.alpha}")
    return Resolved(layout, tuple(specs), ratios, lrs)


# ---------------------------------------------------------------------------------------- outputs
@dataclass
class DNAHNetOutput(LMOutput):
    """LMOutput plus what the chunkers did; per-stage lists, outermost stage first."""

    boundary_probs: list[Tensor] = field(default_factory=list)  # (B, L_s) router probabilities p
    boundary_masks: list[Tensor] = field(default_factory=list)  # (B, L_s) bool boundaries b
    valid_masks: list[Tensor] = field(default_factory=list)  # (B, L_s) bool real (non-padding) positions
    chunk_indices: list[Tensor] = field(default_factory=list)  # (B, L_{s+1}) position in stage s of each chunk
    ratio_losses: list[Tensor] = field(default_factory=list)  # scalar L_ratio per stage
    selection_rates: list[Tensor] = field(default_factory=list)  # scalar F per stage

    def nucleotide_boundaries(self) -> list[Tensor]:
        """Per stage, (B, L) bool: which input positions (nucleotides) are boundaries of that stage."""
        return nucleotide_boundaries(self.boundary_masks, self.valid_masks)


def nucleotide_boundaries(boundary_masks: Sequence[Tensor], valid_masks: Sequence[Tensor] | None = None
                          ) -> list[Tensor]:
    """Map per-stage boundary masks back to nucleotides: per stage s, (B, L) bool, True where nucleotide t
    is a boundary of stage s (and so of every stage before it).

    Stage 0's mask (B, L) is on nucleotides; stage s > 0's mask (B, L_s) lives on the compressed sequence
    of stage s-1: its row j is the j-th boundary of stage s-1, in order (as `chunk` gathers them). Rows
    past a sequence's own count are padding: False in `valid_masks`, and ignored beyond the count in any
    case. Tensors stay on their device.
    """
    out: list[Tensor] = []
    for s, mask in enumerate(boundary_masks):
        mask = mask.bool()
        if valid_masks is not None:
            mask = mask & valid_masks[s].bool()
        if s == 0:
            out.append(mask)
            continue
        reached = out[-1]  # (B, L) nucleotides that are boundaries of stage s-1
        n_rows, length = mask.shape[1], reached.shape[1]
        counts = reached.sum(dim=1)  # (B,)
        if counts.numel() and int(counts.max()) > n_rows:
            raise ValueError(f"stage {s}: {int(counts.max())} boundaries at stage {s - 1} but only {n_rows} rows")
        positions = torch.arange(length, device=reached.device)
        # The nucleotide of each row: boundaries keep their position as sort key, the rest go behind.
        rows = min(n_rows, length)
        nucleotide = torch.argsort(positions + (~reached).long() * length, dim=1)[:, :rows]  # (B, rows)
        real = positions[:rows][None, :] < counts[:, None]  # (B, rows) rows that are boundaries of stage s-1
        out.append(torch.zeros_like(reached).scatter_(1, nucleotide, mask[:, :rows] & real))
    return out


@dataclass
class StageTrace:
    prob: Tensor  # (B, L_s)
    boundary: Tensor  # (B, L_s)
    mask: Tensor  # (B, L_s) real positions
    index: Tensor  # (B, L_{s+1})


@dataclass
class StageOutput:
    """What a stage's forward gives back: its output and what its chunkers (and inner stages') did."""

    hidden: Tensor  # (B, L, D_in), the input's width
    traces: list[StageTrace]  # this stage's first, then the inner stages' (empty for the main network)


@dataclass
class StageCache:
    """Decoding state of one stage; the main network uses only `main`. Batch dimension first."""

    encoder: list | None = None
    router: RouterCache | None = None
    inner: StageCache | None = None
    dechunk: DechunkCache | None = None
    decoder: list | None = None
    main: list | None = None


# ---------------------------------------------------------------------------------------- modules
class ResidualProjection(nn.Module):
    """W_res: D x D with a bias, kept and applied in float32 with autocast off. As H-Net's
    `residual_proj = nn.Linear(d, d)` (goombalab/hnet, hnet/models/hnet.py): only the weight is
    zero-initialised, the bias keeps nn.Linear's default U(-1/sqrt(D), 1/sqrt(D))."""

    def __init__(self, d_model: int, device=None):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(d_model, d_model, device=device, dtype=torch.float32))
        bound = 1.0 / math.sqrt(d_model)
        self.bias = nn.Parameter(torch.empty(d_model, device=device, dtype=torch.float32).uniform_(-bound, bound))
        for p in (self.weight, self.bias):
            p._no_reinit = True
        self._no_reinit = True

    def forward(self, h: Tensor) -> Tensor:
        with torch.autocast(device_type=h.device.type, enabled=False):
            return F.linear(h.float(), self.weight.float(), self.bias.float())  # (..., D) float32


def _n_residuals(stack: BlockStack) -> int:
    """Residual branches of a stack: one per mixer, one per MLP."""
    return sum(1 + (b.mlp is not None) for b in stack.blocks)


class HNetStage(nn.Module):
    """Stage `idx` of a layout: encoder/router/inner/dechunk/decoder, or the main network.

    The learned pad vector that widens this stage's input (D^{idx-1} -> D^{idx}, zero-init) belongs to
    this stage; the output is truncated back to the input width.
    """

    def __init__(self, layout: Layout, specs: Sequence[BlockSpec], idx: int, d_outer: int | None,
                 ema_chunk_size: int = 64):
        super().__init__()
        self.idx = idx
        spec = specs[idx]
        d = spec.d_model
        self.d_model = d
        self.pad = None
        if d_outer is not None and d > d_outer:
            self.pad = nn.Parameter(torch.zeros(d - d_outer))  # decays: H-Net's rule (weight_decay_names)
        self.is_main = idx == layout.n_stages
        # Hierarchy-usage ablation (`DNAHNet.inner_output_zeroed`): the inner network's output z' is replaced
        # by zeros before dechunking, so only the residual path W_res carries this stage's information.
        self.zero_inner = False
        if self.is_main:
            self.main = BlockStack.from_letters(layout.main, spec, final_norm=True)
            return
        st = layout.stages[idx]
        self.encoder = BlockStack.from_letters(st.encoder, spec, final_norm=True)
        self.router = Router(d)
        self.residual = ResidualProjection(d)
        self.inner = HNetStage(layout, specs, idx + 1, d, ema_chunk_size)
        self.dechunk = DeChunk(d, ema_chunk_size)
        self.decoder = BlockStack.from_letters(st.decoder, spec, final_norm=True)

    def _widen(self, x: Tensor) -> Tensor:
        if self.pad is None:
            return x
        return torch.cat([x, self.pad.to(x.dtype).expand(*x.shape[:-1], -1)], dim=-1)

    def forward(self, x: Tensor, mask: Tensor | None) -> StageOutput:
        """x: (B, L, D_in), mask: (B, L) real positions or None -> (B, L, D_in), traces of this and inner stages."""
        d_in = x.shape[-1]
        x = self._widen(x)  # (B, L, D)
        if self.is_main:
            return StageOutput(self.main(x)[..., :d_in], [])
        h = self.encoder(x)  # (B, L, D)
        residual = self.residual(h)  # (B, L, D) float32
        r = self.router(h, mask)
        chunks = chunk(h, r.boundary)  # (B, M, D)
        inner = self.inner(chunks.x, chunks.mask)
        z = torch.zeros_like(inner.hidden) if self.zero_inner else inner.hidden  # (B, M, D)
        zbar = self.dechunk(z, r.prob, r.boundary, chunks)  # (B, L, D) float32
        c = confidence(r.prob, r.boundary)  # (B, L)
        y = self.decoder((zbar * ste(c)[..., None] + residual).to(h.dtype))  # (B, L, D)
        valid = torch.ones_like(r.boundary) if mask is None else mask
        return StageOutput(y[..., :d_in], [StageTrace(r.prob, r.boundary, valid, chunks.index), *inner.traces])

    # ------------------------------------------------------------------ decoding
    def allocate_cache(self, batch_size: int, max_seqlen: int, device=None, dtype=None) -> StageCache:
        kw = dict(device=device, dtype=dtype)
        if self.is_main:
            return StageCache(main=self.main.allocate_cache(batch_size, max_seqlen, **kw))
        return StageCache(
            encoder=self.encoder.allocate_cache(batch_size, max_seqlen, **kw),
            router=self.router.allocate_cache(batch_size, device=device, dtype=dtype),
            inner=self.inner.allocate_cache(batch_size, max_seqlen, **kw),
            dechunk=self.dechunk.allocate_cache(batch_size, device=device),
            decoder=self.decoder.allocate_cache(batch_size, max_seqlen, **kw),
        )

    def prefill(self, x: Tensor, cache: StageCache) -> Tensor:
        """Parallel prefill of a fresh cache: like forward, leaving every cache after the last position.
        Needs the same number of chunks in every sequence at every stage (padding would enter the
        mixers' states); raises _RaggedPrefill otherwise. x: (B, L, D_in) -> (B, L, D_in)."""
        d_in = x.shape[-1]
        x = self._widen(x)  # (B, L, D)
        if self.is_main:
            return self.main(x, cache=cache.main)[..., :d_in]
        h = self.encoder(x, cache=cache.encoder)  # (B, L, D)
        residual = self.residual(h)  # (B, L, D) float32
        r = self.router(h)
        chunks = chunk(h, r.boundary, multiple=1)  # (B, M, D): no padding rows (they would enter the states)
        if bool((chunks.counts != chunks.counts[0]).any()):
            raise _RaggedPrefill
        z = self.inner.prefill(chunks.x, cache.inner)  # (B, M, D)
        if self.zero_inner:
            z = torch.zeros_like(z)
        zbar = self.dechunk(z, r.prob, r.boundary, chunks)  # (B, L, D) float32
        cache.router.last_key.copy_(self.router.k_proj(h[:, -1]).to(cache.router.last_key.dtype))
        cache.router.seqlen.fill_(h.shape[1])
        cache.dechunk.last.copy_(zbar[:, -1])
        c = confidence(r.prob, r.boundary)  # (B, L)
        y = self.decoder((zbar * ste(c)[..., None] + residual).to(h.dtype), cache=cache.decoder)
        return y[..., :d_in]

    def step(self, x: Tensor, cache: StageCache) -> Tensor:
        """x: (B, D_in) one position per sequence -> (B, D_in). The inner stage advances only for the
        sequences whose position is a boundary: it is stepped for the whole batch and the other rows
        of its cache are restored (every cache tensor has the batch dimension first). The restore copies
        the inner caches once per step where the batch disagrees: O(cache size), never needed at B = 1."""
        d_in = x.shape[-1]
        x = self._widen(x)  # (B, D)
        if self.is_main:
            return self.main.step(x, cache.main)[..., :d_in]
        h = self.encoder.step(x, cache.encoder)  # (B, D)
        residual = self.residual(h)  # (B, D) float32
        r = self.router.step(h, cache.router)
        b = r.boundary  # (B,)
        if bool(b.all()):
            z = self.inner.step(h, cache.inner)
        elif bool(b.any()):
            saved = [t.clone() for t in _cache_tensors(cache.inner)]
            z = self.inner.step(h, cache.inner)
            for t, old in zip(_cache_tensors(cache.inner), saved, strict=True):
                t.copy_(torch.where(b.view(-1, *([1] * (t.dim() - 1))), t, old))
        else:
            z = torch.zeros_like(h)  # unused: no sequence hit a boundary
        if self.zero_inner:
            z = torch.zeros_like(z)
        zbar = self.dechunk.step(z, r.prob, b, cache.dechunk)  # (B, D) float32
        c = confidence(r.prob, b)  # (B,)
        y = self.decoder.step((zbar * ste(c)[:, None] + residual).to(h.dtype), cache.decoder)
        return y[..., :d_in]


class _RaggedPrefill(Exception):
    """Sequences of a batch got different numbers of chunks: a parallel prefill would be wrong."""


def _cache_tensors(obj) -> Iterator[Tensor]:
    """Every tensor of a cache tree (dataclasses, lists, dicts), in a fixed order."""
    if isinstance(obj, Tensor):
        yield obj
    elif dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            yield from _cache_tensors(getattr(obj, f.name))
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _cache_tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _cache_tensors(item)


class DNAHNet(LanguageModel):
    """The dnaHNet language model (see the module docstring)."""

    def __init__(self, config: DNAHNetConfig):
        super().__init__()
        self.config = config
        self.resolved = r = resolve(config)
        d0 = r.specs[0].d_model
        self.embedding = nn.Embedding(config.vocab_size, d0)
        self.backbone = HNetStage(r.layout, r.specs, 0, None, config.ema_chunk_size)
        self.lm_head = nn.Linear(d0, config.vocab_size, bias=False)
        self._init_weights()

    @property
    def n_stages(self) -> int:
        return self.resolved.layout.n_stages

    def stages(self) -> list[HNetStage]:
        """The stage modules, outermost first, the main network last."""
        out, st = [], self.backbone
        while True:
            out.append(st)
            if st.is_main:
                return out
            st = st.inner

    @contextlib.contextmanager
    def inner_output_zeroed(self, stage: int) -> Iterator[None]:
        """Within the block, chunking stage `stage` (0 = outermost) sees a zero output from its inner network
        (stage + 1, or the main network) in forward, prefill and step: the model keeps its own weights but
        only W_res carries information past that stage. How much the loss rises measures how much the
        model uses its hierarchy below `stage` (`dnahnet.hierarchy_usage`)."""
        if not 0 <= stage < self.n_stages:
            raise ValueError(f"stage {stage}: this dnaHNet has chunking stages 0..{self.n_stages - 1}")
        st = self.stages()[stage]
        st.zero_inner = True
        try:
            yield
        finally:
            st.zero_inner = False

    def _init_weights(self) -> None:
        """H-Net init: linear N(0, std), residual output projections N(0, std / sqrt(residual branches on
        the path from the input to that block)), embeddings N(0, embedding_std); the router and W_res
        keep their own init (identity, zero); Mamba-2's conv/dt/A/D keep theirs."""
        c = self.config
        on_path = 0
        for st in self.stages():
            if st.is_main:
                init_weights(st.main, on_path + _n_residuals(st.main), std=c.init_std)
            else:
                on_path += _n_residuals(st.encoder) + _n_residuals(st.decoder)
                for stack in (st.encoder, st.decoder):
                    init_weights(stack, on_path, std=c.init_std)
        nn.init.normal_(self.embedding.weight, std=c.embedding_std)
        nn.init.normal_(self.lm_head.weight, std=c.init_std)

    # ------------------------------------------------------------------ training
    def forward(self, input_ids: Tensor) -> DNAHNetOutput:
        stages = self.backbone(self.embedding(input_ids), None)
        logits = self.lm_head(stages.hidden)  # (B, L, V)
        out = DNAHNetOutput(logits=logits)
        metrics = {}
        for s, (tr, target) in enumerate(zip(stages.traces, self.resolved.ratios, strict=True)):
            rl = ratio_loss(tr.prob, tr.boundary, target, tr.mask)
            out.boundary_probs.append(tr.prob)
            out.boundary_masks.append(tr.boundary)
            out.valid_masks.append(tr.mask)
            out.chunk_indices.append(tr.index)
            out.ratio_losses.append(rl.loss)
            out.selection_rates.append(rl.selection_rate)
            metrics[f"stage{s}/selection_rate"] = rl.selection_rate
            metrics[f"stage{s}/ratio_loss"] = rl.loss.detach()
            metrics[f"stage{s}/boundary_prob"] = rl.boundary_prob.detach()
        if out.ratio_losses:
            out.aux_loss = self.config.alpha * torch.stack(out.ratio_losses).sum()
        out.metrics = metrics
        return out

    def weight_decay_names(self) -> set[str]:
        """H-Net's rule (goombalab/hnet, hnet/utils/train.py `group_params`: "all parameters (except bias +
        norms)"): embeddings, pad vectors and Mamba-2's A_log, D and dt_bias decay too, unlike the generic
        matrices-only rule. Norms are matched by module type; H-Net matches the name `.norm.`, which
        misses its block norms `norm1`/`norm2`: we follow its stated intent."""
        norm_params = {
            id(p) for m in self.modules() if "Norm" in type(m).__name__ for p in m.parameters(recurse=False)
        }
        return {n for n, p in self.named_parameters() if not n.endswith(".bias") and id(p) not in norm_params}

    def lr_multipliers(self) -> dict[str, float]:
        """Every parameter of stage s (its blocks, router, W_res and the pad vector entering it) gets
        lambda_s; the embedding and the LM head take lambda_0."""
        lam = self.resolved.lr_multipliers
        out = {f"embedding.{n}": lam[0] for n, _ in self.embedding.named_parameters()}
        out.update({f"lm_head.{n}": lam[0] for n, _ in self.lm_head.named_parameters()})
        prefix = "backbone."
        for s, st in enumerate(self.stages()):
            for name, _ in st.named_parameters(recurse=False):
                out[prefix + name] = lam[s]
            for child_name, child in st.named_children():
                if child_name != "inner":
                    for n, _ in child.named_parameters():
                        out[f"{prefix}{child_name}.{n}"] = lam[s]
            prefix += "inner."
        return out

    def set_fixed_boundaries(self, periods: Sequence[int] | None) -> None:
        """Test/benchmark hook: stage s selects every periods[s]-th position (b_t = 1[t mod N_s = 0])
        instead of thresholding p; None restores learned routing."""
        stages = self.stages()[:-1]
        if periods is not None and len(periods) != len(stages):
            raise ValueError(f"need {len(stages)} periods (one per stage), got {tuple(periods)}")
        for s, st in enumerate(stages):
            st.router.fixed_period = None if periods is None else int(periods[s])

    # ------------------------------------------------------------------ decoding
    def init_cache(self, batch_size: int, max_seqlen: int) -> StageCache:
        # dtype left to each mixer: Mamba-2 keeps its SSM state in float32 under a low-precision model
        return self.backbone.allocate_cache(batch_size, max_seqlen, device=self.lm_head.weight.device)

    def prefill(self, input_ids: Tensor, cache: StageCache) -> Tensor:
        """Feed a prompt (B, P) into a fresh cache; logits (B, V) after its last position.

        Parallel (one forward pass) when every sequence gets the same number of chunks at every stage
        (always for B = 1); otherwise the cache is reset and the prompt is stepped through."""
        try:
            h = self.backbone.prefill(self.embedding(input_ids), cache)  # (B, P, D0)
            return self.lm_head(h[:, -1])
        except _RaggedPrefill:
            for t in _cache_tensors(cache):
                t.zero_()
            return super().prefill(input_ids, cache)

    def step(self, tokens: Tensor, cache: StageCache) -> Tensor:
        """tokens: (B,) -> next-token logits (B, V); the cache advances one position."""
        return self.lm_head(self.backbone.step(self.embedding(tokens), cache))

    # ------------------------------------------------------------------ FLOPs
    def flops_per_token(self, seq_len: int, ratios: Sequence[float] | None = None) -> fl.FlopsPerToken:
        """Analytic FLOPs per input nucleotide at context `seq_len` (dnahnet.flops conventions).

        Stage s runs at length L_s = L / (N_0 ... N_{s-1}) and its cost per nucleotide is its cost per
        position / (N_0 ... N_{s-1}); the main network runs at L / prod N. `ratios` defaults to the
        target ratios (a run's measured ones: `measured_flops_per_token`). Per stage position: its
        blocks, router 2 x 2 D^2, W_res 2 D^2; per chunk the EMA, 3 D (its recurrence; the chunked
        scan that computes it does O(chunk) more work per chunk, not counted, like Mamba-2's).
        Embedding lookup 0, LM head 2 D V.
        """
        r = self.resolved
        ratios = r.ratios if ratios is None else tuple(float(x) for x in ratios)
        if len(ratios) != r.layout.n_stages:
            raise ValueError(f"need {r.layout.n_stages} ratios, got {ratios}")
        c = self.config
        total, share, length = 0.0, 1.0, float(seq_len)
        for s, spec in enumerate(r.specs):
            ctx = max(1, int(round(length)))
            per_pos = sum(self._block_flops(letter, spec, ctx) for letter in r.layout.letters(s))
            d = spec.d_model
            if s < r.layout.n_stages:
                per_pos += 2 * 2 * d * d + 2 * d * d  # router (W_q, W_k) + residual projection
                per_pos += 3 * d / ratios[s]  # EMA update, once per chunk
            total += share * per_pos
            if s < r.layout.n_stages:
                share /= ratios[s]
                length /= ratios[s]
        total += fl.lm_head_flops(r.specs[0].d_model, c.vocab_size)
        return fl.FlopsPerToken.from_forward(total)

    def _block_flops(self, letter: str, spec: BlockSpec, ctx: int) -> float:
        c = self.config
        if letter.lower() == "m":
            f = fl.mamba2_flops(spec.d_model, d_state=c.d_state, expand=c.expand, headdim=c.headdim,
                                ngroups=c.ngroups, d_conv=c.d_conv)
        else:
            head_dim = spec.d_model // spec.n_heads
            f = fl.attention_flops(spec.d_model, spec.n_heads, head_dim, ctx, spec.window)
        if letter.isupper():
            f += fl.swiglu_flops(spec.d_model, spec.d_intermediate)
        return f

    def measured_flops_per_token(self, seq_len: int, metrics: dict[str, Any]) -> fl.FlopsPerToken:
        """FLOPs per token with the compression a run measured: N_s = 1 / metrics["stage{s}/selection_rate"]."""
        ratios = []
        for s in range(self.n_stages):
            key = f"stage{s}/selection_rate"
            if key not in metrics:
                raise KeyError(f"metrics lack {key!r} (have: {', '.join(sorted(metrics))})")
            rate = float(metrics[key])
            if not 0.0 < rate <= 1.0:
                raise ValueError(f"{key} = {rate} is not a selection rate in (0, 1]")
            ratios.append(1.0 / rate)
        return self.flops_per_token(seq_len, ratios=ratios)


# ---------------------------------------------------------------------------------------- presets
def _paper(d: tuple[int, int, int], n_main: int, text_layout: bool = False) -> DNAHNetConfig:
    """A paper-size 2-stage config: heads of 64 channels, rotary on half of each, d_int = 8/3 d rounded up
    to 128 (none at stage 0 unless its layout has MLP blocks), Mamba-2 d_state 128 / headdim 64."""
    template = TEXT_LAYOUT if text_layout else APPENDIX_LAYOUT
    layout = [template[0], [template[1][0], [template[1][1][0].format(n=n_main)], template[1][2]], template[2]]
    d_int = tuple(round_up(8 * x / 3, 128) for x in d)
    if not text_layout:
        d_int = (0,) + d_int[1:]
    return DNAHNetConfig(
        layout=layout, d_model=d, d_intermediate=d_int, n_heads=tuple(x // 64 for x in d),
        window=(1023, 1023), ratios=(3.0, 2.0), lr_multipliers=(2.0, 1.5, 1.0),
        d_state=128, headdim=64, expand=2, chunk_size=256, ema_chunk_size=64,
    )


PAPER_SIZES = {  # name: (widths per stage, main Transformer blocks); ~30% / 70% encoder-decoder / main
    "small": ((256, 384, 512), 11),
    "base": ((512, 768, 1024), 11),
    "large": ((768, 1024, 1536), 10),
    "xl": ((1024, 1536, 2048), 12),
}

PRESETS = {
    "tiny": lambda: DNAHNetConfig(),
    "tiny1": lambda: DNAHNetConfig(
        layout=["m2", ["T2"], "m2"], d_model=(64, 96), d_intermediate=(0, 256), n_heads=(4, 4),
        window=(1023,), ratios=(3.0,), lr_multipliers=(2.0, 1.0),
    ),
    "tiny3": lambda: DNAHNetConfig(
        layout=["m1", ["m1", ["T1m1", ["T2"], "m1T1"], "m1"], "m1"], d_model=(48, 64, 96, 128),
        d_intermediate=(0, 0, 192, 256), n_heads=(4, 4, 4, 4), window=(1023, 1023, 1023),
        ratios=(3.0, 2.0, 2.0), lr_multipliers=(2.0, 1.75, 1.5, 1.0),
    ),
    # ~3.3M parameters with the appendix layout: matched to Transformer++/StripedHyena 2 `small` (3.2M) in
    # the throughput and inference benchmarks and small enough for CPU sweeps.
    "mini": lambda: DNAHNetConfig(
        layout=["m4", ["T1m4", ["T3"], "m4T1"], "m4"], d_model=(96, 128, 192), d_intermediate=(0, 384, 512),
        n_heads=(2, 2, 3), d_state=64, headdim=32, chunk_size=128,
    ),
}
for _name, (_d, _n) in PAPER_SIZES.items():
    PRESETS[_name] = (lambda d=_d, n=_n: _paper(d, n))
    PRESETS[f"{_name}-text"] = (lambda d=_d, n=_n: _paper(d, n, text_layout=True))

VARIANTS = {
    "3,2": {"n_stages": 2, "ratios": (3.0, 2.0)},
    "2,2": {"n_stages": 2, "ratios": (2.0, 2.0)},
    "3": {"n_stages": 1, "ratios": (3.0,)},
}



# ------------------------------------------------------------------------------------ ladder recipe
# How the sweeps' ladders grow dnaHNet (sweeps/ladders.py): stage widths exactly (w/2, 3w/4, w) at every rung.
CPU_LADDER_LAYOUT = ["m1", ["m1", ["T{n}"], "m1"], "m1"]  # shallow stages (ours, CPU ladders)
PAPER_DEPTH_WIDTH = 1024  # the paper recipe's main depth is solved once, at this width (its presets' middle)


def ladder_stage_widths(width: int) -> tuple[int, int, int]:
    """Stage widths (w/2, 3w/4, w), exactly: every width of a dnaHNet grid is a multiple of 4, so no rung
    rounds a stage (rounding gave d8 (8,8,8) and d16 (8,16,16), a different shape where the CPU optimum lies)."""
    if width % 4:
        raise ValueError(f"dnaHNet width {width} is not a multiple of 4: stage widths (w/2, 3w/4, w) must be whole")
    return (width // 2, 3 * width // 4, width)


def ladder_shape(width: int, depth: int, recipe: Recipe) -> dict:
    """A ladder rung's config overrides: the recipe's layout template with `depth` main Transformer blocks,
    stage widths (w/2, 3w/4, w), SwiGLU 8/3 of each width with attention, the recipe's Mamba-2 settings."""
    template = recipe.extra["layout"]
    layout = [template[0], [template[1][0], [template[1][1][0].format(n=depth)], template[1][2]], template[2]]
    d = ladder_stage_widths(width)
    d_int = (0,) + tuple(round_up(8 * x / 3, recipe.mlp_multiple) for x in d[1:])
    mamba = {k: v for k, v in recipe.extra.items() if k != "layout"}
    return {"layout": layout, "d_model": d, "d_intermediate": d_int,
            # attention head dim: the recipe's where it divides the stage width (every stage with attention
            # in the CPU and paper layouts), else the largest divisor of it (heads of a Mamba-only stage are unused)
            "n_heads": tuple(x // math.gcd(x, recipe.head_dim) for x in d), **mamba}


def paper_main_depth(width: int, variant: str | None) -> int:
    """The paper recipe's main-network depth, one for every width: the depth giving the main network ~70%
    of the non-embedding parameters of the full two-stage layout (the dnaHNet paper; docs/FIDELITY.md,
    "Parameter split") at width
    `PAPER_DEPTH_WIDTH`. Solving it per width made the depth jitter between 11 and 15 from one rung
    to the next (shape scatter in every parabola). Every variant uses that depth: the one-stage variant "3"
    is the same model without the inner stage's encoder and decoder (as `DNAHNetConfig.n_stages` defines it)."""
    return _main_depth_for_share(PAPER_DEPTH_WIDTH, 0.7)


@functools.cache
def _main_depth_for_share(width: int, share: float) -> int:
    """Main depth giving the main network `share` of the non-embedding parameters at `width` (paper recipe)."""
    recipe = SIZE_RULE.recipe("paper")

    def params_non_embedding(depth: int) -> int:
        cfg = cfglib.replace(PRESETS["tiny"](), **ladder_shape(width, depth, recipe))  # as the ladder builds it
        with torch.device("meta"):  # shapes only: no memory
            return int(DNAHNet(cfg).param_counts().non_embedding)

    p1, p2 = params_non_embedding(1), params_non_embedding(2)
    per_layer, rest = p2 - p1, p1 - (p2 - p1)
    return max(1, int(round(share / (1 - share) * rest / per_layer)))


SIZE_RULE = SizeRule(
    shape_fn=ladder_shape, min_depth=1, default_variant="3,2",
    recipes={
        # Mamba-2 head dim 4 at CPU widths: the stage widths (w/2, 3w/4) = (4k, 6k) give inner widths
        # (8k, 12k), which head dim 8 would not divide at every rung.
        "cpu": Recipe(widths=width_grid(8, 256, 8), head_dim=8, mlp_multiple=8, depth=fixed_depth(4),
                      extra=dict(layout=CPU_LADDER_LAYOUT, d_state=16, headdim=4, chunk_size=16, ema_chunk_size=16)),
        # Widths in steps of 64 keep (w/2, 3w/4) multiples of 16, so Mamba-2 heads of 32 divide every
        # inner width (2x the stage width) exactly (the paper's head dim 64 would force steps of 128, too
        # coarse for a 7-model ladder at 4e18); where 3w/4 is not a multiple of 64, stage 1's attention
        # layer takes heads of its largest divisor. The paper's presets 256/384/512 .. 1024/1536/2048 are
        # on this grid.
        "paper": Recipe(widths=width_grid(256, 3072, 64), head_dim=64, mlp_multiple=128, depth=paper_main_depth,
                        extra=dict(layout=APPENDIX_LAYOUT, d_state=128, headdim=32, chunk_size=256,
                                   ema_chunk_size=64)),
    },
    center_tokens_per_param=600.0,  # dnaHNet paper: compute-optimal ~140B tokens at 8e19 FLOPs
    note="stage widths exactly (w/2, 3w/4, w); cpu: shallow stages, main T4, Mamba-2 state 16 / head dim 4; "
         "paper: appendix layout, Mamba-2 state 128, one main depth (~70% of the parameters at width 1024)",
)


# ------------------------------------------------------------------------------------ search space
def stage_multipliers(lr_outer: float, lr_decay: float, stages: int) -> list[float]:
    """Per-stage lr multipliers, outermost first, main network last (at 1.0: the peak lr, searched
    separately, sets the overall scale). Stage s gets 1 + (lr_outer - 1) * lr_decay^s: the excess over the
    main network decays geometrically inward, so outer stages are never slower than inner ones
    (the dnaHNet paper; docs/FIDELITY.md, "Stage learning-rate multipliers"). lr_outer 2, lr_decay 0.5 gives the paper's (2.0, 1.5, 1.0)."""
    return [1.0 + (lr_outer - 1.0) * lr_decay**s for s in range(stages)] + [1.0]


def chunking_stages(cfg: DNAHNetConfig) -> int:
    """Number of hierarchy stages of a config (after a variant dropped inner ones)."""
    return len(resolve(cfg).ratios)


def _searched_overrides(values: dict[str, float], cfg: DNAHNetConfig) -> dict[str, Any]:
    """A tuner trial's alpha, lr_outer and lr_decay -> model.alpha and model.lr_multipliers."""
    multipliers = stage_multipliers(values["lr_outer"], values.get("lr_decay", 1.0), chunking_stages(cfg))
    return {"alpha": values["alpha"], "lr_multipliers": multipliers}


# What the tuner (sweeps/optuna_study.py) searches for dnaHNet besides the shared dimensions; the ranges are its
# SearchSpace fields of the same names (--alpha, --lr-outer, --lr-decay).
SEARCH = FamilySearch(
    dimensions=(
        SearchDimension("alpha", log=True),  # ratio-loss weight (paper: 0.01-0.02)
        SearchDimension("lr_outer", log=True),  # the outermost stage's lr multiplier
        # each stage inward keeps this share of the excess over 1; with one stage only lr_outer exists
        SearchDimension("lr_decay", searched=lambda cfg: chunking_stages(cfg) >= 2),
    ),
    model_overrides=_searched_overrides,
)

register_family("dnahnet", DNAHNetConfig, DNAHNet, PRESETS, variants=VARIANTS, size_rule=SIZE_RULE, search=SEARCH)
