"""spacecorestore: Hypercore 10 / Corestore 6 compatible signed append-only logs, on trio."""
from .core.session import AppendResult, Info, Spacecore
from .crypto import KeyPair
from .errors import *  # noqa: F401,F403
from .errors import SpacecoreError

__all__ = ["Spacecore", "AppendResult", "Info", "KeyPair", "SpacecoreError"]
