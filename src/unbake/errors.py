"""One exception hierarchy: every failure a user can cause or meet is one of these."""

from __future__ import annotations


class UnbakeError(Exception):
    """Base class of every error unbake raises on purpose."""

    exit_code = 1


class AudioError(UnbakeError):
    """An input could not be decoded, or decoded audio is unusable."""


class InvalidAudioError(AudioError):
    """Audio decoded but holds no usable samples (empty, NaN, inf, bad layout)."""


class ChannelLayoutError(AudioError):
    """Ambiguous or unsupported channel layout."""


class OutputError(UnbakeError):
    """An output cannot be written (exists, folder not writable, bad format)."""


class OutputExistsError(OutputError):
    """An output file exists and overwriting was not asked for."""


class ModelError(UnbakeError):
    """A model cannot be found, built or loaded."""


class UnknownModelError(ModelError):
    """A model name is not in the catalogue and is not a file."""


class CheckpointError(ModelError):
    """A checkpoint file is malformed, unsafe or does not match its architecture."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint asks to run code or import something outside the allow-list."""


class DownloadError(ModelError):
    """A model file could not be downloaded or failed verification."""


class OfflineError(DownloadError):
    """A model file is needed but not cached and downloads are switched off."""


class ChecksumError(DownloadError):
    """A file's content does not match the checksum the catalogue lists."""


class ConfigError(UnbakeError):
    """A project or configuration file is invalid; the message names the bad key."""


class DependencyError(UnbakeError):
    """An optional dependency is missing; the message says what to install."""


class ParameterError(UnbakeError, ValueError):
    """An argument has a value the function cannot use. ``parameter`` is its Python name, so that
    a front end can name its own spelling of it (the CLI says ``--overlap``)."""

    def __init__(self, parameter: str, detail: str) -> None:
        super().__init__(f"{parameter}: {detail}")
        self.parameter = parameter
        self.detail = detail


class OutputOptionError(ParameterError, OutputError):
    """An output option (format, bit depth, bitrate, file name template) is invalid."""


class ModelOptionError(ParameterError, ModelError):
    """A model-choice option (weights, ensemble method, model file) does not fit the models."""
