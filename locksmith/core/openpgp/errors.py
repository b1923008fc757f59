"""One exception family for everything OpenPGP, so callers can catch the layer as a whole."""


class OpenPGPError(ValueError):
    """Malformed, unsupported or failing OpenPGP data; the message is safe to show a user."""


class ArmorError(OpenPGPError):
    pass


class PacketError(OpenPGPError):
    pass


class UnsupportedKey(OpenPGPError):
    pass


class MessageError(OpenPGPError):
    """An encrypted message that is malformed or uses something this project does not accept."""


class DecryptionError(OpenPGPError):
    """The supplied keys cannot decrypt the message (wrong key, or tampered ciphertext)."""
