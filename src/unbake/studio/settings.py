"""Limits and network defaults of the studio server, shared by the app and the launcher."""

DEFAULT_MAX_UPLOAD_MB = 1024
DEFAULT_MAX_DURATION_MIN = 30.0
# JSON (and project YAML) request bodies: mixer settings are a few KiB
MAX_BODY_BYTES = 1024 * 1024
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
