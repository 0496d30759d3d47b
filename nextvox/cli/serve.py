"""``serve``: the HTTP API and the web page, on a socket bound before anything else runs."""

from __future__ import annotations

from pathlib import Path

import click

from nextvox.cli.common import (
    CONTEXT, FiniteFloatRange, app, chosen_data_dir, data_dir_option, decoder_notes_to_log, jobs_option, library_argument,
    progress_bars, stderr,
)  # fmt: skip
from nextvox.errors import NextvoxError



@app.command(context_settings=CONTEXT)
@library_argument
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (only this machine by default).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="TCP port.")
@click.option("--no-analyze", is_flag=True, help="Serve the catalogue as it is, without analysing new tracks first.")
@click.option("--max-upload-mb", type=FiniteFloatRange(min=0.1), default=50.0, show_default=True,
              help="Largest audio file accepted by the upload query.")
@jobs_option
@data_dir_option
@click.pass_context
def serve(
    ctx: click.Context, library: Path, host: str, port: int, no_analyze: bool, max_upload_mb: float,
    jobs: int | None, data_dir: Path | None,
) -> None:
    """Serve the HTTP API and the web page (analyses new tracks first, incrementally)."""
    import uvicorn

    from nextvox.api import create_app
    from nextvox.catalogue import remember_data_dir, resolve_library

    root = resolve_library(library)
    chosen = chosen_data_dir(ctx, library, data_dir)
    listening = _listening_socket(host, port)  # a busy port is one line now, before any analysis
    remember_data_dir(root, chosen)
    if not no_analyze:
        from nextvox.workflows import analyze_library  # loads torch: --no-analyze starts without it

        with progress_bars() as progress:
            task = progress.add_task("analysing", total=None)
            report = analyze_library(root, data_dir=chosen, jobs=jobs,
                                     on_track=lambda done, total, _: progress.update(task, completed=done, total=total))
        stderr.print(f"catalogue: {report.counts.get('analyzed', 0)} analysed, {report.counts.get('failed', 0)} failed")
    application = create_app(root, chosen, max_upload_bytes=int(max_upload_mb * 2**20),
                             allowed_hosts=_loopback_host_names(host))
    bound_port = listening.getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    stderr.print(f"nextvox serving {root} on http://{shown_host}:{bound_port}/ (Ctrl-C stops)")
    decoder_notes_to_log(chosen)  # uploads are decoded in threads: fd 2 is set once, here
    uvicorn.Server(uvicorn.Config(application, log_level="warning")).run(sockets=[listening])


def _loopback_host_names(host: str) -> list[str] | None:
    """The Host headers a server bound to ``host`` answers: this machine's names when ``host`` is a
    loopback address (no other site can reach it by a name of its own), else None (any)."""
    import ipaddress

    if host == "localhost":
        return ["localhost", "127.0.0.1"]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    # IPv4 only: the Host check splits the port off at the first colon, which an IPv6 literal holds.
    return ["localhost", "127.0.0.1", host] if address.version == 4 and address.is_loopback else None


def _listening_socket(host: str, port: int):
    """A TCP socket bound to ``host``:``port`` and listening, or a NextvoxError saying why not.

    Bound by us, before anything else, and handed to the server: a port in use is reported
    at once, and no other program can take it between the check and the start.
    """
    import socket

    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as error:
        raise NextvoxError(f"cannot listen on {host}: {error.strerror}") from None
    listening = socket.socket(family, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind((host, port))
        listening.listen(2048)
    except OSError as error:
        listening.close()
        raise NextvoxError(f"cannot listen on {host}:{port}: {error.strerror} (is another server using it? "
                           "choose another --port)") from None
    return listening

