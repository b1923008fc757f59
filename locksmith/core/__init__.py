"""Pure, I/O-free building blocks shared by every personality.

Nothing in this package opens files, sockets or devices, reads the clock implicitly, or prints:
callers pass bytes and times in and get values or exceptions out. That keeps each piece testable
with vectors and lets the boot-path personalities import only what they use.
"""
