"""The reference of case 7: the smallest FastAPI app that answers `GET /v1/exports/{id}`
with a JSON body of a given size held in memory (no auth, no store, no middleware),
served by uvicorn with the settings `exportd serve` uses.

`python -m bench.minimal_api PORT BODY_FILE`"""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Response


def app_for(body: bytes) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/exports/{job_id}")
    def get_export(job_id: str) -> Response:
        return Response(body, media_type="application/json")

    return app


if __name__ == "__main__":
    port, body_file = int(sys.argv[1]), Path(sys.argv[2])
    uvicorn.run(
        app_for(body_file.read_bytes()),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        log_config=None,
        access_log=False,
        proxy_headers=False,
    )
