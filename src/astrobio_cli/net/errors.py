"""Errors of the network layer. All are user errors: the CLI prints one line, exits 1."""

from __future__ import annotations

from astrobio_cli.errors import UserError


class NetworkError(UserError):
    """The server could not be reached, or kept failing after every retry."""


class OfflineError(NetworkError):
    """No connection to the host at all (DNS, refused, unreachable, timed out)."""


class DownloadError(NetworkError):
    """A transfer broke: a body shorter than Content-Length, a bad Content-Range, a bad checksum."""


class ContentError(UserError):
    """The server answered, but not with what was asked for (HTML, a TAP error, a bad row...)."""
