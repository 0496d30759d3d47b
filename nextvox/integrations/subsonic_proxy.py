"""A Subsonic proxy that adds voice radio: point a client at nextvox instead of its server.

The proxy answers, from the library's voices, OpenSubsonic's ``sonicSimilarity`` extension
(``getOpenSubsonicExtensions``, ``getSonicSimilarTracks``, ``findSonicPath``) and the calls
clients make for "song radio" (``getSimilarSongs``, ``getSimilarSongs2``); every other
``/rest/`` call goes to the real server unchanged, streamed both ways, so one address serves
the whole client.

Auth is the server's. The proxy keeps no users: each request it answers itself is first
checked by asking the server, with the request's own credentials, for the song it names
(``getSong``); a refusal is passed back as the server worded it. The ``Child`` entries in the
answers are the server's own, fetched the same way, so each user sees what the server shows
them and nothing the server would hide. Only ``getOpenSubsonicExtensions`` is answered to
anyone, as the OpenSubsonic spec asks.

Answers follow the spec: ``f=json`` (and ``jsonp`` with ``callback``) or XML by default;
``sonicMatch`` items are ``{entry: Child, similarity}`` directly inside ``subsonic-response``,
the similarity ``(1 + cos) / 2`` of the timbre vectors (1 the same voice, 0 the opposite),
relative to the query song (``getSonicSimilarTracks``) or to the start song (``findSonicPath``).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import parse_qsl
from xml.etree import ElementTree

from nextvox import __version__
from nextvox.api.service import LibraryService
from nextvox.errors import NextvoxError
from nextvox.integrations import require
from nextvox.integrations.subsonic import (API_VERSION, SongMap, SubsonicClient, SubsonicConfig, form_fields, map_songs,
                                           server_songs)
from nextvox.playlists import radio
from nextvox.voicepath import voice_path

__all__ = ["EXTENSIONS", "AUTH_PARAMS", "voice_similarity", "subsonic_document", "create_proxy_app"]

EXTENSIONS = [{"name": "sonicSimilarity", "versions": [1]}]
AUTH_PARAMS = ("u", "p", "t", "s", "apiKey", "v", "c")
XMLNS = "http://subsonic.org/restapi"
# Headers that describe one HTTP connection, not the message: never passed through (RFC 9110 7.6.1).
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "host", "content-length"}
MAP_REFRESH_S = 60.0  # an unknown song id rebuilds the song map at most this often
MAX_COUNT = 500
# Subsonic error codes (the API's own numbering).
MISSING_PARAMETER, NOT_FOUND, GENERIC = 10, 70, 0


def voice_similarity(cosine: float) -> float:
    """The spec's normalised similarity of two voices from their timbre cosine: 1 the same, 0 the opposite.

    >>> voice_similarity(1.0), voice_similarity(0.0), voice_similarity(-1.0)
    (1.0, 0.5, 0.0)
    """
    return round(min(1.0, max(0.0, (1.0 + cosine) / 2.0)), 4)


def subsonic_document(body: dict, *, fmt: str, callback: str | None, version: str) -> tuple[bytes, str]:
    """A ``subsonic-response`` holding ``body``, as (bytes, media type) in JSON, JSONP or XML.

    ``body`` holds ``status`` and the answer's elements. In XML, as every Subsonic server writes
    it, scalars become attributes, objects child elements, and lists repeated elements.
    """
    response = {"status": body.get("status", "ok"), "version": version, "type": "nextvox", "serverVersion": __version__,
                "openSubsonic": True, **{k: v for k, v in body.items() if k != "status"}}
    if fmt in ("json", "jsonp"):
        text = json.dumps({"subsonic-response": response})
        if fmt == "jsonp" and callback:
            return f"{callback}({text})".encode(), "application/javascript"
        return text.encode(), "application/json"
    root = ElementTree.Element("subsonic-response", xmlns=XMLNS)
    _to_xml(root, response)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(root, encoding="utf-8", xml_declaration=False), "text/xml; charset=utf-8"


def _xml_value(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _to_xml(element: ElementTree.Element, values: dict) -> None:
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, dict):
            _to_xml(ElementTree.SubElement(element, name), value)
        elif isinstance(value, list):
            for item in value:
                child = ElementTree.SubElement(element, name)
                if isinstance(item, dict):
                    _to_xml(child, item)
                else:
                    child.text = _xml_value(item)
        else:
            element.set(name, _xml_value(value))


class _Failure(Exception):
    """An answer in the Subsonic error shape: ``code`` and ``message`` (the server's, when it refused)."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class VoiceProxy:
    """The proxy's state: the library's recommender, the server's song map, one HTTP client to the server."""

    def __init__(self, library: Path, data_dir: Path, config: SubsonicConfig):
        self.service = LibraryService(library, data_dir)
        self.config = config
        self.http = None  # httpx.AsyncClient, opened by the app's lifespan
        self._map: SongMap | None = None
        self._mapped_at = float("-inf")
        self._map_lock = threading.Lock()
        self.server_version = API_VERSION

    def song_map(self, *, refresh: bool = False) -> SongMap:
        """The server's songs matched to the library's tracks (rebuilt when asked, at most once a MAP_REFRESH_S)."""
        if self._map is not None and not refresh:
            return self._map  # never waits for a rebuild under way in another thread
        with self._map_lock:
            stale = refresh and time.monotonic() - self._mapped_at >= MAP_REFRESH_S
            if self._map is None or stale:
                with SubsonicClient(self.config) as client:
                    self.server_version = str(client.call("ping").get("version") or self.server_version)
                    songs = server_songs(client)
                with self.service.catalogue_lock:  # read for the map, not kept: a server holds no track list
                    tracks = self.service.catalogue.tracks(status="analyzed")
                self._map = map_songs(songs, tracks)
                self._mapped_at = time.monotonic()
            return self._map

    def library_path(self, song_id: str) -> str:
        path = self.song_map().path_of.get(song_id) or self.song_map(refresh=True).path_of.get(song_id)
        if path is None:
            raise _Failure(NOT_FOUND, f"nextvox has not analysed the song {song_id} (or cannot match it to a file of its library)")
        return path

    async def ask_server(self, credentials: list[tuple[str, str]], endpoint: str, params: list[tuple[str, str]]) -> dict:
        """The server's ``subsonic-response`` to ``endpoint`` asked with the request's own credentials (JSON)."""
        import httpx

        data = [(k, v) for k, v in credentials if k != "f"] + [("f", "json"), *params]
        try:
            response = await self.http.post(f"{self.config.base_url}/rest/{endpoint}", data=form_fields(data))
            document = response.json()["subsonic-response"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            raise _Failure(GENERIC, "the Subsonic server behind nextvox did not answer") from None
        self.server_version = str(document.get("version") or self.server_version)
        return document

    async def checked(self, credentials: list[tuple[str, str]], endpoint: str, params: list[tuple[str, str]]) -> dict:
        """As :meth:`ask_server`, raising the server's own error when it refused."""
        document = await self.ask_server(credentials, endpoint, params)
        if document.get("status") != "ok":
            error = document.get("error") or {}
            raise _Failure(int(error.get("code", GENERIC)), str(error.get("message", "refused by the server")))
        return document

    async def children(self, credentials: list[tuple[str, str]], paths: list[str]) -> list[dict | None]:
        """The server's ``Child`` of each library path, as this user may see it (None where there is none)."""
        song_map = self.song_map()

        async def one(path: str) -> dict | None:
            song_id = song_map.id_of.get(path)
            if song_id is None:
                return None
            document = await self.ask_server(credentials, "getSong", [("id", song_id)])
            return document.get("song") if document.get("status") == "ok" else None

        return list(await asyncio.gather(*(one(p) for p in paths)))


def _count(params: dict[str, list[str]], default: int, *, minimum: int) -> int:
    raw = (params.get("count") or [str(default)])[0]
    try:
        count = int(raw)
    except ValueError:
        raise _Failure(GENERIC, f"count must be a whole number, not {raw!r}") from None
    if not minimum <= count <= MAX_COUNT:
        raise _Failure(GENERIC, f"count must be between {minimum} and {MAX_COUNT}")
    return count


def _required(params: dict[str, list[str]], name: str) -> str:
    values = params.get(name)
    if not values or not values[0]:
        raise _Failure(MISSING_PARAMETER, f"Required parameter is missing: {name}")
    return values[0]


async def _sonic_similar_tracks(proxy: VoiceProxy, credentials, params) -> dict:
    song_id = _required(params, "id")
    count = _count(params, 10, minimum=0)
    await proxy.checked(credentials, "getSong", [("id", song_id)])  # the server's auth, and its view of the song
    path = await asyncio.to_thread(proxy.library_path, song_id)

    def similar() -> list[tuple[str, float]]:
        recommender = proxy.service.recommender()
        if count == 0:
            return []
        found = recommender.recommend([recommender.track_query(path)], k=count)
        return [(r.path, r.timbre_similarity) for r in found if r.path in proxy.song_map().id_of]

    found = await asyncio.to_thread(similar)
    entries = await proxy.children(credentials, [p for p, _ in found])
    return {"sonicMatch": [{"entry": entry, "similarity": voice_similarity(cos)}
                           for (_, cos), entry in zip(found, entries) if entry is not None]}


async def _find_sonic_path(proxy: VoiceProxy, credentials, params) -> dict:
    start_id, end_id = _required(params, "startSongId"), _required(params, "endSongId")
    count = _count(params, 25, minimum=1)
    ends = [(await proxy.checked(credentials, "getSong", [("id", song_id)])).get("song") for song_id in (start_id, end_id)]
    start, end = await asyncio.to_thread(proxy.library_path, start_id), await asyncio.to_thread(proxy.library_path, end_id)

    def path() -> list[tuple[str, float]]:
        recommender = proxy.service.recommender()
        songs = voice_path(recommender, recommender.track_query(start), recommender.track_query(end), n=max(2, count))
        first = recommender.timbre_vector(recommender.track(start).content_hash)
        return [(s.path, float(recommender.timbre_vector(recommender.track(s.path).content_hash) @ first))
                for s in songs]

    try:
        found = await asyncio.to_thread(path)
    except NextvoxError as error:
        raise _Failure(GENERIC, str(error)) from None
    # The ends are the songs asked for, under the ids asked for; the songs between are the library's first copy.
    entries = [ends[0], *await proxy.children(credentials, [p for p, _ in found[1:-1]]), ends[1]]
    return {"sonicMatch": [{"entry": entry, "similarity": voice_similarity(cos)}
                           for (_, cos), entry in zip(found, entries) if entry is not None]}


async def _seed_paths(proxy: VoiceProxy, credentials, item_id: str) -> list[str] | None:
    """Library paths that ``item_id`` names: a song, or the songs of an artist or an album.

    None when it names none of those, or nothing nextvox has analysed (the server answers then).
    """
    song = await proxy.ask_server(credentials, "getSong", [("id", item_id)])
    if song.get("status") == "ok":
        try:
            return [await asyncio.to_thread(proxy.library_path, item_id)]
        except _Failure:
            return None  # a song nextvox has not analysed: the server's own similar songs
    album_ids = []
    artist = await proxy.ask_server(credentials, "getArtist", [("id", item_id)])
    if artist.get("status") == "ok":
        album_ids = [str(a["id"]) for a in (artist.get("artist") or {}).get("album") or []]
    else:
        album_ids = [item_id]
    song_ids = []
    for album_id in album_ids:
        album = await proxy.ask_server(credentials, "getAlbum", [("id", album_id)])
        if album.get("status") == "ok":
            song_ids += [str(s["id"]) for s in (album.get("album") or {}).get("song") or []]
    if not song_ids:
        return None
    song_map = proxy.song_map()
    return [song_map.path_of[s] for s in song_ids if s in song_map.path_of] or None


async def _similar_songs(proxy: VoiceProxy, credentials, params, element: str) -> dict | None:
    item_id = _required(params, "id")
    count = _count(params, 50, minimum=1)
    await proxy.checked(credentials, "ping", [])
    seeds = await _seed_paths(proxy, credentials, item_id)
    if seeds is None:
        return None  # not a song, artist or album nextvox knows: the server's own answer

    def voice_radio() -> list[str]:
        recommender = proxy.service.recommender()
        songs = radio(recommender, [recommender.track_query(p) for p in seeds], n=count)
        return [s.path for s in songs if s.path in proxy.song_map().id_of]

    entries = await proxy.children(credentials, await asyncio.to_thread(voice_radio))
    return {element: {"song": [e for e in entries if e is not None]}}


def create_proxy_app(library: Path, data_dir: Path, config: SubsonicConfig):
    """The proxy as an ASGI app (run it with uvicorn): ``/rest/*`` for clients, everything else 404."""
    httpx = require("httpx", extra="subsonic")
    from starlette.applications import Starlette
    from starlette.background import BackgroundTask
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response, StreamingResponse
    from starlette.routing import Route

    proxy = VoiceProxy(library, data_dir, config)

    @asynccontextmanager
    async def lifespan(app) -> AsyncIterator[None]:
        proxy.http = httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=10.0))
        try:
            await asyncio.to_thread(proxy.song_map)
            yield
        finally:
            await proxy.http.aclose()
            proxy.service.close()

    async def forward(request: Request, endpoint: str) -> Response:
        url = f"{config.base_url}/rest/{endpoint}" + (f"?{request.url.query}" if request.url.query else "")
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
        try:
            upstream = await proxy.http.send(
                proxy.http.build_request(request.method, url, headers=headers, content=await request.body()), stream=True)
        except httpx.HTTPError:
            return PlainTextResponse("the Subsonic server behind nextvox did not answer", status_code=502)
        kept = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP - {"content-length"}}
        return StreamingResponse(upstream.aiter_raw(), status_code=upstream.status_code, headers=kept,
                                 background=BackgroundTask(upstream.aclose))

    async def rest(request: Request) -> Response:
        endpoint = request.path_params["endpoint"]
        name = endpoint.removesuffix(".view")
        if name not in ("getOpenSubsonicExtensions", "getSonicSimilarTracks", "findSonicPath", "getSimilarSongs", "getSimilarSongs2"):
            return await forward(request, endpoint)
        pairs = list(request.query_params.multi_items())
        if request.method == "POST" and request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            pairs += parse_qsl((await request.body()).decode("utf-8", errors="replace"), keep_blank_values=True)
        params: dict[str, list[str]] = {}
        for key, value in pairs:
            params.setdefault(key, []).append(value)
        fmt, callback = (params.get("f") or ["xml"])[0], (params.get("callback") or [None])[0]
        credentials = [(k, v) for k, v in pairs if k in AUTH_PARAMS]
        try:
            if name == "getOpenSubsonicExtensions":
                answer = await proxy.ask_server(credentials, name, [])
                theirs = [e for e in answer.get("openSubsonicExtensions") or [] if e.get("name") != "sonicSimilarity"] \
                    if answer.get("status") == "ok" else []
                body = {"openSubsonicExtensions": theirs + EXTENSIONS}
            elif name == "getSonicSimilarTracks":
                body = await _sonic_similar_tracks(proxy, credentials, params)
            elif name == "findSonicPath":
                body = await _find_sonic_path(proxy, credentials, params)
            else:
                body = await _similar_songs(proxy, credentials, params, "similarSongs" if name == "getSimilarSongs" else "similarSongs2")
                if body is None:
                    return await forward(request, endpoint)
        except _Failure as failure:
            body = {"status": "failed", "error": {"code": failure.code, "message": failure.message}}
        except NextvoxError as error:
            body = {"status": "failed", "error": {"code": GENERIC, "message": " ".join(str(error).split())}}
        content, media_type = subsonic_document(body, fmt=fmt, callback=callback, version=proxy.server_version)
        return Response(content, media_type=media_type)

    async def elsewhere(request: Request) -> Response:
        return PlainTextResponse("nextvox's Subsonic proxy serves /rest/ only", status_code=404)

    app = Starlette(routes=[Route("/rest/{endpoint:path}", rest, methods=["GET", "POST", "HEAD"]),
                            Route("/{anything:path}", elsewhere)], lifespan=lifespan)
    app.state.proxy = proxy
    return app
