"""The apps as uvicorn targets of the HTTP benchmarks (``uvicorn serve:faststate``)."""

from apps import faststate_app, handwritten_app, handwritten_reading_app, upload_app
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

faststate = faststate_app()
handwritten = handwritten_app()
handwritten_reading = handwritten_reading_app()
uploads = upload_app()


async def _ready(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


handwritten.router.routes.append(Route("/", _ready))
