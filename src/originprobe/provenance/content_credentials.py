"""C2PA content credentials, read and validated by the Content Authenticity Initiative's library.

`c2pa-python` (the optional extra `originprobe[provenance]`) parses the manifest store, checks the
claim signature and the content hash; this module only turns its report into a `C2paRecord`.
Nothing is fetched: remote manifests and OCSP are switched off. Trust is a separate fact from
validity: a signature can be valid and its signer still not on the user's trust list
(`--c2pa-trust FILE`, a PEM bundle of trust anchors).
"""

from __future__ import annotations

import io
from pathlib import Path

from ..errors import ConfigError
from .evidence import C2paRecord, Claim, cut, name_generator, source_type_says_generated

INSTALL_HINT = "C2PA manifests are not read: pip install 'originprobe[provenance]' to enable it"
MAX_C2PA_FILE_BYTES = 256 << 20  # the content hash reads the whole file: bound it

# failure codes, by what they mean for an analyst
_HASH = ("dataHash.mismatch", "bmffHash.mismatch", "boxesHash.mismatch", "collectionHash.mismatch")
_SIGNATURE = (
    "claimSignature.mismatch",
    "claimSignature.missing",
    "signingCredential.invalid",
    "signingCredential.revoked",
    "signingCredential.expired",
    "claimSignature.outsideValidity",
    "timeStamp.mismatch",
)
_UNTRUSTED = "signingCredential.untrusted"


def available() -> bool:
    try:
        import c2pa  # noqa: F401
    except ImportError:
        return False
    return True


class CredentialReader:
    """Reads C2PA manifests with one library context (settings and trust anchors)."""

    def __init__(self, trust_anchors: str | Path | None = None):
        import c2pa

        self.trust_path = str(trust_anchors) if trust_anchors else None
        settings: dict = {
            "verify": {
                "remote_manifest_fetch": False,
                "ocsp_fetch": False,
                "verify_trust": bool(trust_anchors),
            }
        }
        if trust_anchors:
            try:
                pem = Path(trust_anchors).read_text(encoding="ascii")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(
                    f"{trust_anchors}: cannot read the C2PA trust list "
                    f"({getattr(exc, 'strerror', None) or exc})"
                ) from None
            if "-----BEGIN CERTIFICATE-----" not in pem:
                raise ConfigError(
                    f"{trust_anchors}: not a PEM bundle of certificates "
                    "(the C2PA trust list must hold trust anchors)"
                )
            settings["trust"] = {"trust_anchors": pem}
        self._c2pa = c2pa
        self._context = c2pa.Context(settings=c2pa.Settings.from_dict(settings))

    def read(
        self, source: Path | bytes, fmt: str | None
    ) -> tuple[C2paRecord | None, list[Claim], list[str]]:
        """(record or None when the file has no manifest, claims, warnings)."""
        c2pa = self._c2pa
        if fmt is None:
            return None, [], []
        size = (
            len(source) if isinstance(source, (bytes, bytearray)) else Path(source).stat().st_size
        )
        if size > MAX_C2PA_FILE_BYTES:
            return (
                None,
                [],
                [f"C2PA not checked: the file is over the {MAX_C2PA_FILE_BYTES >> 20} MB budget"],
            )
        try:
            stream = (io.BytesIO(source) if isinstance(source, (bytes, bytearray))
                      else open(source, "rb"))  # fmt: skip
            with stream:
                reader = c2pa.Reader.try_create(fmt, stream, context=self._context)
                return (None, [], []) if reader is None else self._record(reader)
        except c2pa.C2paError as exc:
            msg = str(exc).strip() or type(exc).__name__
            if msg.startswith("Remote"):
                url = msg.rsplit(" ", 1)[-1]
                return (
                    None,
                    [],
                    [
                        f"the C2PA manifest is not in the file: it points to {url[:300]} "
                        "(not fetched; a manifest outside the file is not evidence "
                        "about this file until it is checked)"
                    ],
                )
            return None, [], [f"C2PA manifest unreadable ({cut(msg)[:300]})"]
        except (OSError, ValueError) as exc:
            return None, [], [f"C2PA manifest unreadable ({str(exc)[:300]})"]

    def _record(self, reader) -> tuple[C2paRecord, list[Claim], list[str]]:
        try:
            manifest = reader.get_active_manifest() or {}
            results = reader.get_validation_results() or {}
            state = reader.get_validation_state()
        finally:
            reader.close()
        active = results.get("activeManifest") or {}
        failures = [f.get("code", "") for f in active.get("failure", [])]
        successes = [s.get("code", "") for s in active.get("success", [])]
        if not active:  # older reports: a flat validation_status list
            failures = [f.get("code", "") for f in results.get("validation_status", [])]
        other = [c for c in failures if c != _UNTRUSTED]
        if any(c.endswith(h) for c in other for h in _HASH):
            validation = "content_changed"
        elif any(c.startswith(s) for c in other for s in _SIGNATURE):
            validation = "signature_invalid"
        elif other or (state and state.lower() == "invalid"):
            validation = "invalid"
        else:
            validation = "valid"
        trusted = None
        if self.trust_path:
            trusted = "signingCredential.trusted" in successes or (state or "").lower() == "trusted"
        info = manifest.get("claim_generator_info") or []
        gen = ", ".join(
            " ".join(str(x) for x in (i.get("name"), i.get("version")) if x)
            for i in info
            if isinstance(i, dict)
        ) or manifest.get("claim_generator")
        sig = manifest.get("signature_info") or {}
        actions, source_type = [], None
        for a in manifest.get("assertions") or []:
            if not str(a.get("label", "")).startswith("c2pa.actions"):
                continue
            for act in (a.get("data") or {}).get("actions") or []:
                agent = act.get("softwareAgent")
                agent = agent.get("name") if isinstance(agent, dict) else agent
                dst = act.get("digitalSourceType")
                actions.append(
                    {
                        "action": act.get("action"),
                        "software_agent": agent,
                        "digital_source_type": dst,
                    }
                )
                if dst and (source_type is None or act.get("action") == "c2pa.created"):
                    source_type = dst
        record = C2paRecord(
            claim_generator=gen,
            signer=sig.get("common_name"),
            issuer=sig.get("issuer"),
            signed_at=sig.get("time"),
            actions=actions,
            digital_source_type=source_type,
            validation=validation,
            failures=other,
            trusted=trusted,
        )
        signed = validation == "valid"
        claims = []
        for act in actions:
            if act["software_agent"]:
                claims.append(
                    Claim(
                        "c2pa:softwareAgent",
                        cut(act["software_agent"]),
                        name_generator(act["software_agent"]),
                        None,
                        signed,
                    )
                )
        if source_type:
            claims.append(
                Claim(
                    "c2pa:digitalSourceType",
                    cut(source_type),
                    None,
                    source_type_says_generated(source_type),
                    signed,
                )
            )
        if gen:
            claims.append(
                Claim("c2pa:claim_generator", cut(gen), name_generator(gen), None, signed)
            )
        for c in claims:
            if c.generator and c.generated is None:
                c.generated = True
        warnings = []
        if validation != "valid":
            warnings.append(
                f"C2PA manifest does not validate: {validation.replace('_', ' ')} "
                f"({', '.join(other) or state})"
            )
        return record, claims, warnings
