"""Uploaded files as event parameters: ``avatar: UploadFile``.

Other event bodies are buffered whole under the middleware's ``max_body_size``.
A ``multipart/form-data`` body of an event with upload parameters is streamed
instead, through Starlette's ``MultiPartParser`` (whose files spool to disk
past 1 MiB), counted against the event's own limit (derived from its
parameters) and read within a deadline of its own.  The text fields reach the
app as a small url-encoded form (FastHTML parses a form before its handlers
run), the files through the scope.  Binding checks each file's size, count and
type before the method runs; refusals show on the page like any bad
parameter.  The files are closed once the event has answered.

Datastar's own file binding (``data-bind`` on a file input: base64 contents in
the signals) works too, within the same limit, but that body is JSON and held
in memory whole: large files want a form.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import types
import typing
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from tempfile import SpooledTemporaryFile
from typing import Annotated, Any, Final, Protocol
from urllib.parse import urlencode

from starlette.datastructures import FormData, Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request
from starlette.types import Message, Receive, Scope, Send

from faststate._errors import GENERAL, BindError
from faststate._guards import (
    JSON_TYPES,
    VALUES_KEY,
    EventValues,
    FormFields,
    GuardSettings,
    Refusal,
    SlowBodies,
    check_event_request,
    guard_asgi,
    guard_request,
    media_type,
    replaying,
)

#: Where an upload event's request keeps its files (an ``Uploads``).
UPLOADS_KEY: Final = "faststate.uploads"

MiB: Final = 2**20
DEFAULT_MAX_SIZE: Final = 10 * MiB
DEFAULT_MAX_COUNT: Final = 10
#: Room in an upload body for its text fields, and the limit of each one.
FIELDS_ALLOWANCE: Final = 64 * 1024
#: Text fields of an upload form, at most.
MAX_FIELDS: Final = 100
#: The multipart headers and boundaries around each file.
PART_OVERHEAD: Final = 1024
#: A body over the event's limit by less than this factor is read on and thrown
#: away, so that the page can be told why: a browser still sending a body may
#: never see an answer sent before it is done.  Beyond it: 413, connection closed.
DISCARD_FACTOR: Final = 2
#: Past this size a file spools from memory to a temporary file: with the
#: count of files bounded, so is the memory of one upload.
SPOOL_SIZE: Final = 256 * 1024
#: Files of one body, at most, as a factor of those the event takes: a page
#: that sent a few too many is told on the page; a body with more is refused.
FILES_FACTOR: Final = 2
#: Base64 characters decoded at a time (a multiple of 4).
_DECODE_CHUNK: Final = 4 * 64 * 1024


class Upload:
    """The limits of an upload parameter, in its annotation:
    ``Annotated[UploadFile, Upload(max_size=5 * 2**20, accept=("image/png", "image/*"))]``.

    ``max_size`` bounds each file (bytes, 10 MiB by default); ``accept`` lists
    the media types taken (``"image/*"`` for a family; empty: any), as the
    browser declares them; ``max_count`` bounds the files of a
    ``list[UploadFile]`` parameter (10 by default).

    All limits are checked before the event runs; a refusal shows on the
    page through ``error(state, "<parameter>")``.

    Args:
        max_size: The largest file accepted, in bytes.
        accept: Media types accepted (``"image/png"``, ``"image/*"``), one
            string or several; empty accepts any.  The browser's claim, not
            sniffed from the bytes.
        max_count: The most files a ``list[UploadFile]`` parameter takes.

    Raises:
        ValueError: A limit that is not positive, or an ``accept`` entry that
            is not a media type.
    """

    __slots__ = ("accept", "max_count", "max_size")

    def __init__(
        self,
        *,
        max_size: int = DEFAULT_MAX_SIZE,
        accept: str | Iterable[str] = (),
        max_count: int = DEFAULT_MAX_COUNT,
    ) -> None:
        if max_size <= 0:
            raise ValueError("Upload(max_size=...) must be a positive number of bytes")
        if max_count <= 0:
            raise ValueError("Upload(max_count=...) must be at least 1")
        types_ = (accept,) if isinstance(accept, str) else tuple(accept)
        normalised = tuple(media_type(kind) for kind in types_)
        for kind in normalised:
            if kind.count("/") != 1 or kind.startswith("*"):
                raise ValueError(
                    f"Upload(accept=...) takes media types like 'image/png', not {kind!r}"
                )
        self.max_size = max_size
        self.accept = normalised
        self.max_count = max_count

    def __repr__(self) -> str:
        return (
            f"Upload(max_size={self.max_size}, accept={self.accept!r}, max_count={self.max_count})"
        )

    def accepts(self, content_type: str | None) -> bool:
        """Whether a file of this declared media type is accepted.

        Args:
            content_type: The file's ``Content-Type`` as the browser sent it.

        Returns:
            True when ``accept`` is empty or lists the type or its family.
        """

        if not self.accept:
            return True
        kind = media_type(content_type)
        family = kind.split("/", 1)[0] + "/*"
        return kind in self.accept or family in self.accept


@dataclass(frozen=True)
class UploadParam:
    """An event parameter that receives uploaded files."""

    name: str
    upload: Upload
    many: bool  # list[UploadFile]
    default: Any  # inspect.Parameter.empty: required

    @property
    def most_files(self) -> int:
        return self.upload.max_count if self.many else 1


def upload_of(annotation: Any) -> tuple[Upload, bool] | None:
    """The limits of an upload parameter annotated ``annotation``, and whether it
    takes a list; None for any other parameter."""
    marker: Upload | None = None
    if typing.get_origin(annotation) is Annotated:
        annotation, *extras = typing.get_args(annotation)
        marker = next((extra for extra in extras if isinstance(extra, Upload)), None)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        others = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        annotation = others[0] if len(others) == 1 else annotation
    origin = typing.get_origin(annotation)
    if _is_upload_file(annotation):
        many = False
    elif origin in (list, Sequence) and [*map(_is_upload_file, typing.get_args(annotation))] == [
        True
    ]:
        many = True
    elif marker is not None:
        raise TypeError("Upload(...) marks UploadFile or list[UploadFile] parameters only")
    else:
        return None
    return marker or Upload(), many


def _is_upload_file(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, UploadFile)


@dataclass(frozen=True)
class UploadPolicy:
    """What the middleware needs to know of one event path with upload parameters."""

    params: tuple[UploadParam, ...]
    #: A multipart body over this is refused.
    max_body: int = field(init=False)
    #: A JSON body (files as base64 signals) over this is refused.
    max_json: int = field(init=False)
    max_files: int = field(init=False)

    def __post_init__(self) -> None:
        files = sum(p.upload.max_size * p.most_files for p in self.params)
        count = sum(p.most_files for p in self.params)
        object.__setattr__(self, "max_files", count)
        object.__setattr__(self, "max_body", files + count * PART_OVERHEAD + FIELDS_ALLOWANCE)
        object.__setattr__(
            self, "max_json", -(-files * 4 // 3) + count * PART_OVERHEAD + FIELDS_ALLOWANCE
        )

    @property
    def names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.params)

    def too_large(self) -> tuple[str, str]:
        """Where the page shows that a body was over the limit, and the message."""
        if len(self.params) == 1 and not self.params[0].many:
            param = self.params[0]
            return param.name, f"The file is larger than {_size(param.upload.max_size)}."
        files = self.max_body - self.max_files * PART_OVERHEAD - FIELDS_ALLOWANCE
        where = self.params[0].name if len(self.params) == 1 else GENERAL
        return where, f"The files are larger than {_size(files)} together."


class Uploads:
    """The files of one upload event request (``scope[UPLOADS_KEY]``): those of the
    multipart body by field name, every file opened for it, and a refusal of the
    whole body to show on the page."""

    __slots__ = ("files", "opened", "refused")

    def __init__(self) -> None:
        self.files: dict[str, list[UploadFile]] = {}
        self.opened: list[UploadFile] = []
        self.refused: tuple[str, str] | None = None

    def open(self, file: UploadFile) -> UploadFile:
        """Close ``file`` with the others after the event."""
        self.opened.append(file)
        return file

    async def aclose(self) -> None:
        for file in self.opened:
            await file.close()
        self.opened.clear()


@dataclass(frozen=True)
class _Limits:
    """Guard settings with an upload event's own limit and deadline."""

    trusted_origins: frozenset[str]
    max_body_size: int
    slow_bodies: SlowBodies


class _Stop(Exception):
    """Ends the parse of a body that went over its limit or whose client left."""


class UploadSettings(GuardSettings, Protocol):
    @property
    def slow_uploads(self) -> SlowBodies: ...


async def guard_uploads(
    scope: Scope,
    receive: Receive,
    send: Send,
    settings: UploadSettings,
    policy: UploadPolicy,
    uploads: Uploads,
    headers: Mapping[str, str],
) -> Refusal | Receive:
    """``guard_asgi`` for an event with upload parameters: the same checks, with the
    event's limit (never below ``max_body_size``) and the ``slow_uploads`` deadline;
    a multipart body is streamed into ``uploads`` rather than buffered.
    ``headers``: the request's, as ``read_headers`` gives them."""
    content_type = media_type(headers.get("content-type"))
    limit = _limit(content_type, policy, settings)
    if limit is None:
        return await guard_asgi(scope, receive, send, settings, headers)
    cap = DISCARD_FACTOR * limit
    refusal = check_event_request(
        headers, headers.get("host"), settings.trusted_origins, cap, content_type
    )
    if refusal is not None:
        return refusal
    length = headers.get("content-length")
    if content_type in JSON_TYPES and (length is None or int(length) <= limit):
        limits = _Limits(settings.trusted_origins, limit, settings.slow_uploads)
        return await guard_asgi(scope, receive, send, limits, headers)
    slow_uploads = settings.slow_uploads
    watched = slow_uploads.watch(send)
    try:
        outcome = await _read_multipart(scope, receive, policy, uploads, length, limit)
    finally:
        answered = not slow_uploads.done(watched, send)
    if answered:
        await uploads.aclose()
        return Refusal(408, "request body too slow", answered=True)
    settled = await _settled(scope, outcome, policy, uploads)
    return settled if isinstance(settled, Refusal) else _replay_form(scope, receive, settled)


async def guard_upload_request(
    request: Request, settings: UploadSettings, policy: UploadPolicy
) -> EventValues | Refusal:
    """``guard_request`` for an event with upload parameters that the middleware
    could not see (its app is mounted below the middleware's): the same limits
    as ``guard_uploads``, the multipart body streamed into ``scope[UPLOADS_KEY]``
    under a timer of its own (a rare path: its cost does not matter)."""
    scope = request.scope
    guarded: EventValues | None = scope.get(VALUES_KEY)
    if guarded is not None:
        return guarded
    headers = request.headers
    content_type = media_type(headers.get("content-type"))
    limit = _limit(content_type, policy, settings)
    if limit is None:
        return await guard_request(request, settings)
    if content_type in JSON_TYPES:
        return await guard_request(
            request, _Limits(settings.trusted_origins, limit, settings.slow_uploads)
        )
    cap = DISCARD_FACTOR * limit
    refusal = check_event_request(headers, headers.get("host"), settings.trusted_origins, cap)
    if refusal is not None:
        return refusal
    uploads = scope.setdefault(UPLOADS_KEY, Uploads())
    within = settings.slow_uploads.within
    chunks = request.stream().__aiter__()
    try:
        async with asyncio.timeout(within):
            try:
                first = await anext(chunks, b"")
            except RuntimeError:  # FastHTML parsed the form before the handler ran
                return await _settled(
                    scope, await _collect(await request.form(), policy, uploads), policy, uploads
                )
            except ClientDisconnect:
                return Refusal(400, "client disconnected")
            outcome = await _read_multipart(
                scope,
                _receiving(first, chunks),
                policy,
                uploads,
                headers.get("content-length"),
                limit,
            )
    except TimeoutError:
        await uploads.aclose()
        return Refusal(408, f"request body not received within {within:g} s")
    return await _settled(scope, outcome, policy, uploads)


def _receiving(first: bytes, chunks: AsyncIterator[bytes]) -> Receive:
    """The ASGI messages of a request body read through ``Request.stream()``."""
    pending: bytes | None = first

    async def receive() -> Message:
        nonlocal pending
        chunk, pending = pending, None
        if chunk is None:
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                return {"type": "http.request", "body": b"", "more_body": False}
            except ClientDisconnect:
                return {"type": "http.disconnect"}
        return {"type": "http.request", "body": chunk, "more_body": True}

    return receive


def _limit(content_type: str, policy: UploadPolicy, settings: GuardSettings) -> int | None:
    """The body limit of a request to an upload event: the event's own, never below
    ``max_body_size``; None for a body that carries no files (url-encoded, text)."""
    if content_type == "multipart/form-data":
        return max(policy.max_body, settings.max_body_size)
    if content_type in JSON_TYPES:
        return max(policy.max_json, settings.max_body_size)
    return None


async def _read_multipart(
    scope: Scope,
    receive: Receive,
    policy: UploadPolicy,
    uploads: Uploads,
    length: str | None,
    limit: int,
) -> Refusal | FormFields | None:
    cap = DISCARD_FACTOR * limit
    if length is not None and int(length) > limit:
        return await _discard(receive, 0, cap, True)
    return await _parse(scope, receive, policy, uploads, limit, cap)


async def _settled(
    scope: Scope, outcome: Refusal | FormFields | None, policy: UploadPolicy, uploads: Uploads
) -> Refusal | FormFields:
    """The values of a multipart body read (``scope[VALUES_KEY]``), or its refusal."""
    if isinstance(outcome, Refusal):
        await uploads.aclose()
        return outcome
    if outcome is None:  # over the limit, read to its end: the page is told
        await uploads.aclose()
        uploads.files.clear()
        uploads.refused = policy.too_large()
        outcome = FormFields()
    scope[VALUES_KEY] = outcome
    return outcome


async def _parse(
    scope: Scope, receive: Receive, policy: UploadPolicy, uploads: Uploads, limit: int, cap: int
) -> Refusal | FormFields | None:
    """The text fields of a multipart body, its files put in ``uploads``; None when
    the body went over ``limit`` (and was read on to its end, within ``cap``)."""
    size = 0
    stopped: str | None = None
    ended = False

    async def body() -> AsyncGenerator[bytes, None]:
        nonlocal size, stopped, ended
        while not ended:
            message = await receive()
            if message["type"] == "http.disconnect":
                stopped = "disconnect"
                raise _Stop
            chunk = message.get("body", b"")
            size += len(chunk)
            ended = not message.get("more_body", False)
            if size > limit:
                stopped = "over"
                raise _Stop
            yield chunk

    parser = MultiPartParser(
        Headers(raw=scope["headers"]),
        body(),
        max_files=FILES_FACTOR * policy.max_files,
        max_fields=MAX_FIELDS,
        max_part_size=FIELDS_ALLOWANCE,
    )
    parser.spool_max_size = SPOOL_SIZE
    try:
        form = await parser.parse()  # closes its files when it fails
    except MultiPartException as exc:
        return Refusal(400, f"invalid form body: {exc.message}")
    except _Stop:
        if stopped == "disconnect":
            return Refusal(400, "client disconnected")
        return await _discard(receive, size, cap, ended)
    return await _collect(form, policy, uploads)


async def _collect(form: FormData, policy: UploadPolicy, uploads: Uploads) -> FormFields:
    """The text fields of a parsed multipart form, its files put in ``uploads``."""
    fields = FormFields()
    names = policy.names
    for name, value in form.multi_items():
        if isinstance(value, str):
            fields.setdefault(name, []).append(value)
        elif name in names:
            uploads.files.setdefault(name, []).append(uploads.open(value))
        else:  # a file no parameter takes
            await value.close()
    return fields


async def _discard(receive: Receive, size: int, cap: int, ended: bool) -> Refusal | None:
    """Read a body over its limit to its end, keeping nothing; a refusal when it
    goes over ``cap`` too, or its client leaves."""
    while not ended:
        message = await receive()
        if message["type"] == "http.disconnect":
            return Refusal(400, "client disconnected")
        size += len(message.get("body", b""))
        if size > cap:
            return Refusal(413, f"request body over {cap} bytes")
        ended = not message.get("more_body", False)
    return None


def _replay_form(scope: Scope, receive: Receive, fields: FormFields) -> Receive:
    """The app's view of the request: its text fields as a small url-encoded form."""
    body = urlencode(
        [(name, value) for name, values in fields.items() for value in values]
    ).encode()
    scope["headers"] = [
        *(
            (key, value)
            for key, value in scope["headers"]
            if key not in (b"content-type", b"content-length")
        ),
        (b"content-type", b"application/x-www-form-urlencoded"),
        (b"content-length", str(len(body)).encode()),
    ]
    return replaying(body, receive)


def bind_uploads(
    params: Sequence[UploadParam], scope: Scope, body: Mapping[str, Any]
) -> tuple[dict[str, Any], list[BindError]]:
    """The files for ``params`` (from a multipart body, or base64 signals), checked
    against their limits."""
    uploads: Uploads | None = scope.get(UPLOADS_KEY)
    if uploads is None:  # an event the middleware did not guard: files go with the scope
        uploads = scope[UPLOADS_KEY] = Uploads()
    if uploads.refused is not None:
        where, message = uploads.refused
        return {}, [BindError(where, message, "upload_too_large")]
    kwargs: dict[str, Any] = {}
    errors: list[BindError] = []
    for param in params:
        if isinstance(body, FormFields):
            files: list[UploadFile] | BindError = uploads.files.get(param.name, [])
        else:
            files = _decoded(param, body, uploads)
        if isinstance(files, BindError):
            errors.append(files)
            continue
        # A form's empty file input still sends a part: no name, no bytes.
        chosen = [file for file in files if file.filename or file.size]
        if not chosen:
            if param.default is not inspect.Parameter.empty:
                kwargs[param.name] = param.default
            else:
                errors.append(BindError(param.name, "Field required", "missing"))
            continue
        error = _check(param, chosen)
        if error is not None:
            errors.append(BindError(param.name, error, "upload_refused"))
            continue
        kwargs[param.name] = chosen if param.many else chosen[0]
    return kwargs, errors


def _check(param: UploadParam, files: list[UploadFile]) -> str | None:
    """Why ``files`` may not reach ``param``, or None."""
    upload = param.upload
    if len(files) > param.most_files:
        return f"Choose at most {param.most_files} files." if param.many else "Choose one file."
    which = "A file" if param.many else "The file"
    for file in files:
        if (file.size or 0) > upload.max_size:
            return f"{which} is larger than {_size(upload.max_size)}."
        if not upload.accepts(file.content_type):
            return f"Only {', '.join(upload.accept)} files are accepted."
    return None


def _decoded(
    param: UploadParam, body: Mapping[str, Any], uploads: Uploads
) -> list[UploadFile] | BindError:
    """The files Datastar's file binding put in the signals, decoded into spooled
    files: v1 sends ``[{name, contents, mime}]``, beta the contents alone with
    ``<name>Mimes`` and ``<name>Names`` beside them."""
    sent = body.get(param.name)
    if sent is None or sent == "":
        return []
    invalid = BindError(param.name, "Not a file", "upload_invalid")
    if not isinstance(sent, list) or len(sent) > param.most_files:
        return (
            invalid
            if not isinstance(sent, list)
            else BindError(
                param.name,
                f"Choose at most {param.most_files} files." if param.many else "Choose one file.",
                "upload_refused",
            )
        )
    mimes = body.get(f"{param.name}Mimes")
    names = body.get(f"{param.name}Names")
    files = []
    for position, item in enumerate(sent):
        if isinstance(item, dict):
            contents, mime, name = item.get("contents"), item.get("mime"), item.get("name")
        else:
            contents = item
            mime = mimes[position] if isinstance(mimes, list) and position < len(mimes) else None
            name = names[position] if isinstance(names, list) and position < len(names) else None
        if (
            not isinstance(contents, str)
            or not isinstance(mime, str | None)
            or not isinstance(name, str | None)
        ):
            return invalid
        if len(contents) // 4 * 3 - 2 > param.upload.max_size:  # refused before decoding
            which = "A file" if param.many else "The file"
            return BindError(
                param.name,
                f"{which} is larger than {_size(param.upload.max_size)}.",
                "upload_refused",
            )
        file = _spooled(contents, mime, name, uploads)
        if file is None:
            return invalid
        files.append(file)
    return files


def _spooled(
    contents: str, mime: str | None, name: str | None, uploads: Uploads
) -> UploadFile | None:
    """A base64 file as an UploadFile, decoded a slice at a time; None if not base64."""
    # Closed with the request's other files, after the event.
    spool: SpooledTemporaryFile[bytes] = SpooledTemporaryFile(max_size=SPOOL_SIZE)  # noqa: SIM115
    headers = Headers({"content-type": mime} if mime else {})
    # Typeshed's SpooledTemporaryFile is no BinaryIO; Starlette's parser passes one too.
    upload = UploadFile(spool, size=0, filename=name or "", headers=headers)  # type: ignore[arg-type]
    file = uploads.open(upload)
    size = 0
    try:
        for start in range(0, len(contents), _DECODE_CHUNK):
            data = base64.b64decode(contents[start : start + _DECODE_CHUNK], validate=True)
            spool.write(data)
            size += len(data)
    except ValueError:
        return None
    spool.seek(0)
    file.size = size
    return file


def _size(count: int) -> str:
    """``5 MiB``, ``512 KiB``, ``100 bytes``."""
    for unit, scale in (("MiB", MiB), ("KiB", 1024)):
        if count >= scale:
            value = count / scale
            return f"{value:g} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{count} bytes"
