"""Which catalog entry prices a model name, and the words that say how.

``Pricer`` calls ``find_in_catalog`` once per (provider, model) with the
names ``models.candidates`` derived; the text it returns becomes the
``match`` of every cost record priced from that entry.
"""

from __future__ import annotations

from streams.cost import catalog
from streams.cost.models import EXACT, is_dated_form, prefix_provider


def find_in_catalog(
    provider: str | None, model: str, names: tuple[tuple[str, str], ...]
) -> tuple[catalog.Entry | None, str]:
    """The catalog entry for ``model`` and how it was found, or (None, why)."""
    notes: list[str] = []
    searched: list[str] = []
    own = catalog.provider_id(provider)
    if own is not None:
        searched.append(own)
    hinted = catalog.provider_id(prefix_provider(model))
    if hinted is not None and hinted not in searched:
        searched.append(hinted)
    if not searched and provider is None:
        inferred = catalog.infer_provider(model)
        if inferred is not None:
            searched.append(inferred)
            notes.append(f"provider {inferred} inferred from the model name")

    for name, how in names:
        for catalog_provider in searched:
            entry = catalog.find(catalog_provider, name)
            if entry is None:
                continue
            if how.startswith("dated"):
                dated = [
                    n
                    for n in catalog.listed_names(entry)
                    if is_dated_form(n, name) and not n.endswith("-latest")
                ]
                if dated:
                    # The entry names the snapshots it prices; another one
                    # may cost something else (Bedrock's mistral-large-2402).
                    return None, (
                        f"{entry.model_id} lists its dated versions"
                        f" ({', '.join(dated)}), not {model}"
                    )
            parts = [*notes, how if how != EXACT else f"exact {name}"]
            pattern = catalog.pattern_of(entry, name)
            if pattern is not None:
                # "exact" would claim the entry prices this very name.
                parts[-1] = how if how != EXACT else name
                parts.append(f"taken by {entry.model_id}'s pattern ({pattern})")
            if catalog_provider != own and own is not None:
                parts.append(f"priced as {catalog_provider}")
            if entry.provider != catalog_provider:
                parts.append(f"{catalog_provider} falls back to {entry.provider}")
            if entry.not_charged:
                parts.append(f"not charged: {', '.join(entry.not_charged)}")
            return entry, "; ".join(parts)
    return None, ""
