"""The Hyena operator of StripedHyena 2 (Evo 2) and its three filters (Evo 2, Brixi et al. 2025; StripedHyena 2,
Ku et al. 2025; docs/FIDELITY.md, "StripedHyena 2").

    u       = in_proj(x)                         # (B, L, 3d), no bias
    q, k, v = split(featurizer(u))               # causal depthwise conv, kernel 3, all 3d channels
    s       = k * v
    y       = q * (h conv s + D * s)             # h: this layer's filter; SE has no D term
    out     = out_proj(y)                        # (B, L, d), with bias

Filters (h_t multiplies the input t positions back, h_0 the current one):
- **SE** (short explicit): a free filter of length 7, one per group of `group_size` channels, no D.
- **MR** (medium regularised): a free filter of length 128 per group, times a fixed decay
  exp(-r_g t / (L_train - 1)) with r_g log-spaced over the groups in [0.01, 100]; D term. L_train is
  the run's training context, not the filter length: Savanna builds the decay over `seq_length` points
  of linspace(0, 1) and keeps the first 128 taps (Zymrael/savanna
  savanna/model/operators/hyena/parametrization/explicit.py, ExplicitSingleDecayFilter, preset "weak").
- **LI** (long implicit, modal): one filter per channel, h_t = sum_{n<16} R_n exp(lambda_n t) with
  lambda_n = -exp(p_n) exp(gamma_n) < 0 (p = -1, gamma = log U[0.01, 0.1] at init); D term.

Initial values follow Savanna, the code that trained Evo 2 (HyenaSpec holds them):
- featurizer and SE taps ~ U(-b, b), b = 1/sqrt(featurizer_length): Savanna's ParallelCausalDepthwiseConv1d
  draws every short conv, the SE filter included, with bound sqrt(1 / short_conv_L)
  (savanna/model/operators/hyena/hyena.py);
- MR taps ~ N(0, 1/L_train) * 1e-5 ("small_init" of ExplicitSingleDecayFilter: randn(G, L_cache) /
  sqrt(L_cache) * 1e-5 with L_cache = seq_length): the MR branch starts switched off;
- LI residues R = 0.1 * randn / sqrt(order), p = -1, gamma = log U[0.01, 0.1]
  (savanna/model/operators/hyena/parametrization/implicit_modal.py, ImplicitModalFilter);
- D = 0. Savanna allocates its D (`conv_bias`) with torch.empty and never fills it (uninitialised
  memory, no defined value); Vortex, Evo 2's inference code, builds D = zeros (Zymrael/vortex
  vortex/model/model.py, HyenaCascade), which we follow.

How each convolution is computed (an explicit choice, not a heuristic):
- explicit (SE, MR) filters shorter than `fft_min_length` run as a grouped causal `conv1d` (the group's
  filter repeated over its channels); filters at least that long run as an FFT convolution whose
  filter spectrum is computed once per group and broadcast over the group's channels. With the
  default `fft_min_length = 128` SE runs as conv1d and MR by FFT, as in Evo 2;
- LI always runs as an FFT convolution, zero-padded to 2L, in float32 whatever the input dtype.

Decoding (`step`): the featurizer and the FIR filters keep their last k - 1 inputs; LI runs as its
diagonal recurrence x_t = exp(lambda) x_{t-1} + s_t with 16 real float32 states per channel,
y = q * (sum_n R_n x_t,n + D s_t). A prefill (forward with a fresh cache) sets the LI state in closed
form, x_{L-1,n} = sum_t exp(lambda_n (L-1-t)) s_t: one einsum per chunk of positions, no loop over them.

FLOPs (`hyena_flops`): in 6 d^2, featurizer 2 * 3 * 3 d, SE 2 * 7 d, MR 2 * 128 d, LI FFT
10 log2(2L) d (dnahnet.flops.fft_conv_flops), out 2 d^2. The explicit filters are counted as the
direct convolution's multiply-adds whichever path computes them (the useful work, the same on every
device); the gates (k * v, q * y), the D term, the bias and building the filters are O(d) elementwise
work per token and not counted (dnahnet.flops convention). `FlopCounterMode` sees the projections and
the conv1d paths but not the FFTs: compare with it after removing the `*_fft` terms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dnahnet import flops as flopslib

FILTER_KINDS = ("SE", "MR", "LI")


# ---------------------------------------------------------------------------------------------- convs
def causal_conv_direct(u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """y_t = sum_j h_j u_{t-j} per channel by a depthwise conv1d. u: (B, C, L); h: (C, K) -> (B, C, L)."""
    K = h.shape[-1]
    weight = h.flip(-1)[:, None, :].to(u.dtype)  # (C, 1, K): conv1d cross-correlates, so reverse time
    return F.conv1d(F.pad(u, (K - 1, 0)), weight, groups=u.shape[1])  # (B, C, L)


def causal_conv_fft(u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The same causal convolution by FFT, zero-padded to 2L, in float32.

    u: (B, C, L) or (B, G, g, L) with h: (C, K) or (G, 1, K) (one filter spectrum shared by a group's
    g channels through broadcasting). Taps beyond L cannot reach any output and are dropped.
    """
    L = u.shape[-1]
    n = 2 * L  # >= L + K - 1 for K <= L: the circular convolution does not wrap around
    h = h[..., :L].float()
    u_f = torch.fft.rfft(u.float(), n=n)  # (..., n/2 + 1) complex
    h_f = torch.fft.rfft(h, n=n)
    return torch.fft.irfft(u_f * h_f, n=n)[..., :L].to(u.dtype)


def last_inputs(x: torch.Tensor, count: int) -> torch.Tensor:
    """The last `count` positions of x (B, C, L), left-padded with zeros when L < count -> (B, C, count)."""
    if count == 0:
        return x[..., :0]
    return F.pad(x, (max(0, count - x.shape[-1]), 0))[..., -count:]


# ---------------------------------------------------------------------------------------------- filters
class ExplicitFilter(nn.Module):
    """Hyena-SE / Hyena-MR: a free FIR filter per group of channels (+ optional fixed decay, D term).

    Args:
        d_model: channels d.
        length: filter taps K (SE 7, MR 128).
        group_size: channels sharing one filter (d / group_size filters).
        decay_range: (r_min, r_max) of the fixed decay exp(-r_g t / (decay_length - 1)), r_g
            log-spaced over the groups; None = no decay (SE).
        decay_length: L_train of the decay (the training context length).
        use_d: add the D * s skip term (MR yes, SE no).
        fft_min_length: filters this long or longer are applied by FFT, shorter ones by conv1d.
        init: "normal" (taps ~ N(0, init_scale^2)) or "uniform" (taps ~ U(-init_scale, init_scale)).
        init_scale: std or bound of the taps; None = 1/sqrt(length) (a unit-gain random filter).
        d_init: initial value of every D entry.
    """

    def __init__(
        self,
        d_model: int,
        length: int,
        group_size: int,
        decay_range: tuple[float, float] | None = None,
        decay_length: int = 8192,
        use_d: bool = True,
        fft_min_length: int = 128,
        init: str = "normal",
        init_scale: float | None = None,
        d_init: float = 0.0,
    ):
        super().__init__()
        if length < 1:
            raise ValueError(f"filter length must be >= 1, got {length}")
        if group_size < 1 or d_model % group_size:
            raise ValueError(f"filter group size {group_size} must divide d_model={d_model}")
        self.d_model, self.length, self.group_size = d_model, length, group_size
        self.n_groups = d_model // group_size
        self.use_fft = length >= fft_min_length
        scale = 1 / math.sqrt(length) if init_scale is None else float(init_scale)
        if init == "normal":
            h = torch.randn(self.n_groups, length) * scale  # (G, K)
        elif init == "uniform":
            h = torch.empty(self.n_groups, length).uniform_(-scale, scale)  # (G, K)
        else:
            raise ValueError(f"explicit filter init must be 'normal' or 'uniform', got {init!r}")
        self.h = nn.Parameter(h)
        if decay_range is None:
            self.register_buffer("decay", None, persistent=False)
        else:
            r_min, r_max = decay_range
            if not 0 < r_min <= r_max:
                raise ValueError(f"decay range must satisfy 0 < r_min <= r_max, got {decay_range}")
            if decay_length < 2:
                raise ValueError(f"decay length (L_train) must be >= 2, got {decay_length}")
            rates = torch.logspace(math.log10(r_min), math.log10(r_max), self.n_groups, dtype=torch.float64)
            t = torch.arange(length, dtype=torch.float64)
            decay = torch.exp(-rates[:, None] * t / (decay_length - 1))  # (G, K)
            self.register_buffer("decay", decay.float(), persistent=False)
        if use_d:
            self.D = nn.Parameter(torch.full((d_model,), float(d_init)))
        else:
            self.D = None

    def kernel(self) -> torch.Tensor:
        """The group filters (G, K), decay applied."""
        return self.h if self.decay is None else self.h * self.decay

    def channel_kernel(self) -> torch.Tensor:
        """One filter per channel (d, K): each group's filter repeated over its channels."""
        return self.kernel().repeat_interleave(self.group_size, dim=0)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """s: (B, d, L) -> h conv s (+ D s): (B, d, L)."""
        B, d, L = s.shape
        if self.use_fft:
            grouped = s.view(B, self.n_groups, self.group_size, L)  # (B, G, g, L)
            y = causal_conv_fft(grouped, self.kernel()[:, None, :]).view(B, d, L)
        else:
            y = causal_conv_direct(s, self.channel_kernel())
        return y if self.D is None else y + self.D[:, None].to(s.dtype) * s

    # -------------------------------------------------------------- decoding
    def allocate_state(self, batch_size: int, device, dtype) -> torch.Tensor:
        return torch.zeros(batch_size, self.d_model, self.length - 1, device=device, dtype=dtype)  # last K-1 s

    def prefill(self, s: torch.Tensor, state: torch.Tensor) -> None:
        state.copy_(last_inputs(s, self.length - 1))

    def step(self, s: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """s: (B, d) -> (B, d); state (B, d, K-1) shifted in place."""
        window = torch.cat([state, s[..., None].to(state.dtype)], dim=-1)  # (B, d, K), oldest first
        y = (window * self.channel_kernel().flip(-1).to(window.dtype)).sum(-1).to(s.dtype)  # (B, d)
        state.copy_(window[..., 1:])
        return y if self.D is None else y + self.D.to(s.dtype) * s


class ModalFilter(nn.Module):
    """Hyena-LI: h_t = sum_n R_n exp(lambda_n t) per channel, lambda_n = -exp(p_n) exp(gamma_n) < 0; D term.

    Both p and gamma are learned (Evo 2's parameterisation). Which parameters weight decay reaches is
    the model's recipe (StripedHyenaLM.weight_decay_names follows Savanna, which decays them).
    """

    def __init__(
        self,
        d_model: int,
        order: int = 16,
        p_init: float = -1.0,
        gamma_range: tuple[float, float] = (0.01, 0.1),
        prefill_chunk: int = 2048,
        residue_scale: float = 0.1,
        d_init: float = 0.0,
    ):
        super().__init__()
        g_min, g_max = gamma_range
        if not 0 < g_min <= g_max:
            raise ValueError(f"gamma range must satisfy 0 < min <= max, got {gamma_range}")
        if order < 1:
            raise ValueError(f"LI order must be >= 1, got {order}")
        self.d_model, self.order, self.prefill_chunk = d_model, order, prefill_chunk
        # (d, N) residues: residue_scale * randn / sqrt(N), Savanna's ImplicitModalFilter with scale 0.1
        self.R = nn.Parameter(residue_scale * torch.randn(d_model, order) / math.sqrt(order))
        self.p = nn.Parameter(torch.full((d_model, order), float(p_init)))  # (d, N)
        self.gamma = nn.Parameter(torch.empty(d_model, order).uniform_(g_min, g_max).log())  # (d, N)
        self.D = nn.Parameter(torch.full((d_model,), float(d_init)))

    def poles(self) -> torch.Tensor:
        """lambda (d, N) in float32, strictly negative."""
        return -torch.exp(self.p.float() + self.gamma.float())

    def kernel(self, seq_len: int) -> torch.Tensor:
        """The materialised filter h (d, L) in float32 (an elementwise product and sum, not a matmul)."""
        t = torch.arange(seq_len, device=self.R.device, dtype=torch.float32)
        modes = torch.exp(self.poles()[..., None] * t)  # (d, N, L)
        return (self.R.float()[..., None] * modes).sum(1)  # (d, L)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """s: (B, d, L) -> h conv s + D s (B, d, L): FFT padded to 2L, float32."""
        y = causal_conv_fft(s, self.kernel(s.shape[-1]))
        return y + self.D[:, None].to(s.dtype) * s

    # -------------------------------------------------------------- decoding
    def allocate_state(self, batch_size: int, device, dtype) -> torch.Tensor:
        return torch.zeros(batch_size, self.d_model, self.order, device=device, dtype=torch.float32)  # modal x

    def prefill(self, s: torch.Tensor, state: torch.Tensor) -> None:
        """x_{L-1,n} = sum_t exp(lambda_n (L-1-t)) s_t, one einsum per chunk of positions."""
        L = s.shape[-1]
        lam = self.poles()  # (d, N)
        x = torch.zeros_like(state)
        for start in range(0, L, self.prefill_chunk):  # bounded memory: (d, N, chunk) weights at a time
            stop = min(L, start + self.prefill_chunk)
            lag = (L - 1 - torch.arange(start, stop, device=s.device)).float()  # (C,)
            weights = torch.exp(lam[..., None] * lag)  # (d, N, C)
            x = x + torch.einsum("bdc,dnc->bdn", s[..., start:stop].float(), weights)
        state.copy_(x)

    def step(self, s: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """s: (B, d) -> (B, d); state (B, d, N) float32 updated in place."""
        state.mul_(torch.exp(self.poles())).add_(s.float()[..., None])  # x_t = exp(lambda) x_{t-1} + s_t
        y = (state * self.R.float()).sum(-1)  # (B, d)
        return y.to(s.dtype) + self.D.to(s.dtype) * s


# ---------------------------------------------------------------------------------------------- operator
@dataclass
class HyenaCache:
    """Decoding state of one Hyena operator; batch dimension first."""

    conv_state: torch.Tensor  # (B, 3d, k_f - 1) last featurizer inputs (in_proj outputs), oldest first
    filter_state: torch.Tensor  # SE/MR: (B, d, K - 1) last inputs s; LI: (B, d, N) float32 modal states


@dataclass
class HyenaSpec:
    """Hyperparameters of the Hyena operators of one model."""

    featurizer_length: int = 3  # causal depthwise conv over the 3d projected channels
    group_size: int = 16  # channels sharing one SE / MR filter
    se_length: int = 7  # Hyena-SE filter taps
    mr_length: int = 128  # Hyena-MR filter taps
    mr_decay_range: tuple[float, float] = (0.01, 100.0)  # MR decay rates r_g, log-spaced over groups
    l_train: int = 8192  # L_train of the MR decay exp(-r_g t / (L_train - 1)): the training context
    li_order: int = 16  # modal states per channel in Hyena-LI
    li_p_init: float = -1.0  # LI poles: lambda = -exp(p) exp(gamma)
    li_gamma_range: tuple[float, float] = (0.01, 0.1)  # exp(gamma) drawn uniformly in this range
    fft_min_length: int = 128  # explicit filters this long or longer use the FFT path, shorter conv1d
    mr_small_init: float = 1e-5  # MR taps ~ N(0, 1/L_train) * this (Savanna's small_init)
    li_residue_scale: float = 0.1  # LI residues ~ this * N(0, 1/li_order) (Savanna's implicit_modal)
    d_init: float = 0.0  # initial D of MR and LI (Vortex: zeros; Savanna leaves it uninitialised)


class HyenaOperator(nn.Module):
    """The Hyena mixer: in_proj -> featurizer -> q * (h conv (k * v) + D k v) -> out_proj.

    Implements the mixer interface: `forward(x (B, L, d), cache=None)` (a fresh cache makes it a
    prefill), `allocate_cache`, `step(x (B, d), cache)`.
    """

    def __init__(self, d_model: int, kind: str, spec: HyenaSpec | None = None):
        super().__init__()
        spec = spec or HyenaSpec()
        if kind not in FILTER_KINDS:
            raise ValueError(f"unknown Hyena filter {kind!r}; expected one of {FILTER_KINDS}")
        if spec.featurizer_length < 1:
            raise ValueError(f"featurizer_length must be >= 1, got {spec.featurizer_length}")
        self.d_model, self.kind, self.spec = d_model, kind, spec
        self.in_proj = nn.Linear(d_model, 3 * d_model, bias=False)
        self.featurizer = nn.Conv1d(
            3 * d_model, 3 * d_model, spec.featurizer_length, groups=3 * d_model, bias=False
        )  # applied to a left-padded input: causal
        # Savanna draws every short depthwise conv (featurizer and SE filter alike) from
        # U(+-sqrt(1 / short_conv_L)), short_conv_L being the featurizer length (savanna/model/operators/
        # hyena/hyena.py, ParallelCausalDepthwiseConv1d): the SE bound does not depend on its 7 taps.
        short_bound = 1 / math.sqrt(spec.featurizer_length)
        nn.init.uniform_(self.featurizer.weight, -short_bound, short_bound)
        if kind == "SE":
            self.filter = ExplicitFilter(
                d_model, spec.se_length, spec.group_size, use_d=False, fft_min_length=spec.fft_min_length,
                init="uniform", init_scale=short_bound,
            )
        elif kind == "MR":
            self.filter = ExplicitFilter(
                d_model, spec.mr_length, spec.group_size, decay_range=spec.mr_decay_range,
                decay_length=spec.l_train, use_d=True, fft_min_length=spec.fft_min_length,
                init="normal", init_scale=spec.mr_small_init / math.sqrt(spec.l_train), d_init=spec.d_init,
            )
        else:
            self.filter = ModalFilter(
                d_model, spec.li_order, spec.li_p_init, spec.li_gamma_range,
                residue_scale=spec.li_residue_scale, d_init=spec.d_init,
            )
        self.out_proj = nn.Linear(d_model, d_model, bias=True)
        self.out_proj._is_residual_out = True
        nn.init.zeros_(self.out_proj.bias)  # Savanna zeroes linear biases; the weights are the model's to set

    def _featurize(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """u: (B, 3d, L) -> q, s = k * v, each (B, d, L)."""
        z = self.featurizer(F.pad(u, (self.spec.featurizer_length - 1, 0)))  # (B, 3d, L)
        q, k, v = z.split(self.d_model, dim=1)  # 3 x (B, d, L)
        return q, k * v

    def forward(self, x: torch.Tensor, cache: HyenaCache | None = None) -> torch.Tensor:
        u = self.in_proj(x).transpose(1, 2)  # (B, 3d, L)
        q, s = self._featurize(u)
        y = q * self.filter(s)  # (B, d, L)
        if cache is not None:  # prefill: the state after the last position
            cache.conv_state.copy_(last_inputs(u, self.spec.featurizer_length - 1))
            self.filter.prefill(s, cache.filter_state)
        return self.out_proj(y.transpose(1, 2))  # (B, L, d)

    def allocate_cache(self, batch_size: int, max_seqlen: int, device=None, dtype=None) -> HyenaCache:
        """max_seqlen is not needed: every state has a fixed size."""
        device = device or self.in_proj.weight.device
        dtype = dtype or self.in_proj.weight.dtype
        conv = torch.zeros(
            batch_size, 3 * self.d_model, self.spec.featurizer_length - 1, device=device, dtype=dtype
        )
        return HyenaCache(conv_state=conv, filter_state=self.filter.allocate_state(batch_size, device, dtype))

    def step(self, x: torch.Tensor, cache: HyenaCache) -> torch.Tensor:
        """x: (B, d) -> (B, d), one position; cache updated in place."""
        u = self.in_proj(x)  # (B, 3d)
        window = torch.cat([cache.conv_state, u[..., None].to(cache.conv_state.dtype)], dim=-1)  # (B, 3d, k_f)
        z = (window * self.featurizer.weight[:, 0, :].to(window.dtype)).sum(-1).to(u.dtype)  # (B, 3d)
        cache.conv_state.copy_(window[..., 1:])
        q, k, v = z.split(self.d_model, dim=-1)  # 3 x (B, d)
        y = q * self.filter.step(k * v, cache.filter_state)
        return self.out_proj(y)

    def flops(self, seq_len: int) -> dict[str, float]:
        """Forward FLOPs per token by part (see module docstring)."""
        return hyena_flops(self.d_model, self.kind, seq_len, self.spec)


def hyena_flops(d_model: int, kind: str, seq_len: int, spec: HyenaSpec | None = None) -> dict[str, float]:
    """Forward FLOPs per token of one Hyena operator, by part.

    Keys: "hyena_proj" (in 6 d^2 + out 2 d^2), "featurizer" (2 k_f 3d), and one filter key:
    "se_conv" / "mr_conv" (2 K d, the direct form; the MR key is "mr_fft" when that filter runs by FFT,
    still counted as 2 K d) or "li_fft" (10 log2(2L) d).
    """
    spec = spec or HyenaSpec()
    d = d_model
    out = {"hyena_proj": float(6 * d * d + 2 * d * d), "featurizer": float(2 * spec.featurizer_length * 3 * d)}
    if kind == "SE":
        key = "se_fft" if spec.se_length >= spec.fft_min_length else "se_conv"
        out[key] = float(2 * spec.se_length * d)
    elif kind == "MR":
        key = "mr_fft" if spec.mr_length >= spec.fft_min_length else "mr_conv"
        out[key] = float(2 * spec.mr_length * d)
    elif kind == "LI":
        out["li_fft"] = flopslib.fft_conv_flops(d, seq_len)
    else:
        raise ValueError(f"unknown Hyena filter {kind!r}; expected one of {FILTER_KINDS}")
    return out
