"""Errors of the HTTP API: every failure is a JSON ``{"error": message}`` with a 4xx status, never a traceback.

A :class:`~nextvox.errors.NextvoxError` is the user's mistake or the data's (400 unless it
says otherwise through ``status_code``); request validation failures are 422; unknown routes
404. Anything else escaping a handler is a bug: it is answered 500 with one line and no
traceback, and logged.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from nextvox.errors import NextvoxError

__all__ = ["ApiError", "NotFound", "Forbidden", "PayloadTooLarge", "UnsupportedMediaType", "install_error_handlers"]

log = logging.getLogger("nextvox.api")


class ApiError(NextvoxError):
    """A NextvoxError with the HTTP status it deserves."""

    status_code = 400


class NotFound(ApiError):
    status_code = 404


class Forbidden(ApiError):
    status_code = 403


class PayloadTooLarge(ApiError):
    status_code = 413


class UnsupportedMediaType(ApiError):
    status_code = 415


def _answer(status: int, message: str, **extra: object) -> JSONResponse:
    return JSONResponse({"error": " ".join(message.split()), "status": status, **extra}, status_code=status)


async def _nextvox_error(request: Request, error: Exception) -> JSONResponse:
    return _answer(getattr(error, "status_code", 400), str(error))


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = [
        {"where": ".".join(str(part) for part in problem.get("loc", ())), "problem": problem.get("msg", "")}
        for problem in error.errors()
    ]
    summary = "; ".join(f"{p['where']}: {p['problem']}" for p in problems) or "invalid request"
    return _answer(422, f"invalid request: {summary}", detail=problems)


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    return _answer(error.status_code, str(error.detail))


async def _client_gone(request: Request, error: Exception) -> JSONResponse:
    # The client hung up mid-request (a cancelled upload): nobody reads the answer, and it is no bug.
    log.info("client went away during %s %s", request.method, request.url.path)
    return _answer(400, "the client closed the connection before the request was complete")


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    log.error("internal error on %s %s: %s: %s", request.method, request.url.path, type(error).__name__, error)
    return _answer(500, "internal error; please report it with the request you made")


def install_error_handlers(app: FastAPI) -> None:
    """Turn every failure into a JSON answer (see the module's docstring)."""
    app.add_exception_handler(NextvoxError, _nextvox_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(Exception, _unexpected)
