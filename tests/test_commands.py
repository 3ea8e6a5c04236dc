"""The server and load commands are the post's, with only Granian's default host and port made explicit."""

from gilfree.loadgen import LOADGENS
from gilfree.matrix import TABLES_BY_ID
from gilfree.server import granian_command


def test_asgi_command_is_the_posts():
    cell = TABLES_BY_ID["asgi-io"].cells[2]
    assert granian_command("granian", cell, 8000) == [
        "granian", "--interface", "asgi", "--loop", "asyncio", "--workers", "2",
        "--host", "127.0.0.1", "--port", "8000", "impl_fastapi:app"]


def test_wsgi_command_is_the_posts():
    cell = TABLES_BY_ID["wsgi-json"].cells[1]
    assert granian_command("granian", cell, 8123) == [
        "granian", "--interface", "wsgi", "--workers", "1", "--blocking-threads", "64",
        "--host", "127.0.0.1", "--port", "8123", "impl_flask:app"]


def test_rewrk_command_is_the_posts():
    assert LOADGENS["rewrk"].command("http://127.0.0.1:8000/json", 30, 128) == [
        "rewrk", "-d", "30s", "-c", "128", "--host", "http://127.0.0.1:8000/json"]


def test_wrk_uses_one_thread_like_rewrk_and_a_long_timeout():
    command = LOADGENS["wrk"].command("http://127.0.0.1:8000/io", 3, 256)
    assert command[:7] == ["wrk", "-t", "1", "-c", "256", "-d", "3s"]
    assert command[command.index("--timeout") + 1] == "60s"
    assert command[-1] == "http://127.0.0.1:8000/io"


def test_oha_runs_for_a_duration_without_its_tui():
    assert LOADGENS["oha"].command("http://127.0.0.1:8000/io", 5, 64) == [
        "oha", "-z", "5s", "-c", "64", "--no-tui", "--output-format", "json", "http://127.0.0.1:8000/io"]
