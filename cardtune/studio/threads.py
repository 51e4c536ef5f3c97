"""Route handlers run in a worker thread: the event loop never waits on a dry run, a preview or a parquet read.

``threaded(handler)`` turns ``handler(request, form) -> Response`` (plain, blocking code) into a Starlette endpoint:
the form (POST only) is read on the event loop, the handler runs in Starlette's thread pool, its exceptions reach
the app's exception handlers as usual.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

Form = Mapping[str, str]
Handler = Callable[[Request, Form], Response]


def threaded(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """An async endpoint that reads the form, then runs ``handler`` in a thread."""

    async def endpoint(request: Request) -> Response:
        form: dict[str, str] = {}
        if request.method == "POST":
            data = await request.form()
            form = {k: v for k, v in data.items() if isinstance(v, str)}  # no file uploads anywhere
        return await run_in_threadpool(handler, request, form)

    endpoint.__name__ = handler.__name__
    return endpoint
