"""locksmith: Caution-compatible enclave key services in one zipapp."""

__version__ = "0.1.0"
