"""Mamba-2 mixer in pure PyTorch, with the mamba_ssm CUDA/Triton kernels as an optional backend.

Constructor arguments, parameter names, shapes and default init follow
`mamba_ssm.modules.mamba2.Mamba2`, so a state dict moves between this module and mamba_ssm's
unchanged. Data flow (Mamba-2's SSD layer, Dao and Gu 2024, as `mamba_ssm`'s Mamba2 computes it):

    in_proj -> [z0, x0 | z, xBC, dt]      z0, x0: optional gated-MLP part (d_ssm < d_inner)
    xBC = silu(causal depthwise conv(xBC)) -> x, B, C
    dt  = clamp(softplus(dt + dt_bias), dt_limit); A = -exp(A_log)
    y   = SSD(x, dt, A, B, C) + D x        (chunked scan in training/prefill, recurrence in step)
    y   = RMSNormGated(y, z)  (or y * silu(z) when rmsnorm=False)
    out = out_proj([silu(z0) * x0, y])

Shared mixer interface (CONTRIBUTING.md): forward(x, cache=None), allocate_cache, step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dnahnet import kernels
from dnahnet.nn.ssd import ssd_chunked


@dataclass
class Mamba2Cache:
    """Decoding state of one Mamba2 layer (constant size, independent of the sequence length)."""

    conv_state: Tensor  # (B, conv_dim, d_conv): conv *inputs* (xBC before the conv) of the last d_conv positions
    ssm_state: Tensor   # (B, nheads, headdim, d_state): SSM state after the last position


class RMSNormGated(nn.Module):
    """Gated, group-wise RMSNorm of Mamba-2 (scale only; mamba_ssm's `RMSNormGated`).

    norm_before_gate=False: y = rmsnorm_groupwise(x * silu(z)) * weight
    norm_before_gate=True:  y = rmsnorm_groupwise(x) * weight * silu(z)
    The RMS is taken over groups of `group_size` channels (d_inner / ngroups in Mamba-2, so the
    normalisation does not mix groups). Computed in float32, returned in x's dtype.
    """

    def __init__(self, hidden_size: int, eps: float = 1e-5, group_size: int | None = None,
                 norm_before_gate: bool = False, device=None, dtype=None):
        super().__init__()
        group_size = hidden_size if group_size is None else group_size
        if hidden_size % group_size:
            raise ValueError(f"RMSNormGated: hidden_size={hidden_size} is not a multiple of "
                             f"group_size={group_size}")
        self.hidden_size, self.eps, self.group_size = hidden_size, eps, group_size
        self.norm_before_gate = norm_before_gate
        self.weight = nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))
        self.register_parameter("bias", None)  # as mamba_ssm: scale only

    def forward(self, x: Tensor, z: Tensor | None = None) -> Tensor:
        dtype = x.dtype
        h = x.float()                                                       # (..., D)
        if z is not None and not self.norm_before_gate:
            h = h * F.silu(z.float())
        hg = h.view(*h.shape[:-1], -1, self.group_size)                     # (..., G, D/G)
        hg = hg * torch.rsqrt(hg.pow(2).mean(-1, keepdim=True) + self.eps)
        y = hg.view(h.shape) * self.weight.float()                          # (..., D)
        if z is not None and self.norm_before_gate:
            y = y * F.silu(z.float())
        return y.to(dtype)

    def extra_repr(self) -> str:
        return (f"{self.hidden_size}, eps={self.eps}, group_size={self.group_size}, "
                f"norm_before_gate={self.norm_before_gate}")


class Mamba2(nn.Module):
    """Mamba-2 mixer: (B, L, d_model) -> (B, L, d_model).

    Arguments are mamba_ssm's (see module docstring), plus:
        backend: "auto" (mamba_ssm/causal_conv1d kernels on CUDA when they import, else PyTorch),
            "torch", or "kernel" (error if unavailable). See dnahnet.kernels.resolve_backend.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 128,
        d_conv: int = 4,
        conv_init: float | None = None,
        expand: int = 2,
        headdim: int = 64,
        d_ssm: int | None = None,  # SSM on this many channels; the rest of d_inner is a gated MLP
        ngroups: int = 1,
        A_init_range: tuple[float, float] = (1, 16),
        D_has_hdim: bool = False,
        rmsnorm: bool = True,
        norm_before_gate: bool = False,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        dt_limit: tuple[float, float] = (0.0, float("inf")),
        bias: bool = False,
        conv_bias: bool = True,
        chunk_size: int = 256,
        layer_idx: int | None = None,
        device=None,
        dtype=None,
        backend: str = "auto",
    ):
        super().__init__()
        if backend not in kernels.BACKENDS:
            raise ValueError(f"Mamba2: backend must be one of {kernels.BACKENDS}, got {backend!r}")
        factory_kwargs = {"device": device, "dtype": dtype}
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.conv_init, self.expand = conv_init, expand
        self.d_inner = expand * d_model
        self.headdim = headdim
        self.d_ssm = self.d_inner if d_ssm is None else d_ssm
        self.ngroups = ngroups
        if self.d_ssm > self.d_inner:
            raise ValueError(f"Mamba2: d_ssm={self.d_ssm} exceeds d_inner=expand*d_model={self.d_inner}")
        if self.d_ssm % headdim:
            raise ValueError(f"Mamba2: d_ssm={self.d_ssm} (default expand*d_model) must be a multiple "
                             f"of headdim={headdim}")
        self.nheads = self.d_ssm // headdim
        if self.nheads % ngroups:
            raise ValueError(f"Mamba2: nheads={self.nheads} must be a multiple of ngroups={ngroups}")
        if not (A_init_range[0] > 0 and A_init_range[1] >= A_init_range[0]):
            raise ValueError(f"Mamba2: A_init_range must satisfy 0 < lo <= hi, got {A_init_range}")
        self.D_has_hdim, self.rmsnorm, self.norm_before_gate = D_has_hdim, rmsnorm, norm_before_gate
        self.dt_limit = tuple(dt_limit)
        self.activation = "silu"
        self.chunk_size = chunk_size
        self.layer_idx = layer_idx
        self.backend = backend

        # in_proj output order: [z0, x0 (gated MLP, 2 * d_mlp), z (d_ssm), xBC (conv_dim), dt (nheads)],
        # d_mlp = d_inner - d_ssm (0 by default) -- mamba_ssm's layout.
        d_in_proj = 2 * self.d_inner + 2 * ngroups * d_state + self.nheads
        self.in_proj = nn.Linear(d_model, d_in_proj, bias=bias, **factory_kwargs)

        self.conv_dim = self.d_ssm + 2 * ngroups * d_state
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, kernel_size=d_conv, groups=self.conv_dim,
                                padding=d_conv - 1, bias=conv_bias, **factory_kwargs)
        if conv_init is not None:
            nn.init.uniform_(self.conv1d.weight, -conv_init, conv_init)

        # dt_bias = softplus^-1(dt), dt log-uniform in [dt_min, dt_max], floored at dt_init_floor.
        dt = torch.exp(torch.rand(self.nheads, **factory_kwargs) * (math.log(dt_max) - math.log(dt_min))
                       + math.log(dt_min))
        dt = torch.clamp(dt, min=dt_init_floor)
        inv_dt = dt + torch.log(-torch.expm1(-dt))  # inverse of softplus
        self.dt_bias = nn.Parameter(inv_dt)
        self.dt_bias._no_weight_decay = True

        A = torch.empty(self.nheads, dtype=torch.float32, device=device).uniform_(*A_init_range)
        self.A_log = nn.Parameter(torch.log(A).to(dtype=dtype))
        self.A_log._no_weight_decay = True

        # D "skip": float32 even for a low-precision module, as in mamba_ssm.
        self.D = nn.Parameter(torch.ones(self.d_ssm if D_has_hdim else self.nheads, device=device))
        self.D._no_weight_decay = True

        if rmsnorm:
            self.norm = RMSNormGated(self.d_ssm, eps=1e-5, norm_before_gate=norm_before_gate,
                                     group_size=self.d_ssm // ngroups, **factory_kwargs)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **factory_kwargs)

    # ------------------------------------------------------------------------------------------
    @property
    def d_mlp(self) -> int:
        return self.d_inner - self.d_ssm

    def _split(self, zxbcdt: Tensor) -> tuple[Tensor, ...]:
        """(..., d_in_proj) -> z0, x0 (..., d_mlp), z (..., d_ssm), xBC (..., conv_dim), dt (..., nheads)."""
        return torch.split(zxbcdt, [self.d_mlp, self.d_mlp, self.d_ssm, self.conv_dim, self.nheads], dim=-1)

    def _split_xbc(self, xbc: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        gn = self.ngroups * self.d_state
        return torch.split(xbc, [self.d_ssm, gn, gn], dim=-1)

    def _dt(self, dt: Tensor) -> Tensor:
        """Raw dt (..., nheads) -> positive step sizes in float32."""
        dt = F.softplus(dt.float() + self.dt_bias.float())
        if self.dt_limit != (0.0, float("inf")):
            dt = dt.clamp(min=self.dt_limit[0], max=self.dt_limit[1])
        return dt

    def _D(self) -> Tensor:
        return self.D.view(self.nheads, self.headdim) if self.D_has_hdim else self.D  # (H,) or (H, P)

    def _finish(self, y: Tensor, z: Tensor, z0: Tensor, x0: Tensor) -> Tensor:
        """Gate/normalise the SSM output (..., d_ssm), prepend the gated-MLP part, project out."""
        if self.rmsnorm:
            y = self.norm(y, z)
        if self.d_mlp > 0:
            y = torch.cat([F.silu(z0) * x0, y], dim=-1)
        return self.out_proj(y)

    def _paths(self, device) -> tuple[str, str]:
        """(SSD/state-update path, causal-conv path). The SSD kernel needs mamba_ssm only; the conv kernel
        (causal_conv1d) is used with it when installed, else the PyTorch conv (logged once)."""
        path = kernels.resolve_backend(self.backend, device, what="mamba2")
        conv_path = "torch" if path == "torch" else kernels.resolve_backend("auto", device, what="mamba2_conv")
        return path, conv_path

    def _check_cache(self, cache: Mamba2Cache, batch: int) -> None:
        want_conv = (batch, self.conv_dim, self.d_conv)
        want_ssm = (batch, self.nheads, self.headdim, self.d_state)
        if tuple(cache.conv_state.shape) != want_conv or tuple(cache.ssm_state.shape) != want_ssm:
            raise ValueError(f"Mamba2 cache has conv_state {tuple(cache.conv_state.shape)} and ssm_state "
                             f"{tuple(cache.ssm_state.shape)}; expected {want_conv} and {want_ssm} "
                             f"(use allocate_cache({batch}, ...))")

    # ------------------------------------------------------------------------------------------
    def forward(self, u: Tensor, cache: Mamba2Cache | None = None) -> Tensor:
        """u: (B, L, d_model) -> (B, L, d_model).

        With a cache, the sequence continues from the cache's state (a fresh, zero cache is the
        same as no history, i.e. a prefill) and the cache is left holding the conv inputs of the
        last d_conv positions and the SSM state after the last position.
        """
        if u.dim() != 3 or u.shape[-1] != self.d_model:
            raise ValueError(f"Mamba2.forward expects (batch, seqlen, d_model={self.d_model}), "
                             f"got {tuple(u.shape)}")
        b, seqlen, _ = u.shape
        if cache is not None:
            self._check_cache(cache, b)
        path, conv_path = self._paths(u.device)
        zxbcdt = self.in_proj(u)                                      # (B, L, d_in_proj)
        z0, x0, z, xbc, dt = self._split(zxbcdt)
        xbc_t = xbc.transpose(1, 2)                                   # (B, conv_dim, L)

        # Causal conv. Left context: the previous d_conv - 1 inputs (from the cache) or zeros.
        if cache is not None:
            ctx = cache.conv_state[..., 1:].to(xbc_t.dtype)             # (B, conv_dim, d_conv-1)
            full = torch.cat([ctx, xbc_t], dim=-1)                    # (B, conv_dim, d_conv-1+L)
            cache.conv_state.copy_(full[..., -self.d_conv:])
        else:
            full = F.pad(xbc_t, (self.d_conv - 1, 0))                 # (B, conv_dim, d_conv-1+L)
        if conv_path == "kernel":
            # causal_conv1d_fn zero-pads on the left itself; drop the outputs at the context positions.
            xbc = kernels.causal_conv1d_fn(full, self.conv1d.weight.squeeze(1), self.conv1d.bias,
                                           activation=self.activation)[..., self.d_conv - 1:]
        else:
            xbc = F.conv1d(full, self.conv1d.weight, self.conv1d.bias, groups=self.conv_dim)
        xbc = xbc.transpose(1, 2)                                     # (B, L, conv_dim)
        if conv_path != "kernel":
            # The activation on the channel-last copy: its gradient arrives channel-last (x, B, C are
            # slices of it), and an elementwise backward on the transposed layout is ~10x slower.
            xbc = F.silu(xbc.contiguous())

        x, B, C = self._split_xbc(xbc)
        x = x.reshape(b, seqlen, self.nheads, self.headdim)                # (B, L, H, P)
        B = B.reshape(b, seqlen, self.ngroups, self.d_state)               # (B, L, G, N)
        C = C.reshape(b, seqlen, self.ngroups, self.d_state)               # (B, L, G, N)
        A = -torch.exp(self.A_log.float())                            # (H,)
        init = cache.ssm_state if cache is not None else None          # (B, H, P, N)

        if path == "kernel":
            out = kernels.mamba_chunk_scan_combined(
                x, dt, A, B, C, self.chunk_size, D=self._D(),
                z=None if self.rmsnorm else z.reshape(b, seqlen, self.nheads, self.headdim),
                dt_bias=self.dt_bias, initial_states=init, dt_softplus=True, dt_limit=self.dt_limit,
                return_final_states=cache is not None)
            y, final = out if cache is not None else (out, None)
        else:
            res = ssd_chunked(x, self._dt(dt), A, B, C, self.chunk_size, D=self._D(), initial_state=init)
            y, final = res.y, res.final_state
        y = y.reshape(b, seqlen, self.d_ssm)                               # (B, L, d_ssm)
        if path == "torch" and not self.rmsnorm:
            y = y * F.silu(z)
        if cache is not None:
            cache.ssm_state.copy_(final)
        return self._finish(y, z, z0, x0)                             # (B, L, d_model)

    def allocate_cache(self, batch_size: int, max_seqlen: int | None = None, device=None,
                       dtype=None) -> Mamba2Cache:
        """A zero cache (= empty history). Its size does not depend on max_seqlen (kept for the
        shared mixer interface). conv_state takes the conv weight's dtype and ssm_state float32
        (ours: the state accumulates over the whole sequence), unless `dtype` is given."""
        device = self.out_proj.weight.device if device is None else device
        conv_dtype = self.conv1d.weight.dtype if dtype is None else dtype
        ssm_dtype = torch.float32 if dtype is None else dtype
        # Channel-last storage viewed as (B, conv_dim, d_conv), the layout mamba_ssm allocates for
        # causal_conv1d's kernels.
        conv_state = torch.zeros(batch_size, self.d_conv, self.conv_dim, device=device,
                                 dtype=conv_dtype).transpose(1, 2)
        ssm_state = torch.zeros(batch_size, self.nheads, self.headdim, self.d_state, device=device,
                                dtype=ssm_dtype)
        return Mamba2Cache(conv_state=conv_state, ssm_state=ssm_state)

    def step(self, u: Tensor, cache: Mamba2Cache) -> Tensor:
        """One position: u (B, d_model) -> (B, d_model); the cache is updated in place."""
        if u.dim() != 2 or u.shape[-1] != self.d_model:
            raise ValueError(f"Mamba2.step expects (batch, d_model={self.d_model}), got {tuple(u.shape)}")
        b = u.shape[0]
        self._check_cache(cache, b)
        path, conv_path = self._paths(u.device)
        zxbcdt = self.in_proj(u)                                      # (B, d_in_proj)
        z0, x0, z, xbc, dt = self._split(zxbcdt)
        weight = self.conv1d.weight.squeeze(1)                        # (conv_dim, d_conv)

        if conv_path == "kernel":
            # causal_conv1d_update requires x and conv_state of one dtype; under autocast xbc is bf16 while
            # the cache keeps the conv weight's (fp32): the one position moves to the cache's dtype.
            xbc = kernels.causal_conv1d_update(xbc.to(cache.conv_state.dtype), cache.conv_state, weight,
                                               self.conv1d.bias, self.activation).to(zxbcdt.dtype)
        else:
            cache.conv_state.copy_(torch.roll(cache.conv_state, shifts=-1, dims=-1))
            cache.conv_state[:, :, -1] = xbc
            xbc = (cache.conv_state * weight).sum(-1)                 # (B, conv_dim)
            if self.conv1d.bias is not None:
                xbc = xbc + self.conv1d.bias
            xbc = F.silu(xbc).to(zxbcdt.dtype)

        x, B, C = self._split_xbc(xbc)
        x = x.reshape(b, self.nheads, self.headdim)                   # (B, H, P)
        B = B.reshape(b, self.ngroups, self.d_state)                  # (B, G, N)
        C = C.reshape(b, self.ngroups, self.d_state)                  # (B, G, N)
        A = -torch.exp(self.A_log.float())                            # (H,)
        dt = self._dt(dt)                                             # (B, H), float32
        D = self._D()

        if path == "kernel":
            # dt goes in already softplus'ed and clamped (so dt_limit holds here as in forward), with
            # a zero dt_bias: the kernel reads dt_bias's strides even when it is not needed.
            # Stride-0 expansions over headdim let the kernel load one value per head.
            p, n = self.headdim, self.d_state
            y = kernels.selective_state_update(
                cache.ssm_state, x, dt.unsqueeze(-1).expand(b, self.nheads, p),
                A[:, None, None].expand(self.nheads, p, n),
                B, C, D if D.dim() == 2 else D.unsqueeze(-1).expand(self.nheads, p),
                z=None if self.rmsnorm else z.reshape(b, self.nheads, p),
                dt_bias=dt.new_zeros(1, 1).expand(self.nheads, p), dt_softplus=False)
        else:
            hg = self.nheads // self.ngroups
            Bh = B.float().repeat_interleave(hg, dim=1)                # (B, H, N)
            Ch = C.float().repeat_interleave(hg, dim=1)                # (B, H, N)
            xf = x.float()
            decay = torch.exp(dt * A)[..., None, None]                 # (B, H, 1, 1)
            state = decay * cache.ssm_state.float() + (dt[..., None] * xf).unsqueeze(-1) * Bh.unsqueeze(2)
            cache.ssm_state.copy_(state)                               # (B, H, P, N)
            y = torch.einsum("bhpn,bhn->bhp", state, Ch)
            y = y + xf * (D.float().unsqueeze(-1) if D.dim() == 1 else D.float())
            y = y.to(zxbcdt.dtype)
        y = y.reshape(b, self.d_ssm)                                   # (B, d_ssm)
        if path == "torch" and not self.rmsnorm:
            y = y * F.silu(z)
        return self._finish(y, z, z0, x0)                              # (B, d_model)
