"""The baseline for bench/submit_vs_bare.py: FastAPI with the submit route's shape and nothing behind it.

uvicorn --app-dir bench bare_app:app --loop uvloop --http httptools --no-access-log --workers 1
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

app = FastAPI(title="bare submit baseline")


class MessageSubmit(BaseModel):
    """The same body model as AirDisplay's submit route."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=1000)


@app.post("/api/v1/banners/{banner_id}/message", status_code=201)
async def submit_message(banner_id: str, body: MessageSubmit) -> JSONResponse:
    """Accept a message and answer 201 with a small JSON body."""
    return JSONResponse({"id": banner_id, "text": body.text, "version": 2}, status_code=201)


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ready"}
