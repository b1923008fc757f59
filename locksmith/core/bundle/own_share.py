"""A holder's own share, decrypted and checked against the bundle it will be sent for.

`shardfile.decrypt_own_share` does formats.md §7.4 steps 1, 2 and 4–7, which need only the
shardfile. What needs the bundle is here: step 3 (the encrypted metadata against the bundle's
holder list and threshold) and the checks of protocol.md §11 step 3 (length 33, x = k + 1 with k
the holder's position *in the bundle*, the threshold to claim). The enclave applies the same
rules (protocol.md §8), so a share that fails here would be rejected there; failing locally, before
any connection is opened, tells the holder why without spending a submission.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from locksmith.core.bundle import shardfile
from locksmith.core.bundle.checks import CheckedBundle
from locksmith.core.bundle.shardfile import ShardfileError
from locksmith.core.openpgp.keys import DecryptionKey

__all__ = [
    "METADATA_DIFFERS", "THRESHOLD_DIFFERS", "V0_ORDER_WARNING", "CheckedShare",
    "open_own_share",
]

METADATA_DIFFERS = "imported quorum differs from encrypted metadata"
THRESHOLD_DIFFERS = "the share's threshold ({t}) differs from the bundle's ({T})"
V0_ORDER_WARNING = ("this v0 bundle's keyring order differs from its encrypted metadata; "
                    "a strict enclave will reject the share")


@dataclass(frozen=True)
class CheckedShare:
    """What Q carries: the 33-byte share (wipe it with `wipe()`) and the threshold to claim."""

    share: bytearray = field(repr=False)
    index: int  # the holder's position in the bundle; share[0] == index + 1
    threshold: int
    warnings: tuple[str, ...]  # texts without the `warning: ` prefix

    def wipe(self) -> None:
        self.share[:] = bytes(len(self.share))


def open_own_share(checked: CheckedBundle, holder_index: int,
                   keys: Sequence[DecryptionKey]) -> CheckedShare:
    """Decrypt the share of bundle holder `holder_index` with its decryption `keys`.

    Raises `ShardfileError` with the formats.md §7.4 text of the first failing check.
    """
    fingerprint = checked.holders[holder_index].fingerprint
    try:
        own = shardfile.decrypt_own_share(checked.bundle.shardfile, keys, fingerprint,
                                          holder_index)
    except ShardfileError as exc:
        if str(exc) == shardfile.NOT_A_HOLDER and checked.threshold is not None:
            # Step 3 precedes step 4: a bundle holder missing from the metadata is a metadata
            # that differs from the bundle, which is how V1 and ImportedV0 readers report it.
            raise ShardfileError(METADATA_DIFFERS) from exc
        raise
    share = bytearray(own.share)
    try:
        warnings = _check_metadata(checked, own.metadata)
        # protocol.md §11 step 3 / §8 check 5: the enclave derives k from the *bundle*.
        if len(share) != shardfile.SHARE_LENGTH or share[0] != holder_index + 1:
            if checked.threshold is not None:
                raise ShardfileError(shardfile.COORDINATE_MISMATCH)
            # v0: the metadata is authoritative and decrypt_own_share checked x against it;
            # the order warning above already says what a strict enclave will do.
        threshold = own.threshold if checked.threshold is None else checked.threshold
    except BaseException:
        share[:] = bytes(len(share))
        raise
    return CheckedShare(share, holder_index, threshold, warnings)


def _check_metadata(checked: CheckedBundle, metadata: shardfile.Metadata) -> tuple[str, ...]:
    """formats.md §7.4 step 3."""
    bundle_fprs = tuple(h.fingerprint for h in checked.holders)
    same_holders = metadata.holder_fingerprints == bundle_fprs
    if checked.threshold is None:  # v0: the metadata is authoritative
        return () if same_holders else (V0_ORDER_WARNING,)
    if same_holders and metadata.threshold == checked.threshold:
        return ()
    if same_holders and checked.generation == "V1":
        raise ShardfileError(THRESHOLD_DIFFERS.format(t=metadata.threshold, T=checked.threshold))
    raise ShardfileError(METADATA_DIFFERS)
