"""Model names as spans carry them -> the names a price list may know.

Spans name models the way the caller's SDK, gateway or cloud does:
``openai/gpt-4o`` (gateway prefix), ``us.anthropic.claude-3-5-sonnet-
20240620-v1:0`` (Bedrock id, cross-region prefix, version suffix),
``projects/p/locations/l/publishers/google/models/gemini-1.5-pro-002``
(Vertex resource path), ``gpt-4o-2024-08-06`` (dated snapshot). ``candidates``
lists the names to try, most specific first, each with the step that made
it, so a price is always explained. A dated name falls back to its family
only after every more specific name failed.
"""

from __future__ import annotations

import re
from functools import lru_cache

EXACT = "exact"

# Bedrock: optional cross-region prefix, vendor, model, version suffix.
_BEDROCK = re.compile(
    r"^(?:(?P<region>us|eu|apac|au|ca|jp|in|us-gov|global)\.)?"
    r"(?P<vendor>anthropic|meta|mistral|amazon|cohere|ai21|deepseek|writer|qwen)\."
    r"(?P<model>.+?)(?:-v\d+)?(?::\d+)?$"
)
# Vertex resource paths, Gemini API names, Bedrock ARNs.
_RESOURCE_PATHS = ("projects/", "models/", "arn:")
# Date or version suffixes of snapshots, tried in this order, each with the
# name prefix it is limited to ("" for any): a three-digit suffix is a
# version only in Gemini's naming.
_DATED = (
    (re.compile(r"-\d{4}-\d{2}-\d{2}$"), ""),  # gpt-4o-2024-08-06
    (re.compile(r"[-@]\d{8}$"), ""),  # claude-3-5-sonnet-20240620, ...@20241022
    (re.compile(r"-\d{4}$"), ""),  # gpt-4-0613, mistral-large-2407
    (re.compile(r"-\d{3}$"), "gemini"),  # gemini-1.5-pro-002
    (re.compile(r"-latest$"), ""),
)


@lru_cache(maxsize=4096)
def candidates(name: str) -> tuple[tuple[str, str], ...]:
    """(name to look up, how it was derived) pairs, most specific first."""
    found: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add(candidate: str, how: str) -> None:
        if candidate and candidate not in seen:
            seen.add(candidate)
            found.append((candidate, how))

    current = name.strip().lower()
    if current.startswith(_RESOURCE_PATHS) and "/" in current:
        # A cloud resource name is never a catalog name: only its tail is.
        current = current.rpartition("/")[2]
        add(current, "stripped resource path")
    else:
        add(current, EXACT)

    if "/" in current:
        prefix, _, current = current.rpartition("/")
        add(current, f"stripped prefix {prefix}/")

    bedrock = _BEDROCK.match(current)
    if bedrock is not None:
        current = bedrock["model"]
        add(current, "unwrapped Bedrock id")
        add(f"{bedrock['vendor']}.{current}", "unwrapped Bedrock id")

    family = current
    for pattern, limited_to in _DATED:
        if not family.startswith(limited_to):
            continue
        shorter = pattern.sub("", family)
        if shorter != family:
            family = shorter
            add(family, f"dated -> family {family}")
    return tuple(found)


def is_dated_form(name: str, family: str) -> bool:
    """Whether ``name`` is ``family`` with a date or version suffix."""
    return any(
        candidate == family and how.startswith("dated")
        for candidate, how in candidates(name)
    )


def prefix_provider(name: str) -> str | None:
    """The vendor a name is prefixed with (``anthropic/...``), if any."""
    lowered = name.strip().lower()
    if lowered.startswith(_RESOURCE_PATHS):
        lowered = lowered.rpartition("/")[2]
    elif "/" in lowered:
        head = lowered.split("/", 1)[0]
        return head or None
    bedrock = _BEDROCK.match(lowered)
    if bedrock is not None:
        return "aws.bedrock"
    return None


def bedrock_id_of(request: str, response: str) -> bool:
    """Whether ``request`` is a Bedrock id whose model ``response`` names bare.

    Bedrock answers with the vendor's name (``claude-sonnet-4-5-20250929``)
    for a request that named a regional or global profile, whose prices
    differ; only the request's id tells which.
    """
    lowered = request.strip().lower()
    if lowered.startswith(_RESOURCE_PATHS):
        lowered = lowered.rpartition("/")[2]
    bedrock = _BEDROCK.match(lowered)
    if bedrock is None:
        return False
    bare = response.strip().lower()
    return bare in (bedrock["model"], f"{bedrock['vendor']}.{bedrock['model']}")
