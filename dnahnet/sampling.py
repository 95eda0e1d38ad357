"""Sampling with caches: prefill the prompt, then one `step` per new nucleotide (`generate`, also
`dnahnet.generate`), and the command:

    python -m dnahnet.sampling --checkpoint runs/x --prompt ACGTTGCA --max-new-tokens 200 --num-samples 2

Works for every family through the `init_cache` / `prefill` / `step` interface; batched (several
samples decode together).
"""

from __future__ import annotations

import argparse
import math
import sys

import torch

from dnahnet.checkpoint import load_model, resolve_device
from dnahnet.registry import build_model
from dnahnet.tokenizer import N_ID, VOCAB_SIZE, decode, encode

NUCLEOTIDE_IDS = 4  # ids 0..3 are A, C, G, T; N (4) and special tokens are not sampled by default


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Top-k then nucleus (top-p) filtering of (B, V) logits; filtered entries become -inf."""
    logits = logits.clone()
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits[logits < kth] = float("-inf")
    if top_p is not None and 0.0 < top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) >= top_p  # keep the smallest prefix whose mass reaches top_p
        sorted_logits[drop] = float("-inf")
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


@torch.no_grad()
def generate(
    model,
    prompt: str | torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    num_samples: int = 1,
    allow_n: bool = False,
) -> torch.Tensor:
    """Continue `prompt` by `max_new_tokens` nucleotides; returns ids (B, P + max_new_tokens).

    `prompt` is a string (repeated `num_samples` times) or ids (B, P). `temperature=0` is greedy
    decoding (argmax at every step). Only A, C, G, T are sampled unless `allow_n`.
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    ids = encode(prompt)[None].repeat(num_samples, 1) if isinstance(prompt, str) else prompt
    if ids.dim() != 2 or ids.shape[1] == 0:
        raise ValueError("prompt must be a non-empty string or a (B, P) tensor of token ids")
    device = next(model.parameters()).device
    ids = ids.to(device)
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else torch.seed())
    allowed = torch.zeros(VOCAB_SIZE, dtype=torch.bool, device=device)
    allowed[: (N_ID + 1 if allow_n else NUCLEOTIDE_IDS)] = True
    cache = model.init_cache(ids.shape[0], ids.shape[1] + max_new_tokens)
    logits = model.prefill(ids, cache)  # (B, V)
    out = [ids]
    for i in range(max_new_tokens):
        logits = logits.float().masked_fill(~allowed, float("-inf"))
        if temperature == 0:
            nxt = logits.argmax(-1)
        else:
            probs = filter_logits(logits / temperature, top_k, top_p).softmax(-1)
            nxt = torch.multinomial(probs, 1, generator=generator)[:, 0]
        out.append(nxt[:, None])
        if i + 1 < max_new_tokens:
            logits = model.step(nxt, cache)
    model.train(was_training)
    return torch.cat(out, dim=1)


def check_args(args) -> None:
    """Refuse sampling options that would be ignored or meaningless (ValueError naming the option)."""
    if args.max_new_tokens < 0:
        raise ValueError(f"--max-new-tokens must be >= 0, got {args.max_new_tokens}")
    if args.num_samples < 1:
        raise ValueError(f"--num-samples must be >= 1, got {args.num_samples}")
    if not (args.temperature >= 0 and math.isfinite(args.temperature)):
        raise ValueError(f"--temperature must be a finite number >= 0 (0 = greedy), got {args.temperature}")
    if args.top_k is not None and args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {args.top_k}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise ValueError(f"--top-p must lie in (0, 1], got {args.top_p}")
    if not args.prompt.strip():
        raise ValueError("--prompt is empty")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dnahnet.sampling", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a checkpoint, run directory or exported folder (dnahnet.export)")
    src.add_argument("--family", help="an untrained model of this family (smoke runs)")
    parser.add_argument("--preset", default="tiny", help="preset for --family")
    parser.add_argument("--prompt", required=True, help="DNA prompt (A/C/G/T/N and IUPAC codes)")
    parser.add_argument("--max-new-tokens", type=int, default=100)
    parser.add_argument("--num-samples", type=int, default=1)
    parser.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    parser.add_argument("--top-k", type=int, default=None, help="keep the k most likely tokens (k >= 1)")
    parser.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass, in (0, 1]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:N")
    args = parser.parse_args(argv)
    try:
        check_args(args)
        device = resolve_device(args.device)
        model = load_model(args.checkpoint, device) if args.checkpoint else build_model(args.family, args.preset)
        model = model.to(device)
        ids = generate(model, args.prompt, args.max_new_tokens, args.temperature, args.top_k, args.top_p,
                       args.seed, args.num_samples)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        print(f"error: {str(exc).strip(chr(39))}", file=sys.stderr)
        return 2
    for i, row in enumerate(ids):
        seq = decode(row)
        print(f">sample_{i} prompt_len={len(args.prompt)} new={args.max_new_tokens} T={args.temperature} seed={args.seed}")
        for j in range(0, len(seq), 80):
            print(seq[j : j + 80])
    return 0


if __name__ == "__main__":
    sys.exit(main())
