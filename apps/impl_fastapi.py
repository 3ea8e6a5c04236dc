"""The post's ASGI app (its code block was lost; reconstructed as the project's issue #2 describes)."""

import asyncio

from fastapi import FastAPI

app = FastAPI()


@app.get("/json")
async def json_endpoint():
    return {"message": "Hello, World!"}


@app.get("/io")
async def io_endpoint():
    await asyncio.sleep(0.01)
    return {"message": "Hello, World!"}
