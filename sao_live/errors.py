"""One root for every error sao-live raises on purpose, each with a stable code.

The code travels in `/sao/error <id> <code> <message>` replies and in CLI exit messages,
so a client can react to the kind of failure without parsing the sentence.
"""

from __future__ import annotations


class SaoLiveError(Exception):
    """Base class: `code` names the kind of failure, the message says what to do."""

    code = "error"


class ModelConfigError(SaoLiveError, ValueError):
    """A `model_config.json` that is missing, unreadable, or asks for an unsupported part."""

    code = "bad_config"


class CheckpointError(SaoLiveError, ValueError):
    """A checkpoint file that is missing, truncated, or does not match its config."""

    code = "bad_checkpoint"


class ModelAccessError(SaoLiveError, RuntimeError):
    """The model could not be fetched: gated repo, no token, no network."""

    code = "model_access"


class InvalidRequestError(SaoLiveError, ValueError):
    """A generation argument outside what the model accepts."""

    code = "bad_request"


class Cancelled(SaoLiveError):
    """Raised by a progress callback to stop a generation between steps."""

    code = "cancelled"


class RequestError(InvalidRequestError):
    """A request that cannot be served; `code` names the field or the kind of problem."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
