"""The model families every ladder test covers, and their variants (test helper)."""

from __future__ import annotations

from sweeps import ladders as lad

FAMILIES = ("transformer", "stripedhyena", "dnahnet")


def variants(family: str) -> list:
    """The family's variants. A family that does not import or whose preset does not validate fails the
    test (no skip): every family in FAMILIES is expected to build."""
    from dnahnet.registry import get_config, get_family

    fam = get_family(family)
    get_config(family, lad.get_rule(family).preset)
    return list(fam.variants) or [None]
