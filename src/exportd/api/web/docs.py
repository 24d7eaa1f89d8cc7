"""`/docs` (Swagger UI) and `/redoc`, from files vendored in `static/vendor/` (see the
README there), so they work without internet. No inline script: each page starts its
viewer from a file, with its settings in `data-` attributes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from exportd.api.web.templating import render

router = APIRouter(include_in_schema=False)

SWAGGER_SETTINGS = {
    "dom_id": "#swagger-ui",
    "layout": "BaseLayout",
    "deepLinking": True,
    "showExtensions": True,
    "showCommonExtensions": True,
}


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    return render(
        request,
        "docs_swagger.html",
        openapi_url=request.app.openapi_url,
        settings=SWAGGER_SETTINGS,
    )


@router.get("/docs/oauth2-redirect")
async def swagger_ui_redirect(request: Request) -> HTMLResponse:
    return render(request, "docs_oauth2_redirect.html")


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    return render(request, "docs_redoc.html", openapi_url=request.app.openapi_url)
