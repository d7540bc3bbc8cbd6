"""spacecorestore: Hypercore 10 / Corestore 6 compatible signed append-only logs, on trio."""
from .core.session import AppendResult, Info, Spacecore
from .corestore import Corestore
from .listing import CoreRecord
from .crypto import KeyPair
from .errors import *  # noqa: F401,F403
from .errors import SpacecoreError

__all__ = ["Corestore", "CoreRecord", "Spacecore", "AppendResult", "Info", "KeyPair", "SpacecoreError"]
