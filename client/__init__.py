"""senti's Python SDK: a synchronous and an asyncio client with the same typed results."""
from .aio import AsyncSentiClient
from .channel import RetryPolicy
from .results import Prediction, StreamResult, ZeroShotResult
from .sdk import SentiClient
from .throttle import AdaptiveThrottle

__all__ = ["AdaptiveThrottle", "AsyncSentiClient", "Prediction", "RetryPolicy", "SentiClient", "StreamResult",
           "ZeroShotResult"]
