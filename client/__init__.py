"""senti's Python SDK."""
from .sdk import Prediction, SentiClient, StreamResult, ZeroShotResult

__all__ = ["Prediction", "SentiClient", "StreamResult", "ZeroShotResult"]
