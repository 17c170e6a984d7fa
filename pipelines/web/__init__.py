"""pipelines.web: run pipelines inside aiohttp apps, serve them over socket.io, watch them live.

Needs the ``web`` extra (``pip install 'aiopipelines[web]'``). The core never imports it.
"""

from .app import HUB, SIO, make_app
from .attach import PLUMBER, SUPERVISOR, Supervisor, attach
from .control import add_control_api
from .dashboard import Dashboard
from .errors import ItemDropped, Unavailable
from .hub import Hub, RunEntry
from .inbox import Inbox
from .security import is_loopback, required_token

__all__ = [
    "HUB",
    "PLUMBER",
    "SIO",
    "SUPERVISOR",
    "Dashboard",
    "Hub",
    "Inbox",
    "ItemDropped",
    "RunEntry",
    "Supervisor",
    "Unavailable",
    "add_control_api",
    "attach",
    "is_loopback",
    "make_app",
    "required_token",
]
