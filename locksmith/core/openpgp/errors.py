"""One exception family for everything OpenPGP, so callers can catch the layer as a whole."""


class OpenPGPError(ValueError):
    """Malformed, unsupported or failing OpenPGP data; the message is safe to show a user."""


class ArmorError(OpenPGPError):
    pass


class PacketError(OpenPGPError):
    pass


class UnsupportedKey(OpenPGPError):
    pass
