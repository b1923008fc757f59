"""Thin programs that do I/O and call `locksmith.core`.

Each personality is imported lazily by `locksmith.__main__`, so the boot-path programs
(`locksmithd`, `locksmith-oneshot`) never pay for the CLI or HTTP libraries.
"""
