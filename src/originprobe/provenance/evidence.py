"""The evidence record: what a file's own metadata claims about its origin.

It is a second line of evidence, shown beside the pixel attribution and never mixed into it: the
pixel verdict is never changed by it. Metadata can be stripped or forged, so every claim says
whether it is covered by a valid C2PA signature (`signed`) or is bare text anyone can write.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import resources

MAX_VALUE_CHARS = 2000  # a claim's raw value is kept up to this length (then marked cut)


@dataclass
class Claim:
    """One statement found in the file."""

    source: str  # where: "c2pa", "png:parameters", "exif:Software", ...
    value: str  # the raw value (cut at MAX_VALUE_CHARS)
    generator: str | None = None  # the generator it names (generators.json), if any
    generated: bool | None = None  # says AI-generated (True), captured (False), nothing (None)
    signed: bool = False  # covered by a C2PA signature that validated


@dataclass
class C2paRecord:
    """The active C2PA manifest, as the C2PA library read and validated it."""

    claim_generator: str | None
    signer: str | None  # the signing certificate's common name
    issuer: str | None  # its issuer (organisation)
    signed_at: str | None  # the signing time, when a time-stamp gives one
    actions: list[dict]  # [{"action", "software_agent", "digital_source_type"}]
    digital_source_type: str | None
    validation: str  # "valid", "content_changed", "signature_invalid", "invalid"
    failures: list[str]  # the library's failure codes, untrusted signer excluded
    trusted: bool | None  # signer on the configured trust list; None: none configured


@dataclass
class Evidence:
    """Everything the file says about itself, and how it compares with the pixel verdict."""

    claims: list[Claim] = field(default_factory=list)
    c2pa: C2paRecord | None = None
    warnings: list[str] = field(default_factory=list)
    named: str | None = None  # the origin the metadata names (a model class when it can)
    agreement: str = "no claim"  # "agrees", "disagrees" or "no claim"
    reason: str = ""  # one line saying why, for people

    @property
    def empty(self) -> bool:
        return not self.claims and self.c2pa is None

    @property
    def signed(self) -> bool:
        """A C2PA manifest whose signature and content hash validated."""
        return self.c2pa is not None and self.c2pa.validation == "valid"

    @property
    def disagreement(self) -> bool:
        return self.agreement == "disagrees"

    def to_dict(self) -> dict:
        return {
            "claims": [asdict(c) for c in self.claims],
            "c2pa": asdict(self.c2pa) if self.c2pa is not None else None,
            "named": self.named,
            "agreement": self.agreement,
            "disagreement": self.disagreement,
            "signed": self.signed,
            "reason": self.reason,
            "warnings": list(self.warnings),
        }

    def summary(self) -> str:
        """One short line for text output."""
        if self.empty:
            return "no provenance metadata" + (
                f" ({'; '.join(self.warnings)})" if self.warnings else ""
            )
        if self.c2pa is not None:
            trust = {True: ", trusted signer", False: ", signer not on the trust list", None: ""}[
                self.c2pa.trusted
            ]
            head = (
                "C2PA "
                + {
                    "valid": "signature valid",
                    "content_changed": "content changed after signing",
                    "signature_invalid": "signature invalid",
                }.get(self.c2pa.validation, self.c2pa.validation)
                + trust
            )
            return f"{head}; {self.reason}"
        return self.reason


@lru_cache(maxsize=1)
def _table() -> dict:
    text = resources.files(__package__).joinpath("generators.json").read_text(encoding="utf-8")
    table = json.loads(text)
    table["_compiled"] = [(re.compile(g["pattern"], re.IGNORECASE), g) for g in table["generators"]]
    return table


def name_generator(value: str) -> str | None:
    """The generator a free-text value names (first match in generators.json), or None."""
    for pattern, entry in _table()["_compiled"]:
        if pattern.search(value):
            return entry["generator"]
    return None


def source_type_says_generated(value: str) -> bool | None:
    """An IPTC digital source type (URI or bare term): generated, captured, or neither."""
    term = value.rstrip("/").rsplit("/", 1)[-1].strip()
    return _table()["digital_source_types"].get(term)


def cut(value: str) -> str:
    value = str(value)
    if len(value) <= MAX_VALUE_CHARS:
        return value
    return value[:MAX_VALUE_CHARS] + f"… [{len(value) - MAX_VALUE_CHARS} more characters]"


def _as_model_class(generator: str, classes: Sequence[str]) -> str:
    """The model's class for a named generator, when the model has one; else the name itself."""
    for entry in _table()["generators"]:
        if entry["generator"] == generator:
            for c in entry["classes"]:
                if c in classes:
                    return c
    return generator


def _how(claim: Claim) -> str:
    if claim.signed:
        return "signed"
    return "C2PA (signature not valid)" if claim.source.startswith("c2pa") else "unsigned"


def compare(
    evidence: Evidence, label: str | None, classes: Sequence[str], unknown: str = "unknown"
) -> Evidence:
    """Fill `named`, `agreement` and `reason` from the claims and the pixel verdict `label`.

    Signed, valid claims speak first, then bare text in reading order. The metadata names a
    generator: the pixels agree only when they name the same class ("unknown" disagrees). It only
    says "generated": the pixels disagree when they say real. It says "captured": they disagree
    when they name anything but a real class."""
    claims = sorted(evidence.claims, key=lambda c: not c.signed)
    named = [c for c in claims if c.generator]
    kinds = [c.generated for c in claims if c.generated is not None]
    real_classes = [c for c in _table()["real_classes"] if c in classes]
    distinct = sorted({c.generator for c in named})
    if len(distinct) > 1:
        evidence.warnings.append(f"the metadata names several generators: {', '.join(distinct)}")
    if named:
        first = named[0]
        evidence.named = _as_model_class(first.generator, classes)
        how = _how(first)
        if label == evidence.named:
            evidence.agreement, evidence.reason = (
                "agrees",
                (f"{how} metadata ({first.source}) names {evidence.named}, as do the pixels"),
            )
        else:
            pixels = "the pixels say unknown" if label == unknown else f"the pixels say {label}"
            known = "" if evidence.named in classes else " (a generator this model does not know)"
            evidence.agreement, evidence.reason = (
                "disagrees",
                (f"{how} metadata ({first.source}) names {evidence.named}{known}; {pixels}"),
            )
        return evidence
    if kinds:
        generated = kinds[0]
        src = next(c for c in claims if c.generated is not None)
        how = _how(src)
        if generated:
            evidence.named = "generated"
            ok = label not in real_classes
            evidence.agreement = "agrees" if ok else "disagrees"
            evidence.reason = (
                f"{how} metadata ({src.source}) says AI-generated without naming "
                f"the generator; the pixels say {label}"
            )
        else:
            evidence.named = real_classes[0] if real_classes else "captured"
            ok = label in real_classes
            evidence.agreement = "agrees" if ok else "disagrees"
            evidence.reason = (
                f"{how} metadata ({src.source}) says captured by a camera; the pixels say {label}"
            )
        return evidence
    evidence.named, evidence.agreement = None, "no claim"
    evidence.reason = (
        "the metadata names no generator" if not evidence.empty else "no provenance metadata"
    )
    return evidence
