"""Every way a Nitro attestation can be refused (attestation.md §3), one exception type each.

The message of each exception is the normative one-line reason of attestation.md §3 (or of
keymaker.md §8 for the policy-level ones): other code prints it verbatim, e.g. `send-shard`'s
`Enclave attestation rejected: <reason>`. Import these from `locksmith.core.attestation.verify`.
"""

from __future__ import annotations


class AttestationError(Exception):
    """Base class: the document was refused; `str(exc)` / `exc.reason` is the one-line reason."""

    @property
    def reason(self) -> str:
        return str(self)


class MalformedDocumentError(AttestationError):
    """Steps 1–3: `malformed attestation document: <detail>`."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"malformed attestation document: {detail}")


class UnsupportedAlgorithmError(AttestationError):
    """Step 2: the protected header names another algorithm than ES384."""

    def __init__(self, alg: object) -> None:
        self.alg = alg
        shown = str(alg) if type(alg) is int else repr(alg)
        super().__init__(f"unsupported COSE algorithm {shown} (expected ES384)")


class UnsupportedDigestError(AttestationError):
    """Step 3: `digest` is not `SHA384`."""

    def __init__(self, digest: str) -> None:
        self.digest = digest
        super().__init__(f"attestation digest is {digest}, expected SHA384")


class CertificateChainError(AttestationError):
    """Step 4: the certificates do not chain (issuer and signature) from the trust anchor."""

    def __init__(self) -> None:
        super().__init__("certificate chain does not lead to the trusted root")


class CertificateValidityError(AttestationError):
    """Step 4: a certificate (often an intermediate, not the leaf) is not valid at time T."""

    def __init__(self, name: str, at: str, not_before: str, not_after: str) -> None:
        self.name = name
        super().__init__(f"certificate {name} is not valid at {at} "
                         f"(valid {not_before} .. {not_after})")


class CertificateProfileError(AttestationError):
    """Step 4: a certificate breaks the Nitro profile (algorithms, CA flags, key usage, key)."""

    def __init__(self, name: str, detail: str) -> None:
        self.name = name
        self.detail = detail
        super().__init__(f"certificate {name} violates the Nitro certificate profile: {detail}")


class SignatureInvalidError(AttestationError):
    """Step 5: the COSE signature does not verify under the leaf key."""

    def __init__(self) -> None:
        super().__init__("attestation signature is invalid")


class DebugEnclaveError(AttestationError):
    """Step 6: PCR0, PCR1 and PCR2 are all zero (a debug-mode enclave) and debug is not allowed."""

    def __init__(self) -> None:
        super().__init__("debug-mode enclave (all-zero PCRs) refused")


class PcrMissingError(AttestationError):
    """Step 7: an expected PCR index is absent from the document."""

    def __init__(self, index: int) -> None:
        self.index = index
        super().__init__(f"PCR{index} missing")


class PcrMismatchError(AttestationError):
    """Step 7: a PCR differs from its expected value."""

    def __init__(self, index: int, expected: bytes, got: bytes) -> None:
        self.index = index
        self.expected = expected
        self.got = got
        super().__init__(f"PCR{index} mismatch (expected {expected.hex()}, got {got.hex()})")


class NonceMismatchError(AttestationError):
    """Step 8."""

    def __init__(self) -> None:
        super().__init__("nonce did not match")


class UserDataMismatchError(AttestationError):
    """Step 9, exact value expected."""

    def __init__(self) -> None:
        super().__init__("user_data did not match")


class UserDataLengthError(AttestationError):
    """Step 9, a length is required (absent or null counts as 0 bytes)."""

    def __init__(self, length: int, expected: int) -> None:
        self.length = length
        self.expected = expected
        super().__init__(f"user_data is {length} bytes, expected {expected}")


# ---- PCR policy evaluation (keymaker.md §8.1–§8.2 semantics, also `attestation verify --pcr-policy`)


class DebugPcrSetError(AttestationError):
    """A policy set with all-zero PCR0/1/2 was skipped because debug enclaves are not allowed."""

    def __init__(self) -> None:
        super().__init__("debug-mode PCRs are not accepted")


class PolicyExpiredError(AttestationError):
    """The matching set's `expires_at_unix_seconds` is not after the document's timestamp."""

    def __init__(self, expires_at_unix_seconds: int) -> None:
        self.expires_at_unix_seconds = expires_at_unix_seconds
        super().__init__(f"PCR policy expired at Unix second {expires_at_unix_seconds}")


class NoPcrSetMatchedError(AttestationError):
    """No set of the policy accepted the document; `failures` holds (set index, error) per set.

    The message is generic; keymaker.md §8.2 callers format their own text from `failures`
    (`keymaker necroproof did not match any PCR set valid at the necroproof timestamp ...`).
    """

    def __init__(self, failures: list[tuple[int, AttestationError]]) -> None:
        self.failures = failures
        listed = "; ".join(f"set {i}: {exc}" for i, exc in failures)
        super().__init__(f"no PCR set of the policy matched ({len(failures)} attempts): {listed}")
