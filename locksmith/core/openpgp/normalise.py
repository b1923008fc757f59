"""Keyring normalisation before a Keymaker request (formats.md §12).

Why it exists: rpgp-based consumers in the reference read only the first armor block of a
concatenation, so a keyring assembled from several exports must become one block (v0), or one
entry per certificate (V1). Unlike the reference CLI, which warns that ineligible certificates
"will be excluded" and then sends them anyway, this really excludes them, and reports each one
with the §13.2 eligibility verdict so the CLI can print cli.md §3 steps 5–6.
"""

from __future__ import annotations

from dataclasses import dataclass

from locksmith.core.openpgp import armor
from locksmith.core.openpgp.certs import Certificate, load_certificates
from locksmith.core.openpgp.validity import Eligibility, eligibility

__all__ = ["NormalisedKeyring", "normalise_keyring"]


@dataclass(frozen=True)
class NormalisedKeyring:
    had_secret: bool  # the input carried secret material (cli.md §3 step 3 warns)
    certificates: tuple[Certificate, ...]  # every certificate parsed, public form, input order
    verdicts: tuple[Eligibility, ...]  # one per certificate, same order (judged as public)

    @property
    def eligible(self) -> tuple[Certificate, ...]:
        return tuple(c for c, v in zip(self.certificates, self.verdicts) if v.eligible)

    @property
    def ineligible(self) -> tuple[Eligibility, ...]:
        return tuple(v for v in self.verdicts if not v.eligible)

    def v0_keyring(self) -> str:
        """All eligible certificates in one `PGP PUBLIC KEY BLOCK`, no headers, final `\\n`."""
        return armor.armor("PUBLIC KEY BLOCK", b"".join(c.serialize() for c in self.eligible))

    def v1_entries(self) -> list[str]:
        """One armored single-certificate block per eligible certificate (V1 `OpenPGP` cert)."""
        return [c.armored() for c in self.eligible]


def normalise_keyring(data: bytes | str, now: int) -> NormalisedKeyring:
    """Parse, drop secret material, judge eligibility at `now` (formats.md §12 steps 1–3)."""
    parsed = load_certificates(data)
    public = tuple(c.public() for c in parsed)
    return NormalisedKeyring(any(c.has_secret for c in parsed), public,
                             tuple(eligibility(c, now) for c in public))
