"""The apps as uvicorn targets of the HTTP benchmarks (``uvicorn serve:faststate``)."""

from apps import faststate_app, handwritten_app, upload_app
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

faststate = faststate_app()
handwritten = handwritten_app()
handwritten_reading = handwritten_app(reading=True)
uploads = upload_app()


async def _ready(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


for hand_written in (handwritten, handwritten_reading):
    hand_written.router.routes.append(Route("/", _ready))
