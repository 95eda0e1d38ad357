"""Baseline model families trained by the same loop: Transformer++ and StripedHyena 2."""
