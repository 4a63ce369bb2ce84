"""chat.client: follow a room and post to it from a program (asyncio, on aiohttp's client).

    async with subscribe("http://127.0.0.1:8888", "main", after="earliest") as sub:
        async for item in sub:          # message dicts as on the wire, and Reset notices
            ...

    await publish("http://127.0.0.1:8888", "main", "deployed v42", api_key=KEY)

It imports nothing from the rest of ``chat``: a program may copy this folder into its own tree.
"""

from .backoff import Backoff
from .errors import ChatClientError, PublishError, SubscribeError
from .publish import Publisher, new_idempotency_key, publish
from .subscribe import EARLIEST, Reset, Status, Subscription, subscribe

__all__ = ["EARLIEST", "Backoff", "ChatClientError", "PublishError", "Publisher", "Reset", "Status",
           "SubscribeError", "Subscription", "new_idempotency_key", "publish", "subscribe"]
