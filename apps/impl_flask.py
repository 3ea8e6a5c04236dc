"""The post's WSGI app (its code block was lost; reconstructed as the project's issue #2 describes)."""

import time

from flask import Flask

app = Flask(__name__)


@app.get("/json")
def json_endpoint():
    return {"message": "Hello, World!"}


@app.get("/io")
def io_endpoint():
    time.sleep(0.01)
    return {"message": "Hello, World!"}
