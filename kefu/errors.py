"""Exceptions of the composition root: one root, :class:`KefuError`, as every package below has its own.

The command line turns a :class:`KefuError` (like the packages' roots) into one clear line instead of a traceback.
Each class is defined here and named again by the module that raises it (``kefu.config.ConfigError``...), so both
import paths work.
"""

from __future__ import annotations


class KefuError(Exception):
    """Root of every error raised by the kefu package itself (a bot folder that cannot be used as it is)."""


class ConfigError(KefuError):
    """``bot.yml`` is missing or invalid; the message names the file and the field."""


class ScaffoldError(KefuError):
    """The bot folder cannot be written (not empty, a bad name or language); the message says what to do."""


class PolicySetupError(KefuError):
    """The bot lacks what its policy needs (a dialogue definition, a trained NLU, measured noise)."""
