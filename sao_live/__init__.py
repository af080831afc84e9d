"""sao-live: play Stable Audio Open live."""

from .errors import SaoLiveError

__all__ = ["GenerationResult", "SaoLiveError", "StableAudioPipeline"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # The pipeline pulls in torch (~1.5 s, ~300 MB): only code that asks for it pays. The daemon's
    # control process imports sao_live without ever loading torch; its worker process does.
    if name in ("GenerationResult", "StableAudioPipeline"):
        from .engine import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'sao_live' has no attribute {name!r}")
