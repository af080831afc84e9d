"""sao-live: play Stable Audio Open live."""

from .engine.pipeline import GenerationResult, StableAudioPipeline
from .errors import SaoLiveError

__all__ = ["GenerationResult", "SaoLiveError", "StableAudioPipeline"]
__version__ = "0.1.0"
