"""Limits and network defaults of the studio server, shared by the app and the launcher."""

DEFAULT_MAX_UPLOAD_MB = 1024
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
