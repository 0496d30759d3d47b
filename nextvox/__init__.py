"""nextvox: recommend songs by the singer's voice."""

__version__ = "0.1.0"
