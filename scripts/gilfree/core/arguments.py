"""The command lines' argument checks, one definition each for every command (argparse `type=` functions), and
the one duration rule that the command lines and the study files share."""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import re
import tempfile
from pathlib import Path

DURATION_FORMS = "a whole number of seconds or minutes of at least 1s, such as 30s or 2m"


class OneLineParser(argparse.ArgumentParser):
    """A parser whose refusal is one line, exit status 2."""

    def error(self, message: str):
        self.exit(2, f"gilfree: error: {message}\n")


def duration_seconds(text: str) -> int | None:
    """'30s', '2m' or '30' (seconds) to whole seconds; None for anything else, or for less than 1s."""
    match = re.fullmatch(r"(\d+)([sm]?)", text.strip())
    seconds = int(match[1]) * (60 if match[2] == "m" else 1) if match else 0
    return seconds or None


def duration(text: str) -> int:
    seconds = duration_seconds(text)
    if seconds is None:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: use {DURATION_FORMS}")
    return seconds


def count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: use a whole number of at least 1")
    return int(text)


def repeat(text: str) -> int | str:
    """--repeat: a number of rounds, or `auto` (rounds until the compared intervals are settled)."""
    if text == "auto":
        return text
    try:
        return count(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"invalid repeat {text!r}: use a whole number of at least 1, or auto"
        ) from None


def width(text: str) -> float:
    """--target-width: how wide an interval may be, as its high over its low less 1 (0.10, or 10%)."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        value = 0.0
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"invalid width {text!r}: use a positive share, such as 0.10 or 10%")
    return value


def seed(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"invalid seed {text!r}: use a whole number of at least 0")
    return int(text)


def rate(text: str) -> float:
    """Requests per second: a positive, finite number."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(
            f"invalid rate {text!r}: use a positive number of requests per second, such as 5000"
        )
    return value


def port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: use a number from 1 to 65535")
    return int(text)


def bind_address(text: str) -> str:
    """One IP address of this machine; never a wildcard, which would listen on every network."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid --bind {text!r}: give one IP address of this machine, such as 127.0.0.1 or 192.168.1.10"
        ) from None
    if address.is_unspecified:
        raise argparse.ArgumentTypeError(
            f"--bind {text} would listen on every network of this machine; give the "
            f"one address the load host reaches it at"
        )
    return str(address)


def interpreter_path(text: str) -> str:
    """An environment's interpreter, made absolute where it enters: Granian is started from the app's directory.
    Not resolved: a virtual environment's python is a link that must keep its own path."""
    return os.path.abspath(text)


def existing_file(text: str) -> Path:
    path = Path(text).resolve()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text!r} is not a file")
    return path


def writable_dir(text: str) -> Path:
    path = Path(text).resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError as error:
        raise argparse.ArgumentTypeError(
            f"results directory {text!r} cannot be written ({error.strerror}); choose another with --results-dir"
        ) from None
    return path
