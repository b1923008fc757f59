"""Key liveness and holder eligibility (formats.md §13), over `certs` and `signature`.

Why not PGPy: §13 fixes rules that PGPy's verification does not express — which self-signature
is in force at a time T, from when a revocation applies given its reason, the SHA-1 cutoff for
self-signatures, Caution's critical notations — and these rules decide whether a holder can be
trusted. So they are written here once, against formats.md, and every signature goes through
`signature.verify` (the same hashing code that signs). PGPy serves as an independent oracle in
the tests. The work is split in two: `_analyse` verifies every signature of a certificate once
(time-independent: parse, hash policy, critical subpackets, back-signatures, cryptographic
check) and is memoised per certificate; the time-dependent rules then only choose among
verified signatures, so judging a certificate at S and at now costs one verification pass.

Choices where §13.1 is silent: a binding past its own signature-expiration time is not in
force; a subkey binding that grants signing without a valid back-signature is skipped like any
invalid binding (an older valid one may apply); a revocation counts whenever it verifies,
whatever its hash or critical subpackets (ignoring a genuine revocation would fail open).

Times are seconds since the epoch, passed in by the caller (core has no clock).
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import lru_cache

from locksmith.core.openpgp import signature as sigmod
from locksmith.core.openpgp.certs import Certificate
from locksmith.core.openpgp.errors import OpenPGPError
from locksmith.core.openpgp.keys import ECDH, RSA_ALGORITHMS, PublicKey
from locksmith.core.openpgp.packets import Packet
from locksmith.core.openpgp.signature import HashInput, Signature

__all__ = [
    "ACCEPTED_HASHES", "CAUTION_CRITICAL_NOTATIONS", "DUPLICATE_HOLDER", "Eligibility",
    "HolderConflict", "LiveKey", "PrimaryState", "ROLES", "SHA1_SELF_SIGNATURE_CUTOFF",
    "SHARED_ENCRYPTION_KEY", "decryption_keys", "eligibility", "find_holder_conflict",
    "is_live", "key_material_id", "live_keys", "primary_expiration", "primary_state",
    "revoked_ever", "signing_candidates", "storage_encryption_keys", "structural_keys", "structural_roles",
    "valid_user_ids",
]

SHA1_SELF_SIGNATURE_CUTOFF = 1675209600  # 2023-02-01T00:00:00Z (formats.md §11)
ACCEPTED_HASHES = frozenset({sigmod.SHA256, sigmod.SHA384, sigmod.SHA512, sigmod.SHA224})
CAUTION_CRITICAL_NOTATIONS = frozenset({"organization-id@caution.co", "bundle-id@caution.co"})

# Roles of §13.2, in the order missing roles are reported.
ROLES: tuple[tuple[str, int], ...] = (
    ("signing", sigmod.FLAG_SIGN),
    ("authentication", sigmod.FLAG_AUTHENTICATE),
    ("storage-encryption", sigmod.FLAG_ENCRYPT_STORAGE),
)

DUPLICATE_HOLDER = "duplicate holder certificate"
SHARED_ENCRYPTION_KEY = "holders must not share an encryption key"

_SELF_CERTIFICATIONS = frozenset({sigmod.GENERIC_CERTIFICATION, sigmod.POSITIVE_CERTIFICATION})
_ALL_CERTIFICATIONS = frozenset({0x10, 0x11, 0x12, 0x13})
_SOFT_REASONS = frozenset({sigmod.REASON_SUPERSEDED, sigmod.REASON_RETIRED})
_EVER = 2**63  # later than any revocation's creation time: "revoked at any time"


class PrimaryState(enum.Enum):
    LIVE = "live"
    UNSUPPORTED = "unsupported primary key"
    NO_VALID_SELF_SIGNATURE = "no valid self-signature"  # keymaker.md §4.1 (e)
    NOT_YET_VALID = "not yet valid"
    EXPIRED = "expired"
    REVOKED = "revoked"


@dataclass(frozen=True)
class LiveKey:
    key: PublicKey
    flags: int  # key flags of the binding in force (0 when it has no key-flags subpacket)
    is_primary: bool


# --- time-independent analysis: which signatures count at all --------------------------------


@dataclass(frozen=True)
class _KeyAnalysis:
    key: PublicKey
    bindings: tuple[Signature, ...]  # policy-clean, verifying self-signatures / bindings
    revocations: tuple[Signature, ...]


@dataclass(frozen=True)
class _Analysis:
    primary: _KeyAnalysis
    subkeys: tuple[_KeyAnalysis, ...]
    user_ids: tuple[tuple[str, tuple[Signature, ...]], ...]  # UID text, self-sigs incl. 0x30


def _policy_ok(sig: Signature) -> bool:
    """Hash policy and critical subpackets (formats.md §11, §13.2) for a self-signature."""
    created = sig.created
    if created is None:
        return False
    if sig.hash_algorithm not in ACCEPTED_HASHES and not (
            sig.hash_algorithm == sigmod.SHA1 and created < SHA1_SELF_SIGNATURE_CUTOFF):
        return False
    return not sig.unknown_critical(known_notations=CAUTION_CRITICAL_NOTATIONS)


def _checked(signer: PublicKey, sig: Signature, target: HashInput, *, policy: bool = True) -> bool:
    try:
        if policy and not _policy_ok(sig):
            return False
        # Issuer hints rule a signature out before any hashing: third-party certifications
        # (and padding an attacker adds) cost a lookup, not a verification.
        issuer = sig.issuer_fingerprint
        if issuer is not None and issuer != signer.fingerprint:
            return False
        # The key ID may sit in the unhashed area, where anyone can change it: it rules out
        # ordinary signatures only, never a revocation (a genuine one must not be missed).
        key_id = sig.issuer_key_id
        if policy and key_id is not None and key_id != signer.key_id:
            return False
        sigmod.verify(signer, sig, target)
        return True
    except ValueError:  # OpenPGPError, or `cryptography` refusing the key's numbers
        return False


def _parsed(packet: Packet, types: Collection[int]) -> Signature | None:
    try:
        sig = sigmod.Signature.parse(packet.body)
    except OpenPGPError:
        return None
    return sig if sig.sig_type in types else None


def _verified(signer: PublicKey, packets: Sequence[Packet], target: HashInput,
              types: Collection[int], *, policy: bool = True) -> tuple[Signature, ...]:
    out = []
    for packet in packets:
        sig = _parsed(packet, types)
        if sig is not None and _checked(signer, sig, target, policy=policy):
            out.append(sig)
    return tuple(out)


def _has_back_signature(primary: PublicKey, subkey: PublicKey, binding: Signature) -> bool:
    try:
        embedded = binding.embedded_signatures
    except OpenPGPError:
        return False
    target = sigmod.subkey_binding(primary, subkey)
    return any(e.sig_type == sigmod.PRIMARY_KEY_BINDING and _checked(subkey, e, target)
               for e in embedded)


@lru_cache(maxsize=256)
def _analyse(cert: Certificate) -> _Analysis:
    primary = cert.primary
    direct = sigmod.direct_key(primary)
    bindings = list(_verified(primary, cert.direct_signatures, direct, {sigmod.DIRECT_KEY}))
    revocations = _verified(primary, cert.direct_signatures, direct, {sigmod.KEY_REVOCATION},
                            policy=False)
    user_ids = []
    for comp in cert.user_ids:
        target = sigmod.certification(primary, comp.packet.body)
        sigs = _verified(primary, comp.signatures, target,
                         _ALL_CERTIFICATIONS | {sigmod.CERTIFICATION_REVOCATION})
        bindings += [s for s in sigs if s.sig_type in _SELF_CERTIFICATIONS]
        user_ids.append((comp.text, sigs))
    subkeys = []
    for sub in cert.subkeys:
        target = sigmod.subkey_binding(primary, sub.key)
        sub_bindings = tuple(
            s for s in _verified(primary, sub.signatures, target, {sigmod.SUBKEY_BINDING})
            if not _flags(s) & sigmod.FLAG_SIGN or _has_back_signature(primary, sub.key, s))
        sub_revocations = _verified(primary, sub.signatures, target, {sigmod.SUBKEY_REVOCATION},
                                    policy=False)
        subkeys.append(_KeyAnalysis(sub.key, sub_bindings, sub_revocations))
    return _Analysis(_KeyAnalysis(primary, tuple(bindings), revocations), tuple(subkeys),
                     tuple(user_ids))


def _flags(sig: Signature | None) -> int:
    try:
        return 0 if sig is None else sig.key_flags or 0
    except OpenPGPError:
        return 0


def _created(sig: Signature) -> int:
    created = sig.created  # present and well-formed: `_policy_ok` checked it
    assert created is not None
    return created


# --- liveness at T (§13.1) ---------------------------------------------------------------------


def _binding_at(analysis: _KeyAnalysis, at: int) -> Signature | None:
    """The newest binding created ≤ T that has not itself expired at T.

    A binding whose own signature-expiration time has passed is not in force (RFC 4880
    §5.2.3.10). On a tie a direct-key signature wins over a User ID certification: Sequoia
    takes the primary's expiry from it, and a tie must not let a laxer signature win.
    """
    current = []
    for sig in analysis.bindings:
        created = _created(sig)
        try:
            expires = sig.signature_expiration
        except OpenPGPError:
            continue
        if created <= at and (expires is None or at < created + expires):
            current.append(sig)
    return _newest(current)


def _newest(sigs: Sequence[Signature]) -> Signature | None:
    """Ties: a direct-key signature beats a certification, a User ID revocation beats one."""
    preferred = (sigmod.DIRECT_KEY, sigmod.CERTIFICATION_REVOCATION)
    return max(sigs, key=lambda s: (_created(s), s.sig_type in preferred), default=None)


def _revoked_at(analysis: _KeyAnalysis, at: int) -> bool:
    """Revocations are honoured whenever they verify, even under a hash or critical-subpacket
    the policy would refuse for a binding: ignoring a genuine revocation fails open."""
    for rev in analysis.revocations:
        try:
            reason, created = rev.revocation_reason, rev.created
        except OpenPGPError:
            return True  # a malformed reason or time is no reason: the revocation applies always
        soft = reason is not None and reason[0] in _SOFT_REASONS
        if not soft or created is None or at >= created:
            return True
    return False


def _state(analysis: _KeyAnalysis, at: int) -> tuple[PrimaryState, Signature | None]:
    key = analysis.key
    if not analysis.bindings:
        return PrimaryState.NO_VALID_SELF_SIGNATURE, None
    binding = _binding_at(analysis, at)
    if binding is None or at < key.created:
        return PrimaryState.NOT_YET_VALID, None
    try:
        expiry = binding.key_expiration
    except OpenPGPError:
        return PrimaryState.NO_VALID_SELF_SIGNATURE, None
    if _revoked_at(analysis, at):
        return PrimaryState.REVOKED, None
    if expiry is not None and at >= key.created + expiry:
        return PrimaryState.EXPIRED, None
    return PrimaryState.LIVE, binding


def primary_state(cert: Certificate, at: int) -> PrimaryState:
    """Why the primary is or is not live at `at` (keymaker.md §4.1 e/f need the difference)."""
    if not cert.primary.supported:
        return PrimaryState.UNSUPPORTED
    return _state(_analyse(cert).primary, at)[0]


def primary_expiration(cert: Certificate, at: int) -> int | None:
    """When the primary expires per the self-signature in force at `at` (expired or not);
    None when it never expires or no self-signature is in force (cli.md §4 step 6 warning)."""
    binding = _binding_at(_analyse(cert).primary, at)
    try:
        expiry = None if binding is None else binding.key_expiration
    except OpenPGPError:
        return None
    return None if expiry is None else cert.primary.created + expiry


def live_keys(cert: Certificate, at: int) -> list[LiveKey]:
    """Every supported key of `cert` live at `at`, primary first, with its key flags."""
    if not cert.primary.supported:
        return []
    analysis = _analyse(cert)
    state, binding = _state(analysis.primary, at)
    if state is not PrimaryState.LIVE or binding is None:
        return []
    out = [LiveKey(cert.primary, _flags(binding), True)]
    for sub in analysis.subkeys:
        sub_state, sub_binding = _state(sub, at)
        if sub_state is PrimaryState.LIVE and sub_binding is not None and sub.key.supported:
            out.append(LiveKey(sub.key, _flags(sub_binding), False))
    return out


def is_live(cert: Certificate, key: PublicKey, at: int) -> bool:
    return any(k.key.fingerprint == key.fingerprint for k in live_keys(cert, at))


def revoked_ever(cert: Certificate, key: PublicKey) -> bool:
    """Whether a verified revocation of `key` (the primary or a subkey of `cert`) applies at
    some time, soft reasons included however late they were made. For holders judged at a
    fixed past time (WebAuthn holders at the generation time, formats.md §13.4), where a
    revocation must still be honoured whenever it was created."""
    analysis = _analyse(cert)
    if key.fingerprint == cert.primary.fingerprint:
        return _revoked_at(analysis.primary, _EVER)
    return any(_revoked_at(sub, _EVER) for sub in analysis.subkeys
               if sub.key.fingerprint == key.fingerprint)


def storage_encryption_keys(cert: Certificate, at: int) -> list[PublicKey]:
    """Recipients when writing to a holder (§7.5): live keys flagged storage encryption."""
    return [k.key for k in live_keys(cert, at) if k.flags & sigmod.FLAG_ENCRYPT_STORAGE]


def signing_candidates(cert: Certificate, signature_time: int, now: int) -> list[PublicKey]:
    """§13.3: signing keys live both at S and at now, created at or before S.

    Liveness at S alone would let an expired or revoked key sign by backdating S.
    """
    at_now = {k.key.fingerprint for k in live_keys(cert, now) if k.flags & sigmod.FLAG_SIGN}
    return [k.key for k in live_keys(cert, signature_time)
            if k.flags & sigmod.FLAG_SIGN and k.key.fingerprint in at_now
            and k.key.created <= signature_time]


# --- ignoring time (§4, §13.5, §14) ----------------------------------------------------------


def structural_keys(cert: Certificate, flags: int) -> list[PublicKey]:
    """Keys whose newest valid binding grants any of `flags`; time, expiry, revocation ignored.

    "Structurally valid" (formats.md §4, §14): the binding verifies and passes the hash and
    critical-subpacket policy (including the back-signature of signing subkeys).
    """
    analysis = _analyse(cert)
    if not cert.primary.supported or not analysis.primary.bindings:
        return []
    return [item.key for item in (analysis.primary, *analysis.subkeys)
            if item.key.supported and _flags(_newest(item.bindings)) & flags]


def structural_roles(cert: Certificate) -> frozenset[str]:
    """The §13.2 roles `cert` has structurally (for §14 step 2 and the §4 ImportedV0 checks)."""
    return frozenset(name for name, flag in ROLES if structural_keys(cert, flag))


def decryption_keys(cert: Certificate, among: Collection[bytes] | None = None) -> list[PublicKey]:
    """§13.5: keys any of whose valid bindings (time ignored) grants storage encryption, else
    transport encryption. `among` limits the choice to these fingerprints (the keys one has
    secret material for). Also the recipient rule of `caution secret encrypt` (cli.md §4 6)."""
    analysis = _analyse(cert)
    if not cert.primary.supported or not analysis.primary.bindings:
        return []
    candidates = [a for a in (analysis.primary, *analysis.subkeys) if a.key.supported and (
        among is None or a.key.fingerprint in among)]
    for flag in (sigmod.FLAG_ENCRYPT_STORAGE, sigmod.FLAG_ENCRYPT_COMMUNICATIONS):
        found = [a.key for a in candidates if any(_flags(b) & flag for b in a.bindings)]
        if found:
            return found
    return []


# --- eligibility (§13.2) -----------------------------------------------------------------------


def valid_user_ids(cert: Certificate, at: int) -> list[str]:
    """User IDs whose newest verified self-signature created ≤ T certifies (not revokes) them."""
    out = []
    for text, sigs in _analyse(cert).user_ids:
        newest = _newest([s for s in sigs if _created(s) <= at])
        if newest is not None and newest.sig_type != sigmod.CERTIFICATION_REVOCATION:
            out.append(text)
    return out


@dataclass(frozen=True)
class Eligibility:
    fingerprint: str
    display_name: str  # first valid User ID, else the fingerprint
    has_secret: bool
    primary: PrimaryState
    missing: tuple[str, ...]  # roles of ROLES without a live key, in ROLES order

    @property
    def eligible(self) -> bool:
        return not self.has_secret and self.primary is PrimaryState.LIVE and not self.missing


def eligibility(cert: Certificate, now: int) -> Eligibility:
    live = live_keys(cert, now)
    missing = tuple(name for name, flag in ROLES if not any(k.flags & flag for k in live))
    names = valid_user_ids(cert, now)
    return Eligibility(cert.fingerprint, names[0] if names else cert.fingerprint,
                       cert.has_secret, primary_state(cert, now), missing)


# --- across holders (§13.2) ----------------------------------------------------------------


def key_material_id(key: PublicKey) -> tuple[object, ...]:
    """What "the same key" means across holders: creation time never counts; ECDH keys compare
    on curve and point only (KDF parameters ignored); RSA on (n, e) whatever its algorithm id."""
    if key.algorithm == ECDH:
        return ("ecdh", key.oid, key.point)
    if key.algorithm in RSA_ALGORITHMS:
        return ("rsa", key.rsa_n, key.rsa_e)
    return (key.algorithm, key.material)


@dataclass(frozen=True)
class HolderConflict:
    index: int  # the later holder of the pair (0-based)
    other: int  # the earlier holder it collides with
    reason: str  # DUPLICATE_HOLDER or SHARED_ENCRYPTION_KEY


def find_holder_conflict(certs: Sequence[Certificate], now: int) -> HolderConflict | None:
    """The first holder (in order) that duplicates an earlier one or shares its live
    storage-encryption key material; duplicates are checked before shared keys, per holder."""
    seen_fpr: dict[str, int] = {}
    seen_keys: dict[tuple[object, ...], int] = {}
    for index, cert in enumerate(certs):
        if cert.fingerprint in seen_fpr:
            return HolderConflict(index, seen_fpr[cert.fingerprint], DUPLICATE_HOLDER)
        seen_fpr[cert.fingerprint] = index
        mine = {key_material_id(k) for k in storage_encryption_keys(cert, now)}
        for material in mine:
            if material in seen_keys:
                return HolderConflict(index, seen_keys[material], SHARED_ENCRYPTION_KEY)
        for material in mine:
            seen_keys[material] = index
    return None
