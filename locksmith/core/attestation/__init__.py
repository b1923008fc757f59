"""AWS Nitro attestation: the document, its verification, and the NSM that produces it.

Everything here answers one question, "did a genuine enclave with these PCRs say this?", from
both ends: `cose` and `document` decode a COSE_Sign1 attestation document, `chain` walks its
certificates to a trust anchor, `verify` applies attestation.md §3 and raises one `errors` type
per reason, `pcr_policy` reads the expected PCRs; `nsm` is the NSM's CBOR API and selection, and
`nsm_simulated` answers it in-process for development. The `/dev/nsm` device client itself does
I/O and lives in `locksmith.personalities.nsm_device`.
"""
