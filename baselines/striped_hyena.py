"""StripedHyena 2 (Evo 2's architecture), reimplemented from scratch (Ku et al. 2025;
Brixi et al. 2025; docs/FIDELITY.md, "StripedHyena 2").

Each layer is a pre-norm residual block, RMSNorm -> mixer -> residual, RMSNorm -> gated MLP -> residual
(the shared `dnahnet.nn.Block`). Mixers follow a repeating pattern of letters:

    S  Hyena-SE (short explicit filter, 7 taps)
    M  Hyena-MR (medium regularised explicit filter, 128 taps, fixed decay)
    L  Hyena-LI (long implicit modal filter, FFT convolution)
    A  multi-head attention (the shared `dnahnet.nn.Attention`, rotary on the full head dim)

Evo 2's period-7 stripe "SMLASML" puts attention at layers 3, 10, 17, ... The Hyena operator and its
filters live in baselines/hyena.py.

Block details follow Evo 2 as it was trained (Savanna) and configured for inference (Vortex
`configs/evo2-1b-8k.yml`); docs/FIDELITY.md lists every value and its source:
- gated MLP l3(act(l1 x) * l2 x), d_int = 8/3 d rounded up, no biases. Evo 2's activations: exact GELU in
  layer 0, identity (a bilinear GLU) in every later layer. Vortex flags this `evo2_style_activations`
  (vortex/model/layers.py, ParallelGatedMLP); in Savanna it comes from `get_activation(global_config,
  gating_act)` in the first Hyena-MR/LI operator overwriting `global_config.activation` with "identity"
  before the later MLPs are built (savanna/model/activations.py, savanna/model/operators/hyena/hyena.py);
- tied input/output embeddings (Vortex `tie_embeddings: True`, Savanna `no_weight_tying: false`);
- RMSNorm eps 1e-6 (`eps: 0.000001`, Savanna `rms_norm_epsilon: 1.0e-6`), final norm;
- attention: QKV without bias, output projection with bias (`qkv_proj_bias: False`,
  `mha_out_proj_bias: True`), rotary on the full head dim, base 10000, non-interleaved;
- initialisation as Savanna (savanna/model/init_functions.py, `init_method: small_init`,
  `output_layer_init_method: wang_init`): embedding, Hyena in_proj, QKV and MLP input weights
  N(0, 2/(5d)); Hyena, attention and MLP output weights N(0, (2/(n_layers sqrt(d)))^2); biases 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from baselines.hyena import HyenaOperator, HyenaSpec, hyena_flops
from dnahnet import flops
from dnahnet import typed_config as cfglib
from dnahnet.family import Recipe, SizeRule, aspect_depth, fixed_depth, plain_shape, width_grid
from dnahnet.nn import Attention, Block, BlockStack, LanguageModel, LMOutput, ParamCounts, RMSNorm
from dnahnet.nn.mlp import GATE_ACTIVATIONS, round_up
from dnahnet.registry import register_family
from dnahnet.tokenizer import VOCAB_SIZE

MIXER_LETTERS = {"S": "SE", "M": "MR", "L": "LI", "A": "attention"}


@dataclass
class StripedHyenaConfig:
    d_model: int = 64  # residual width d
    n_layers: int = 7  # blocks (mixer + gated MLP each)
    n_heads: int = 4  # attention heads in the "A" layers (head_dim = d_model / n_heads)
    d_intermediate: int = 0  # gated-MLP hidden width; 0 = 8/3 d rounded up to `mlp_multiple`
    mlp_multiple: int = 128  # rounding of the automatic d_intermediate (smaller at tiny sizes)
    mlp_activation: str = "gelu"  # gate activation of the MLP: "gelu" (Evo 2), "silu", "identity"
    evo2_style_activations: bool = True  # Evo 2: only layer 0's MLP uses mlp_activation, later ones identity
    pattern: str = "SMLASML"  # mixer letters repeated over the layers: S=SE, M=MR, L=LI, A=attention
    filter_group_size: int = 16  # channels sharing one SE / MR filter (one filter per group)
    featurizer_length: int = 3  # taps of the causal depthwise featurizer conv over the 3d channels
    se_length: int = 7  # Hyena-SE filter taps
    mr_length: int = 128  # Hyena-MR filter taps
    mr_decay_min: float = 0.01  # smallest MR decay rate r_g (rates log-spaced over the groups)
    mr_decay_max: float = 100.0  # largest MR decay rate r_g
    l_train: int = 8192  # L_train of the MR decay exp(-r_g t/(L_train-1)): the run's context (data.seq_len)
    li_order: int = 16  # modal states per channel in Hyena-LI
    li_p_init: float = -1.0  # LI poles lambda = -exp(p) exp(gamma): initial p
    li_gamma_min: float = 0.01  # exp(gamma) ~ U[li_gamma_min, li_gamma_max] at init
    li_gamma_max: float = 0.1  # (decay time constants of ~27 to ~270 positions with p = -1)
    fft_min_length: int = 128  # explicit filters this long or longer run by FFT (MR), shorter by conv1d (SE)
    vocab_size: int = VOCAB_SIZE  # nucleotide vocabulary incl. special tokens
    mr_small_init: float = 1e-5  # MR taps ~ N(0, 1/l_train) * this at init (Savanna's small_init)
    li_residue_scale: float = 0.1  # LI residues ~ this * N(0, 1/li_order) at init (Savanna's implicit_modal)
    d_init: float = 0.0  # initial D of MR and LI layers (Vortex: zeros)
    rotary_base: float = 10000.0  # rotary frequency base of the attention layers
    attn_backend: str = field(default="auto", metadata=cfglib.NEUTRAL)  # "auto" | "torch" | "kernel" (flash-attn)
    attn_out_bias: bool = True  # bias on the attention output projection (Evo 2: mha_out_proj_bias)
    tie_embeddings: bool = True  # LM head shares the token embedding's weight (Evo 2)
    norm_eps: float = 1e-6  # RMSNorm epsilon (Evo 2)
    init_std: float = 0.0  # std of embedding and input projections; 0 = sqrt(2/(5 d)) (Savanna small_init)
    out_init_std: float = 0.0  # std of output projections; 0 = 2/(n_layers sqrt(d)) (Savanna wang_init)

    def __post_init__(self):
        if not self.pattern or set(self.pattern) - set(MIXER_LETTERS):
            raise ValueError(
                f"StripedHyenaConfig.pattern={self.pattern!r}: use letters from {''.join(MIXER_LETTERS)}"
            )
        if self.n_layers < 1:
            raise ValueError(f"StripedHyenaConfig.n_layers must be >= 1, got {self.n_layers}")
        if self.d_model % self.filter_group_size:
            raise ValueError(
                f"StripedHyenaConfig.filter_group_size={self.filter_group_size} must divide d_model={self.d_model}"
            )
        if "A" in self.layer_letters and self.d_model % self.n_heads:
            raise ValueError(f"StripedHyenaConfig.n_heads={self.n_heads} must divide d_model={self.d_model}")
        if self.l_train < 2:
            raise ValueError(f"StripedHyenaConfig.l_train must be >= 2, got {self.l_train}")
        if self.mlp_activation not in GATE_ACTIVATIONS:
            raise ValueError(
                f"StripedHyenaConfig.mlp_activation={self.mlp_activation!r}: use one of {sorted(GATE_ACTIVATIONS)}"
            )

    @property
    def d_ff(self) -> int:
        return self.d_intermediate or round_up(8 * self.d_model / 3, self.mlp_multiple)

    @property
    def layer_letters(self) -> str:
        """One mixer letter per layer: the pattern repeated and cut to n_layers."""
        return (self.pattern * -(-self.n_layers // len(self.pattern)))[: self.n_layers]

    @property
    def hyena_spec(self) -> HyenaSpec:
        return HyenaSpec(
            featurizer_length=self.featurizer_length, group_size=self.filter_group_size,
            se_length=self.se_length, mr_length=self.mr_length,
            mr_decay_range=(self.mr_decay_min, self.mr_decay_max), l_train=self.l_train,
            li_order=self.li_order, li_p_init=self.li_p_init,
            li_gamma_range=(self.li_gamma_min, self.li_gamma_max), fft_min_length=self.fft_min_length,
            mr_small_init=self.mr_small_init, li_residue_scale=self.li_residue_scale, d_init=self.d_init,
        )

    def layer_mlp_activation(self, layer: int) -> str:
        """The MLP gate activation of one layer (Evo 2: mlp_activation in layer 0, identity after)."""
        return self.mlp_activation if layer == 0 or not self.evo2_style_activations else "identity"

    @property
    def in_std(self) -> float:
        """Savanna's small_init, sqrt(2 / (5 d)), unless init_std is set."""
        return self.init_std or math.sqrt(2 / (5 * self.d_model))

    @property
    def out_std(self) -> float:
        """Savanna's wang_init, 2 / (n_layers sqrt(d)), unless out_init_std is set."""
        return self.out_init_std or 2 / (self.n_layers * math.sqrt(self.d_model))


class StripedHyenaLM(LanguageModel):
    def __init__(self, config: StripedHyenaConfig):
        super().__init__()
        self.config = config
        c = config
        blocks = []
        for i, letter in enumerate(c.layer_letters):
            if letter == "A":
                mixer = Attention(
                    c.d_model, c.n_heads, rotary_base=c.rotary_base, backend=c.attn_backend, out_bias=c.attn_out_bias
                )
            else:
                mixer = HyenaOperator(c.d_model, MIXER_LETTERS[letter], c.hyena_spec)
            activation = c.layer_mlp_activation(i)
            blocks.append(Block(mixer, c.d_model, c.d_ff, norm_eps=c.norm_eps, mlp_activation=activation))
        self.embedding = nn.Embedding(c.vocab_size, c.d_model)
        self.backbone = BlockStack(blocks, c.d_model, final_norm=True, norm_eps=c.norm_eps)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        if c.tie_embeddings:
            self.lm_head.weight = self.embedding.weight  # one (V, d) matrix: logits = h E^T
        self._init_savanna()

    @torch.no_grad()
    def _init_savanna(self) -> None:
        """Savanna's init_method / output_layer_init_method (savanna/model/init_functions.py): small_init
        N(0, 2/(5d)) on the embedding (tied: the LM head too) and every input projection (Hyena in_proj,
        attention QKV, MLP fc1 = Savanna's w1 and w2), wang_init N(0, (2/(n_layers sqrt d))^2) on every
        output projection (Hyena and attention out_proj = Savanna's `dense`, MLP fc2 = w3), biases 0.
        The Hyena filters, featurizer and D keep the init of baselines/hyena.py; norms start at 1."""
        c = self.config
        nn.init.normal_(self.embedding.weight, std=c.in_std)
        if not c.tie_embeddings:  # untied (an ablation): the head gets the same small init
            nn.init.normal_(self.lm_head.weight, std=c.in_std)
        for block in self.backbone.blocks:
            mixer = block.mixer
            ins = [mixer.Wqkv if isinstance(mixer, Attention) else mixer.in_proj, block.mlp.fc1]
            for linear in ins:
                nn.init.normal_(linear.weight, std=c.in_std)
            for linear in (mixer.out_proj, block.mlp.fc2):
                nn.init.normal_(linear.weight, std=c.out_std)
                if linear.bias is not None:
                    nn.init.zeros_(linear.bias)

    def hyena_operators(self) -> list[HyenaOperator]:
        return [b.mixer for b in self.backbone.blocks if isinstance(b.mixer, HyenaOperator)]

    def param_counts(self) -> ParamCounts:
        """Tied embeddings are one (V, d) matrix: counted once in the total, removed once."""
        total = sum(p.numel() for p in self.parameters())  # parameters() yields a shared tensor once
        embed = {id(p): p.numel() for p in (self.embedding.weight, *self.lm_head.parameters())}
        return ParamCounts(total=total, non_embedding=total - sum(embed.values()))

    def weight_decay_names(self) -> set[str]:
        """Savanna's grouping (savanna/model/utils.py, get_params_for_weight_decay_optimization, with
        hyena_filter_wd = 0): no decay on norm scales, biases and the MR filter taps
        (ExplicitSingleDecayFilter); everything else decays, the embedding, the featurizer, the SE taps
        (they live in a child conv module that the exemption does not reach), D (`conv_bias`) and the
        LI residues and poles (ImplicitModalFilter is not in Savanna's exempt list) included."""
        exempt = {id(m.filter.h) for m in self.hyena_operators() if m.kind == "MR"}
        exempt |= {id(p) for m in self.modules() if isinstance(m, RMSNorm) for p in m.parameters()}
        return {n for n, p in self.named_parameters() if not n.endswith("bias") and id(p) not in exempt}

    def forward(self, input_ids: torch.Tensor) -> LMOutput:
        h = self.backbone(self.embedding(input_ids))  # (B, L, D)
        return LMOutput(logits=self.lm_head(h))  # (B, L, V)

    # ------------------------------------------------------------------ FLOPs
    def flops_breakdown(self, seq_len: int) -> dict[str, float]:
        """Forward FLOPs per token by part, summed over layers.

        Keys: Hyena parts (see baselines.hyena.hyena_flops: hyena_proj, featurizer, se_conv, mr_fft or
        mr_conv, li_fft), "attention" (dnahnet.flops.attention_flops, full L as Chinchilla) of which
        "attention_softmax" (3 h L) is the part FlopCounterMode does not see, "mlp", "lm_head".
        `attention_softmax` is informational: it is already inside `attention`.
        """
        c = self.config
        parts: dict[str, float] = {}

        def add(key: str, value: float) -> None:
            parts[key] = parts.get(key, 0.0) + value

        for letter in c.layer_letters:
            if letter == "A":
                add("attention", flops.attention_flops(c.d_model, c.n_heads, c.d_model // c.n_heads, seq_len))
                add("attention_softmax", float(3 * c.n_heads * seq_len))
            else:
                for key, value in hyena_flops(c.d_model, MIXER_LETTERS[letter], seq_len, c.hyena_spec).items():
                    add(key, value)
            add("mlp", flops.swiglu_flops(c.d_model, c.d_ff))  # any gated MLP: 6 d d_int
        add("lm_head", flops.lm_head_flops(c.d_model, c.vocab_size))
        return parts

    def flops_per_token(self, seq_len: int) -> flops.FlopsPerToken:
        parts = self.flops_breakdown(seq_len)
        total = sum(v for k, v in parts.items() if k != "attention_softmax")
        return flops.FlopsPerToken.from_forward(total)

    # ------------------------------------------------------------------ decoding
    def init_cache(self, batch_size: int, max_seqlen: int) -> list:
        p = self.lm_head.weight
        return self.backbone.allocate_cache(batch_size, max_seqlen, device=p.device, dtype=p.dtype)

    def prefill(self, input_ids: torch.Tensor, cache: list) -> torch.Tensor:
        """The prompt (B, P) in one parallel pass (FFT convolutions, the LI state in closed form) into a
        fresh cache; the logits (B, V) after its last position."""
        h = self.backbone(self.embedding(input_ids), cache=cache)  # (B, P, D)
        return self.lm_head(h[:, -1])  # (B, V)

    def step(self, tokens: torch.Tensor, cache: list) -> torch.Tensor:
        h = self.backbone.step(self.embedding(tokens), cache)  # (B, D)
        return self.lm_head(h)  # (B, V)


def _preset(d_model: int, n_layers: int, n_heads: int, mlp_multiple: int = 128, **extra):
    return lambda: StripedHyenaConfig(
        d_model=d_model, n_layers=n_layers, n_heads=n_heads, mlp_multiple=mlp_multiple, **extra
    )


# `tiny` trains on a CPU in seconds (one full period of the stripe); `small` matches Transformer++
# `small` (~3M) for benchmarks; the rest are paper-like sizes. Non-embedding parameters ~12.3 d^2 per
# layer, Hyena and attention layers alike (in 3 d^2 + out d^2 vs QKV 3 d^2 + out d^2, plus gated MLP).
# `1b` follows Evo 2 1B's shape (Zymrael/vortex configs/evo2-1b-8k.yml: d 1920, 25 layers, 15 heads of
# 128, MLP 5120, 128 SE / MR filter groups, i.e. groups of 15 channels).
PRESETS = {
    "tiny": _preset(64, 7, 4, mlp_multiple=16),  # 0.36M
    "small": _preset(256, 4, 4, mlp_multiple=64),  # 3.2M
    "7m": _preset(256, 9, 4, mlp_multiple=64),  # 7.3M
    "40m": _preset(512, 12, 8),  # 38.7M
    "100m": _preset(768, 14, 12),  # 99.4M
    "1b": _preset(1920, 25, 15, filter_group_size=15),  # 1.11B
}

# How the sweeps' ladders grow it (sweeps/ladders.py). SE/MR filter groups per layer: the same number at every
# width of a recipe, so every rung has the same MR decay rates r_g (log-spaced over the groups). Evo 2 uses
# groups of 16 channels at widths of 1920+ (120+ groups); a fixed group *size* at CPU widths gave d8 one rate
# (r = 0.01, no decay) and d48 six.
CPU_FILTER_GROUPS = 8  # cpu recipe, widths 8..256: 1..32 channels per group
PAPER_FILTER_GROUPS = 64  # paper recipe, widths 256..4096: 4..64 channels per group
SIZE_RULE = SizeRule(
    shape_fn=plain_shape, min_depth=4,
    recipes={"cpu": Recipe(widths=width_grid(8, 256, 8), head_dim=8, mlp_multiple=8, depth=fixed_depth(4),
                           extra=dict(filter_groups=CPU_FILTER_GROUPS)),
             "paper": Recipe(widths=width_grid(256, 4096, 64), head_dim=64, mlp_multiple=128,
                             depth=aspect_depth(64, 4), extra=dict(filter_groups=PAPER_FILTER_GROUPS))},
    center_tokens_per_param=350.0,  # dnaHNet paper: SH2 compute-optimal ~68B tokens at 8e19 FLOPs
    note="cpu: 4 layers (SE-MR-LI-MHA: one attention layer), head dim 8, 8 filter groups at every width; "
         "paper: depth = width/64 (>= 4), 64 filter groups",
)

register_family("stripedhyena", StripedHyenaConfig, StripedHyenaLM, PRESETS, context_field="l_train",
                size_rule=SIZE_RULE)
