"""Keymaker's core: validate a holder keyring and generate a quorum (keymaker.md §4, §5).

The HTTP service is a thin layer over this; so are tests and the demo. Validation runs before
any entropy is drawn, and every refusal is a list of reasons with the spec's texts so the service
can answer `{"errors": ["could not generate quorum", <reasons>...]}` unchanged.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from locksmith.core.bundle import shardfile
from locksmith.core.bundle.model import BundleV0
from locksmith.core.openpgp import quorumkey, validity
from locksmith.core.openpgp.certs import Certificate, load_certificates
from locksmith.core.openpgp.errors import OpenPGPError

MAX_HOLDERS = 254
NO_ELIGIBLE = "keyring contains no Keymaker-eligible public certificates"
SECRET_MATERIAL = "keyring contains secret key material"
PARAMETERS = ("invalid quorum parameters: threshold={t}, max={m}, holders={n} "
              "(need 1 <= threshold <= max <= 254 and max == number of holders)")
INELIGIBLE = "certificate {fpr} is not Keymaker-eligible: missing {roles}"
PRIMARY_DEAD = "certificate {fpr} is not Keymaker-eligible: primary key is expired or revoked"
ENTROPY_DOMAIN = b"locksmith-keymaker-entropy-v1"
QUORUM_USER_ID = "Keymaker-generated key"

# keymaker.md §4.1 step 2: `invalid certificate at index <i>: <reason>`, reasons in check order.
V1_AT_INDEX = "invalid certificate at index {index}: {reason}"
V1_MISSING = "missing certificate"
V1_MALFORMED = "malformed certificate"
V1_NOT_ONE = "each holder must contain exactly one certificate"
V1_REQUIREMENTS = ("requires a public certificate with live signing, authentication and "
                   "storage-encryption keys")
V1_POLICY = "certificate does not satisfy policy"
V1_DEAD = "certificate is expired or revoked"


@dataclass
class QuorumRequestError(ValueError):
    """A request Keymaker refuses (400): the reasons, in the order the spec reports them."""

    reasons: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return "; ".join(self.reasons)


class GenerationError(RuntimeError):
    """A generation stage failed (500). `stage` names it; nothing secret-dependent is kept."""

    def __init__(self, stage: str) -> None:
        super().__init__(f"{stage} failed")
        self.stage = stage


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Turn any failure inside a generation stage into `GenerationError(name)`, cause dropped:
    an exception raised next to secret material must not carry it into a log or a response."""
    try:
        yield
    except GenerationError:
        raise
    except Exception:
        raise GenerationError(name) from None


@dataclass(frozen=True)
class Quorum:
    """What a generation produces besides the echoed request fields."""

    shardfile: str
    public_key: str
    fingerprint: str


def check_parameters(threshold: int, max_: int, holders: int) -> None:
    if not (1 <= threshold <= max_ <= MAX_HOLDERS and max_ == holders):
        raise QuorumRequestError([PARAMETERS.format(t=threshold, m=max_, n=holders)])


def validate_v0_keyring(keyring: str, threshold: int, max_: int, *, now: int) -> list[Certificate]:
    """keymaker.md §4.2 steps 2–5: every certificate must be eligible; nothing is dropped."""
    try:
        certs = load_certificates(keyring)
    except OpenPGPError as exc:
        raise QuorumRequestError([f"could not parse keyring: {exc}"]) from exc
    if any(c.has_secret for c in certs):
        raise QuorumRequestError([SECRET_MATERIAL])
    if not certs:
        raise QuorumRequestError([NO_ELIGIBLE])
    reasons = []
    for cert in certs:
        verdict = validity.eligibility(cert, now)
        if verdict.primary is not validity.PrimaryState.LIVE:
            reasons.append(PRIMARY_DEAD.format(fpr=cert.fingerprint))
        elif verdict.missing:
            reasons.append(INELIGIBLE.format(fpr=cert.fingerprint, roles=", ".join(verdict.missing)))
    if reasons:
        raise QuorumRequestError([NO_ELIGIBLE, *reasons])
    conflict = validity.find_holder_conflict(certs, now)
    if conflict is not None:
        raise QuorumRequestError([conflict.reason])
    check_parameters(threshold, max_, len(certs))
    return certs


class _HolderRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _v1_holder(text: str, now: int) -> Certificate:
    """Checks a–g of keymaker.md §4.1 for one `cert`, in the table's order."""
    if not text.strip():
        raise _HolderRefused(V1_MISSING)
    try:
        certs = load_certificates(text)
    except OpenPGPError:
        raise _HolderRefused(V1_MALFORMED) from None
    if len(certs) != 1:
        raise _HolderRefused(V1_NOT_ONE)
    cert = certs[0]
    if cert.has_secret:
        raise _HolderRefused(V1_REQUIREMENTS)
    state = validity.primary_state(cert, now)
    if state in (validity.PrimaryState.EXPIRED, validity.PrimaryState.REVOKED):
        raise _HolderRefused(V1_DEAD)
    if state is not validity.PrimaryState.LIVE:  # no valid binding in force (e)
        raise _HolderRefused(V1_POLICY)
    if validity.eligibility(cert, now).missing:
        raise _HolderRefused(V1_REQUIREMENTS)
    return cert


def validate_v1_keyring(certs: Sequence[str], threshold: int, max_: int, *,
                        now: int) -> list[Certificate]:
    """keymaker.md §4.1: parameters, then holder by holder the first failing check a–i.

    Checks h and i compare a holder with the earlier ones, so a conflict at index j is reported
    before a per-certificate failure at a later index k > j, exactly as a holder-by-holder loop
    would; holder order is kept as given.
    """
    check_parameters(threshold, max_, len(certs))
    holders: list[Certificate] = []
    failure: tuple[int, str] | None = None
    for index, text in enumerate(certs):
        try:
            holders.append(_v1_holder(text, now))
        except _HolderRefused as exc:
            failure = (index, exc.reason)
            break
    conflict = validity.find_holder_conflict(holders, now)
    if conflict is not None:
        failure = (conflict.index, conflict.reason)
    if failure is not None:
        raise QuorumRequestError([V1_AT_INDEX.format(index=failure[0], reason=failure[1])])
    return holders


def fresh_entropy(nsm_random: bytes | None = None,
                  os_random: Callable[[int], bytes] = lambda n: os.getrandom(n)) -> bytes:
    """keymaker.md §5 step 1: the OS CSPRNG, hashed with NSM GetRandom output when present."""
    os_bytes = os_random(32)
    if nsm_random is None:
        return os_bytes
    return hashlib.sha256(ENTROPY_DOMAIN + os_bytes + nsm_random).digest()


def generate(secret: bytes, threshold: int, holders: list[Certificate], *, now: int,
             expire: int = quorumkey.DEFAULT_EXPIRE) -> Quorum:
    """Shardfile and quorum certificate from `secret` (formats.md §7.5, §9), for v0 and V1 alike.

    A failure raises `GenerationError` naming the stage (keymaker.md §7's 500 text)."""
    with stage("certificate"):
        keys = quorumkey.quorum_keys(secret)
        public_key = quorumkey.public_certificate(keys, generated=now, expire=expire,
                                                  user_id=QUORUM_USER_ID)
    with stage("shardfile"):
        shards = shardfile.build(secret, threshold, holders, at=now)
    return Quorum(shards, public_key, keys.primary.public.fingerprint_hex)


def generate_quorum(keyring: str, threshold: int, max_: int, *, now: int,
                    label: Mapping[str, str] | None = None, secret: bytes | None = None,
                    expire: int = quorumkey.DEFAULT_EXPIRE) -> BundleV0:
    """A v0 bundle for `keyring` (validated per keymaker.md §4.2) from fresh entropy.

    `secret` is for tests and the development hook only; production callers leave it unset.
    """
    holders = validate_v0_keyring(keyring, threshold, max_, now=now)
    quorum = generate(secret if secret is not None else fresh_entropy(), threshold, holders,
                      now=now, expire=expire)
    return BundleV0.new(label=dict(label or {}), keyring=keyring, shardfile=quorum.shardfile,
                        public_key=quorum.public_key)
