# The whole study (the `article` profile) in one image: rewrk 0.3.2 and oha 1.16.0, CPython 3.14.0 and 3.14.0t,
# nox, and the locked environments under test, all built here, so that running installs nothing.
#
#   docker build -t gilfree .
#   docker run --rm -v "$PWD/results:/gilfree/results" gilfree                      # all six tables
#   docker run --rm -v "$PWD/results:/gilfree/results" gilfree -s asgi-3.14t -- --duration 10s
#
# Arguments after the image name go to `nox -R` (reuse the environments built here, install nothing).

# rewrk and oha, with --locked: the lock file published in each crate, at the versions `nox -s tools` pins.
# rewrk's OpenSSL is vendored (built from source, linked statically), which is why this stage uses the full
# image, with a C compiler, make and perl.
FROM rust:1.94.0-bookworm@sha256:365468470075493dc4583f47387001854321c5a8583ea9604b297e67f01c5a4f AS cargo-tools
RUN cargo install rewrk --version 0.3.2 --locked --root /opt/cargo-tools \
 && cargo install oha --version 1.16.0 --locked --root /opt/cargo-tools

FROM debian:12.12-slim@sha256:d5d3f9c23164ea16f31852f95bd5959aad1c5e854332fe00f7b3a20fcc9f635c

COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /uvx /bin/
COPY --from=cargo-tools /opt/cargo-tools/bin/rewrk /opt/cargo-tools/bin/oha /usr/local/bin/

# uv puts its interpreters under /opt/uv and links python3.14, python3.14t and nox into /usr/local/bin.
ENV UV_PYTHON_INSTALL_DIR=/opt/uv/python \
    UV_PYTHON_BIN_DIR=/usr/local/bin \
    UV_TOOL_DIR=/opt/uv/tools \
    UV_TOOL_BIN_DIR=/usr/local/bin \
    UV_LINK_MODE=copy

# The interpreters of the post's date, checked: one GIL build, one free-threaded build, both 3.14.0.
RUN uv python install 3.14.0 3.14.0t \
 && python3.14 -c 'import sys, sysconfig; assert sys.version_info[:3] == (3, 14, 0) and not sysconfig.get_config_var("Py_GIL_DISABLED")' \
 && python3.14t -c 'import sys, sysconfig; assert sys.version_info[:3] == (3, 14, 0) and sysconfig.get_config_var("Py_GIL_DISABLED")' \
 && rewrk --help > /dev/null && oha --version > /dev/null

# From here on uv uses those two and never fetches another; the sessions are pointed at them by path.
ENV UV_PYTHON_DOWNLOADS=never \
    GILFREE_PYTHON_3_14=/usr/local/bin/python3.14 \
    GILFREE_PYTHON_3_14T=/usr/local/bin/python3.14t

RUN uv tool install --python 3.14.0 nox==2026.10.20

WORKDIR /gilfree

# The harness's own environment (.venv, from uv.lock), then the project, then the environments under test
# (.nox, from locks/article/) without running anything.
COPY pyproject.toml uv.lock ./
RUN uv sync --locked --no-install-project --python 3.14.0
COPY . .
RUN uv sync --locked --python 3.14.0 \
 && nox --install-only

ENTRYPOINT ["nox", "-R"]
