"""Small named exceptions of the worker package.

Each error the web boundary can meet has a `code` (snake_case, stable, used in
JSON error bodies) and an HTTP `status`.  Add new ones here, next to their kin.
"""

from __future__ import annotations


class HoldSlayerError(Exception):
    code = "error"
    status = 500


# --- request validation (mapped to 4xx by web/errors.py) ----------------------
class ValidationError(HoldSlayerError):
    code = "invalid_request"
    status = 400


class InvalidNumber(ValidationError):
    code = "invalid_number"


class EmergencyNumber(ValidationError):
    code = "emergency_number"


class PremiumRateNumber(ValidationError):
    code = "premium_rate_number"


class DestinationNotAllowed(ValidationError):
    code = "destination_not_allowed"


class SchemaViolation(ValidationError):
    """A request body does not fit its JSON Schema; `details` names the failing field path."""

    code = "schema_violation"

    def __init__(self, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


class UnknownCallFlow(ValidationError):
    code = "unknown_call_flow"
    status = 404


class InvalidCallFlow(ValidationError):
    """A call-flow step the navigator cannot run (unknown type, bad field, missing request option)."""

    code = "invalid_call_flow"


class UnknownDevice(ValidationError):
    code = "unknown_device"


class NotFound(HoldSlayerError):
    code = "not_found"
    status = 404


class Unauthorized(HoldSlayerError):
    code = "unauthorized"
    status = 401


class RateLimited(HoldSlayerError):
    code = "rate_limited"
    status = 429


class Conflict(HoldSlayerError):
    code = "conflict"
    status = 409


# --- the switch -----------------------------------------------------------------
class EslError(HoldSlayerError):
    code = "esl_error"


class EslAuthError(EslError):
    code = "esl_auth_failed"


class EslTimeout(EslError):
    code = "esl_timeout"


class EslDisconnected(EslError):
    code = "esl_disconnected"


class CommandFailed(EslError):
    """The switch answered -ERR / -USAGE; `reply` holds its exact text."""

    code = "command_failed"

    def __init__(self, message: str, reply: str = "") -> None:
        super().__init__(message)
        self.reply = reply


class OriginateFailed(CommandFailed):
    """originate ended with -ERR <CAUSE>; `cause` is the hangup cause (USER_BUSY, NO_ANSWER, ...)."""

    code = "originate_failed"

    def __init__(self, message: str, cause: str, reply: str = "") -> None:
        super().__init__(message, reply)
        self.cause = cause


class LegGone(EslError):
    """The channel hung up while we waited on it."""

    code = "leg_gone"

    def __init__(self, message: str, cause: str = "") -> None:
        super().__init__(message)
        self.cause = cause


class ForkFailed(EslError):
    """uuid_audio_fork did not connect (mod_audio_fork::connect_failed, or no connect in time)."""

    code = "fork_failed"

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


# --- the job's life -------------------------------------------------------------
class CallInterrupted(BaseException):  # noqa: N818 - an interruption, not an error
    """Thrown into a running call's greenlet to end it now (worker shutdown, RQ stop-job).

    A BaseException, like GreenletExit, so that `except Exception` in I/O code cannot
    swallow it; the job hangs its legs up and marks the call failed with `reason`.
    """

    code = "call_interrupted"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- speech (worker/stt.py, worker/tts.py) ------------------------------------------
class SpeechError(HoldSlayerError):
    """Speech recognition or synthesis failed (engine missing, remote API error, bad audio)."""

    code = "speech_failed"
