"""The shared network layer every data source uses: HTTP, downloads, cache, content, provenance.

Importing this package is cheap (no httpx); import the submodules inside your command function.

Modules
-------
- ``http``: :class:`HttpClient` (httpx) with retries, backoff + jitter, Retry-After, a per-source
  rate limit, User-Agent ``astrobio/<version>``, API key redaction. ``HttpClient.from_settings``
  reads ``settings.source(name)``: base_url, api_key, timeout, rate_limit, retries, backoff.
- ``download``: :func:`download` streams to a temp file beside the destination, checks
  Content-Length, computes sha256, resumes with Range, validates, renames into place.
- ``cache``: :class:`Cache` keyed by source + normalised request; hits need no network;
  ``verify`` marks corrupt entries, which are then fetched again.
- ``content``: :func:`check_body` (HTML or TAP error with 200), :func:`parse_delimited` (typed
  CSV/TSV with header check and line-numbered row errors).
- ``tables``: typed table -> Parquet/CSV with units in field metadata.
- ``provenance``: the ``<file>.provenance.json`` sidecar.
- ``tap``: IVOA TAP sync + async (UWS) queries.
- ``errors``: NetworkError, OfflineError, DownloadError, ContentError (all user errors).

How a source uses it (a file download; see ``astrobio_data_sources.nasa_exoplanet`` for TAP)::

    from astrobio_cli.net.cache import Cache
    from astrobio_cli.net.http import HttpClient
    from astrobio_cli.net import provenance

    def fetch_genome(accession: str, out: Path, refresh: bool = False) -> Path:
        request = {"path": "genomes/download", "accession": accession}   # no secrets here
        with HttpClient.from_settings("ncbi", "https://api.ncbi.nlm.nih.gov",
                                      api_key_param="api_key") as client:
            hit = Cache.from_settings().fetch(
                "ncbi", request,
                lambda dest: client.download("genomes/download", dest,
                                             params={"accession": accession}),
                refresh=refresh,
            )
            # hit.from_cache, hit.entry.age_s, hit.path (the verified body)
            ...  # parse hit.path, write `out` atomically (net.files.atomic_path)
            rec = provenance.record(source="ncbi", url=hit.entry.record["url"], query=accession,
                                    hit=hit, output=out, output_format="fasta")
            provenance.write_sidecar(out, rec, redact=client.redact)
        return out

Rules: never put the API key in the cache request mapping or messages (use
``client.full_url`` / ``client.redact``); raise :class:`ContentError` quoting the server when a
body is not what was asked for; keep retry waits configurable (tests set ``backoff`` tiny).
Tests can reuse the loopback server in ``tests/httpserver.py``.
"""

from astrobio_cli.net.errors import ContentError, DownloadError, NetworkError, OfflineError

__all__ = ["ContentError", "DownloadError", "NetworkError", "OfflineError"]
