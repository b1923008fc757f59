"""Verification of a V1 bundle's Keymaker proof (keymaker.md §8.2), for the CLI and locksmithd.

The necroproof is a Nitro attestation document whose `user_data` is the bundle hash and whose
`nonce` is the proof nonce (formats.md §6). It is verified **at its own timestamp**, so a bundle
stays verifiable long after the 3-hour leaf certificate expired: the question is "did an attested
Keymaker sign exactly this bundle when it said it did", not "is that Keymaker alive now".

    verify_keymaker_proof(bundle, policy, trust_root=..., allow_debug=...) -> ProofResult

With a `PcrPolicy` the first matching set wins (`set_index`); without one (CLI only, README §5
#32) everything but the PCRs and the policy expiry is checked and `set_index` is None; the
caller prints `NO_POLICY_WARNING`. Every failure is `KeymakerProofError` with the spec's text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from locksmith.core.attestation import verify as attestation
from locksmith.core.attestation.pcr_policy import PcrPolicy
from locksmith.core.attestation.verify import Attestation, AttestationError, TrustAnchor
from locksmith.core.bundle.model import NO_NECROPROOF, BundleV1
from locksmith.core.canonical_cbor import bundle_hash, proof_nonce

__all__ = [
    "KeymakerProofError", "NO_POLICY_WARNING", "ProofResult", "UserDataNotBundleHashError",
    "UserDataNotBytesError", "verify_keymaker_proof",
]

NO_POLICY_WARNING = ("no Keymaker PCR policy; the proof was checked against the trust root but "
                     "not against expected Keymaker code")
NO_SET_MATCHED = ("keymaker necroproof did not match any PCR set valid at the necroproof "
                  "timestamp ({n} attempts): {reasons}")
INVALID_WITHOUT_POLICY = "keymaker necroproof is invalid: {reason}"


class KeymakerProofError(ValueError):
    """The bundle's proof does not verify; `str()` is the keymaker.md §8.2 text."""


class UserDataNotBytesError(AttestationError):
    def __init__(self) -> None:
        super().__init__("keymaker necroproof document does not contain bytes user_data")


class UserDataNotBundleHashError(AttestationError):
    def __init__(self) -> None:
        super().__init__("keymaker necroproof user data did not match the quorum bundle hash")


@dataclass(frozen=True)
class ProofResult:
    set_index: int | None  # the policy set that matched; None when verified without a policy
    attestation: Attestation
    bundle_hash: bytes
    nonce: bytes

    @property
    def generated_ms(self) -> int:
        """The bundle's generation time: the document's `timestamp` (ms since the epoch)."""
        return self.attestation.timestamp


def _user_data_is(expected: bytes) -> Callable[[Attestation], None]:
    def check(result: Attestation) -> None:
        # Checked here only, never by attestation.md §3 step 9 (keymaker.md §8.2 step 3).
        if not isinstance(result.user_data, bytes):
            raise UserDataNotBytesError()
        if result.user_data != expected:
            raise UserDataNotBundleHashError()
    return check


def verify_keymaker_proof(bundle: BundleV1, policy: PcrPolicy | None, *,
                          trust_root: TrustAnchor | None = None,
                          allow_debug: bool = False) -> ProofResult:
    """keymaker.md §8.2 on `bundle.necroproof`; `trust_root` None means the AWS Nitro root."""
    if not bundle.necroproof:
        raise KeymakerProofError(NO_NECROPROOF)
    digest = bundle_hash(bundle.data)
    nonce = proof_nonce(digest)
    check_user_data = _user_data_is(digest)
    if policy is None:
        try:
            result = attestation.verify(bundle.necroproof, trust_root=trust_root, nonce=nonce,
                                        allow_debug=allow_debug)
            check_user_data(result)
        except AttestationError as exc:
            raise KeymakerProofError(INVALID_WITHOUT_POLICY.format(reason=exc)) from None
        return ProofResult(None, result, digest, nonce)
    try:
        match = attestation.verify_with_policy(bundle.necroproof, policy, trust_root=trust_root,
                                               nonce=nonce, allow_debug=allow_debug,
                                               extra_check=check_user_data)
    except attestation.NoPcrSetMatchedError as exc:
        reasons = "; ".join(f"set {index}: {error}" for index, error in exc.failures)
        raise KeymakerProofError(NO_SET_MATCHED.format(n=len(exc.failures),
                                                       reasons=reasons)) from None
    return ProofResult(match.set_index, match.attestation, digest, nonce)
