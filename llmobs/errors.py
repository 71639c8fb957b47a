"""The exception tree of the project.

ObservatoryError
 ├── ConfigError            a setting or a config file is invalid
 ├── DecodeError            input that is not a valid OTLP trace request
 ├── SchemaError            an Avro record that no known schema can read
 └── StageError             a pipeline stage failed to reach a service
      └── (retriable)       subclasses set ``retriable = True``

Library errors are translated at the edge with ``raise ... from``.
"""


class ObservatoryError(Exception):
    """Root of every error raised on purpose by this project."""

    retriable = False


class ConfigError(ObservatoryError):
    """A setting, flag or config file entry is invalid; names the bad key."""


class DecodeError(ObservatoryError):
    """Input that cannot be read as an OTLP trace request or span."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class SchemaError(ObservatoryError):
    """An Avro record whose writer schema is unknown or incompatible."""


class StageError(ObservatoryError):
    """A stage could not complete its work against an external service."""


class RetriableStageError(StageError):
    """A stage failure worth retrying (broker or database briefly away)."""

    retriable = True
