"""One quorum generation, synchronous and off the event loop (keymaker.md §5).

`KeymakerService.validate` and `.generate` run in a worker thread; the HTTP layer awaits them.
Between them sits the one-shot gate, so validation (which starts no generation, §6) happens
before the gate is taken and entropy is drawn only after both.

What is logged per generation is fixed by keymaker.md §1 (request version, threshold, max,
holder fingerprints, quorum fingerprint, V1 bundle hash); the entropy, mnemonic, seed and shares
never reach a log line or an error: every stage failure is `GenerationError(stage)` without a
cause.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from locksmith.core.attestation.nsm import Nsm
from locksmith.core.canonical_cbor import bundle_hash, proof_nonce
from locksmith.core.keymaker import quorum
from locksmith.core.keymaker.request import (
    Request, V0Request, v0_response, v1_data, v1_response, validate,
)
from locksmith.core.openpgp.certs import Certificate
from locksmith.core.openpgp.quorumkey import DEFAULT_EXPIRE

log = logging.getLogger("keymaker")

UNSAFE_ENTROPY = bytes([0x07]) * 32  # formats.md §9.5: the public test secret
ENTROPY_SIZE = 32


def _os_random(size: int) -> bytes:
    """Blocks until the kernel pool is initialised (getrandom without GRND_NONBLOCK)."""
    return os.getrandom(size)


@dataclass
class KeymakerService:
    nsm: Nsm | None  # None: --nsm none, V1 requests are refused (503)
    nsm_kind: str = "none"
    expire: int = DEFAULT_EXPIRE
    unsafe_fixed_entropy: bool = False
    clock: Callable[[], float] = time.time
    os_random: Callable[[int], bytes] = _os_random
    _nsm_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def proofs(self) -> bool:
        """Whether V1 (proofed) requests can be served."""
        return self.nsm is not None

    def validate(self, request: Request) -> list[Certificate]:
        """keymaker.md §4 at the current time; raises `Refusal(400, ...)`."""
        return validate(request, now=int(self.clock()))

    def generate(self, request: Request, holders: list[Certificate]) -> bytes:
        """The response body for a validated request; raises `quorum.GenerationError`."""
        now = int(self.clock())
        secret = self._entropy()
        try:
            generated = quorum.generate(bytes(secret), request.threshold, holders, now=now,
                                        expire=self.expire)
        finally:
            secret[:] = bytes(len(secret))  # best effort: the bytes copies are left to the GC
        fingerprints = ",".join(c.fingerprint for c in holders)
        if isinstance(request, V0Request):
            body = v0_response(request, generated)
            log.info("generated quorum: version=v0 threshold=%d max=%d holders=%s quorum=%s",
                     request.threshold, request.max, fingerprints, generated.fingerprint)
            return body
        with quorum.stage("hashing"):
            data = v1_data(request, generated)
            digest = bundle_hash(data)
            nonce = proof_nonce(digest)
        with quorum.stage("NSM"):
            document = self._attest(digest, nonce)
        log.info("generated quorum: version=V1 threshold=%d max=%d holders=%s quorum=%s "
                 "bundle_hash=%s", request.threshold, request.max, fingerprints,
                 generated.fingerprint, digest.hex())
        return v1_response(data, document)

    def _entropy(self) -> bytearray:
        """keymaker.md §5 step 1: fresh for every request."""
        if self.unsafe_fixed_entropy:
            log.warning("%s=1: using the PUBLIC test entropy 07x32; anything encrypted to this "
                        "quorum can be read by anyone", "CAUTION_UNSAFE_KEY_SERVICE_E2E")
            return bytearray(UNSAFE_ENTROPY)
        with quorum.stage("entropy"):
            nsm_random = None
            if self.nsm is not None and self.nsm_kind == "device":
                with self._nsm_lock:
                    nsm_random = self.nsm.get_random()
                if len(nsm_random) < ENTROPY_SIZE:
                    raise ValueError("NSM GetRandom returned too few bytes")
                nsm_random = nsm_random[:ENTROPY_SIZE]
            return bytearray(quorum.fresh_entropy(nsm_random, os_random=self.os_random))

    def _attest(self, digest: bytes, nonce: bytes) -> bytes:
        if self.nsm is None:
            raise RuntimeError("no NSM")
        with self._nsm_lock:
            return self.nsm.attest(user_data=digest, nonce=nonce)
