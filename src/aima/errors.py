"""The one error tree of aima.

Every error a user can see is an ``AimaError``; each class maps to one HTTP status and one
CLI exit code, and its message says what happened, to what, and what to do next::

    AimaError                      500  exit 1
     ├── InvalidInput              422  exit 2   (field names the bad input)
     │    └── BadRequest           400  exit 2   (malformed body: not JSON, not an object)
     ├── NotFound                  404  exit 4
     ├── Conflict                  409  exit 5   (well-formed, but at odds with what is here: a name or port
     │    │                                        taken, hardware no variant runs on, config an engine refuses)
     │    ├── PortInUse            409  exit 5
     │    └── InsufficientMemory   409  exit 5   (a model does not fit the free memory; details hold the numbers)
     ├── Unavailable               503  exit 6
     │    └── DaemonUnreachable    503  exit 6   (CLI side: no daemon at --url)
     ├── Unauthorized              401  exit 7   (no valid API key: the CLI reads a 401 as this)
     ├── EngineError               502  exit 8   (an engine failed to start or answer)
     ├── TimedOut                  504  exit 9
     └── StoreError                500  exit 3   (database unreadable, corrupt, or locked)
          ├── DiskFull             500  exit 3   (a model does not fit, or the disk filled while writing)
          └── ChecksumMismatch     500  exit 3   (a pulled file's size or sha256 differs from its source's)
"""

from __future__ import annotations

from typing import Any


class AimaError(Exception):
    status = 500
    exit_code = 1
    code = "internal_error"

    def __init__(self, message: str, *, field: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        err: dict[str, Any] = {"message": self.message, "type": type(self).__name__, "code": self.code}
        if self.field:
            err["param"] = self.field
        if self.details:
            err["details"] = self.details
        return {"error": err}

    @classmethod
    def from_dict(cls, status: int, body: Any) -> AimaError:
        """Rebuild an error from an HTTP error body (the CLI and stdio MCP use this)."""
        err = body.get("error") if isinstance(body, dict) else None
        if not isinstance(err, dict):
            return AimaError(f"HTTP {status}: {str(body)[:300]}")
        by_name = {c.__name__: c for c in _all_subclasses(AimaError)}
        klass = by_name.get(str(err.get("type")))
        if klass is None:
            klass = next((c for c in _all_subclasses(AimaError) if c.status == status), AimaError)
        return klass(str(err.get("message", "")), field=err.get("param"), details=err.get("details"))


def _all_subclasses(cls: type) -> list[type]:
    out = [cls]
    for sub in cls.__subclasses__():
        out.extend(_all_subclasses(sub))
    return out


class InvalidInput(AimaError):
    status = 422
    exit_code = 2
    code = "invalid_input"


class BadRequest(InvalidInput):
    status = 400
    code = "bad_request"


class NotFound(AimaError):
    status = 404
    exit_code = 4
    code = "not_found"


class Conflict(AimaError):
    status = 409
    exit_code = 5
    code = "conflict"


class PortInUse(Conflict):
    code = "port_in_use"


class InsufficientMemory(Conflict):
    code = "insufficient_memory"


class Unavailable(AimaError):
    status = 503
    exit_code = 6
    code = "unavailable"


class DaemonUnreachable(Unavailable):
    code = "daemon_unreachable"


class Unauthorized(AimaError):
    status = 401
    exit_code = 7
    code = "unauthorized"


class EngineError(AimaError):
    status = 502
    exit_code = 8
    code = "engine_error"


class TimedOut(AimaError):
    status = 504
    exit_code = 9
    code = "timeout"


class StoreError(AimaError):
    status = 500
    exit_code = 3
    code = "store_error"


class DiskFull(StoreError):
    code = "disk_full"


class ChecksumMismatch(StoreError):
    code = "checksum_mismatch"
