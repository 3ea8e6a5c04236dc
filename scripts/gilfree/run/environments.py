"""What the environments under test are made of, for the noxfile: every study's sessions with the interpreter
each variant asks for and the lock each app is installed from (`python -m gilfree.environments`), that
interpreter, found or installed (`... interpreter REQUEST VARIABLE`), and the locks themselves (`gilfree lock
STUDY`). The noxfile builds the environments from these and decides nothing of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from gilfree import PROJECT_ROOT
from gilfree.study.schema import StudyError, free_threaded, override_variable, reserved_sessions
from gilfree.study.studies import Session, Study, article, discover, load


def _shown(path: Path) -> str:
    """A path as a command line shows it: relative to the checkout where it is inside, else absolute."""
    return os.path.relpath(path, PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else str(path)


def _session(session: Session) -> dict:
    return _environments(session.study, session.name, session.description, session.apps, session.variants)


def audit_plan(study_path: str | None) -> dict:
    """The environments `nox -s gil-audit` builds: every app of the study on each of its free-threaded variants."""
    try:
        study = load(Path(study_path)) if study_path else article()
    except StudyError as error:
        return {"error": str(error)}
    variants = [variant for variant in study.variants if free_threaded(variant)]
    if not variants:
        return {"error": f"{study.path}: variants: the study has no free-threaded variant to audit"}
    return _environments(study, "gil-audit", "", tuple(study.apps), tuple(variants))


def _environments(study: Study, name: str, description: str, apps: tuple[str, ...], variants: tuple[str, ...]) -> dict:
    entry = {
        "name": name,
        "description": description,
        "study": str(study.path),
        "apps": list(apps),
        "variants": list(variants),
        "error": None,
    }
    try:
        profile = study.profile()
    except StudyError as error:
        return entry | {"error": str(error)}
    return entry | {
        "profile": profile.name,
        "pythons": {
            variant: {"request": profile.python[variant], "variable": override_variable(variant)}
            for variant in variants
        },
        "locks": {app: _shown(study.lock_path(profile.name, app)) for app in apps},
    }


def sessions_for_nox() -> dict:
    """Every readable study's sessions; each refused study file with its one-line reason, and the sessions it
    would have had (named after the file), so that `nox -s NAME` can say why it does not run."""
    studies, refused = discover()
    default = list(article().default_sessions)
    every = [session for study in studies.values() for session in study.sessions.values()]
    # nox runs the sessions it is asked for in the order they were registered: the default ones first, in order.
    every.sort(key=lambda session: default.index(session.name) if session.name in default else len(default))
    taken = {session.name for session in every} | reserved_sessions()
    return {
        "default": default,
        "sessions": [_session(session) for session in every],
        "refused": [
            {
                "study": str(path),
                "error": str(error),
                "sessions": [] if path.stem in taken else [path.stem],
            }  # never over a session that runs
            for path, error in refused.items()
        ],
    }


def lock_command(study: Study, profile: str, app: str) -> list[str]:
    """uv's command for one app's lock: universal (one lock installs on every variant, GIL or free-threaded,
    with a hash for every wheel), as PyPI stood at the profile's cut-off where it has one."""
    exclude_newer = study.profiles[profile].exclude_newer
    return [
        "uv",
        "pip",
        "compile",
        _shown(study.apps[app].requirements),
        "--universal",
        "--generate-hashes",
        *(["--exclude-newer", exclude_newer] if exclude_newer else []),
        "--python-version",
        study.lock_python,
        "--upgrade",
        "-o",
        _shown(study.lock_path(profile, app)),
    ]


def lock(study: Study, profile_name: str | None) -> int:
    """Lock every app of the study under the profile; uv's own exit status."""
    profile = study.profile(profile_name).name
    for app in study.apps.values():
        if not app.requirements.is_file():
            raise StudyError(f"{study.path}: apps.{app.name}.requirements: {app.requirements} does not exist")
        command = lock_command(study, profile, app.name)
        study.lock_path(profile, app.name).parent.mkdir(parents=True, exist_ok=True)
        print("gilfree: " + " ".join(command), file=sys.stderr, flush=True)
        completed = subprocess.run(command, cwd=PROJECT_ROOT)
        if completed.returncode:
            return completed.returncode
    return 0


def interpreter(request: str, variable: str) -> str:
    """The interpreter a variant asks for, checked to be of the right build (GIL or free-threaded): $<variable>
    if set; else uv's find of the exact request, installed with `uv python install` where it is missing.
    StudyError (one line, what to do) where there is none of that build. Asked before anything slow is built."""
    path = os.environ.get(variable) or _found_or_installed(request, variable)
    ask = "import sys, sysconfig; print(sysconfig.get_config_var('Py_GIL_DISABLED') or 0, sys.version.split()[0])"
    try:
        build = subprocess.run([path, "-c", ask], capture_output=True, text=True, timeout=60)
    except OSError as error:
        raise StudyError(
            f"{variable}={path} cannot be run ({error.strerror}); point it at a CPython {request}"
        ) from None
    if build.returncode != 0:
        raise StudyError(f"{variable}={path} is not a working Python; point it at a CPython {request}")
    disabled, version = build.stdout.split()
    if bool(int(disabled)) != free_threaded(request):
        wanted, found = ("free-threaded", "with the GIL") if free_threaded(request) else ("GIL", "free-threaded")
        raise StudyError(
            f"{request} needs a {wanted} build, but {path} is CPython {version} {found}; point "
            f"{variable} at a {wanted} build"
        )
    return path


def _found_or_installed(request: str, variable: str) -> str:
    find = ["uv", "python", "find", "--no-project", request]
    found = subprocess.run(find, capture_output=True, text=True)
    if found.returncode == 0:
        return found.stdout.strip()
    installed = subprocess.run(["uv", "python", "install", request], capture_output=True, text=True)
    if installed.returncode != 0:
        why = (installed.stderr.strip().splitlines() or ["no reason given"])[-1].strip()
        raise StudyError(
            f"CPython {request} is not installed here, and `uv python install {request}` failed "
            f"({why}); run that where uv can download, or point {variable} at a CPython {request}"
        )
    return subprocess.run(find, capture_output=True, text=True, check=True).stdout.strip()


if __name__ == "__main__":  # the noxfile's questions, without the harness's heavier imports
    import json

    if sys.argv[1:2] == ["interpreter"]:  # interpreter REQUEST VARIABLE
        try:
            print(interpreter(*sys.argv[2:4]))
        except StudyError as error:
            sys.exit(str(error))
    elif sys.argv[1:2] == ["audit"]:  # audit [the gil-audit session's options, --study FILE among them]
        import argparse

        options = argparse.ArgumentParser(add_help=False)
        options.add_argument("--study")  # --study FILE or --study=FILE; the audit itself checks the rest
        print(json.dumps(audit_plan(options.parse_known_args(sys.argv[2:])[0].study)))
    else:
        print(json.dumps(sessions_for_nox(), indent=1))
