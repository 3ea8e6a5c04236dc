"""Run by the interpreter under test (stdlib only): what build it is (free-threaded or not, and its configure
flags), and whether the GIL is still off after Granian and the app are imported, since an extension module can
re-enable it; if it is not, which module did it, its distribution, and the chain of imports to it.

Usage: python probe.py APPS_DIR MODULE
"""

import importlib.metadata
import json
import os
import platform
import sys
import sysconfig
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the harness's name for it; run as a script, this folder is on sys.path
    from gilfree.run import gilcheck
else:
    import gilcheck

gilcheck.leave_harness_path()
report = gilcheck.report_only_json()  # an app that prints at import does not spoil the report
apps_dir, module = sys.argv[1], sys.argv[2]
sys.path.insert(0, apps_dir)
imports = [gilcheck.traced_import(name) for name in ("granian", "granian._granian", module)]


def auto_loop() -> str | None:
    """The loop Granian's `--loop auto` picks here, by Granian's own loop registry (whichever imports)."""
    try:
        from granian._loops import loops  # type: ignore[import-not-found]  # in the environment under test only

        loop = loops.get("auto")
    except Exception:  # a Granian without that registry: unknown, not guessed
        return None
    loop.close()
    return type(loop).__module__.split(".")[0]


failed = next((found for found in imports if found["error"]), None)
if failed:
    sys.exit(f"importing {failed['module']} failed: {failed['error']}")
report.write(
    json.dumps(
        {
            "executable": sys.executable,
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "free_threaded_build": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
            "gil_enabled": gilcheck.gil_enabled(),
            "gil_forced_off": os.environ.get("PYTHON_GIL") == "0",
            "gil_culprit": next(
                ({key: found[key] for key in ("culprit", "chain", "owner")} for found in imports if found["culprit"]),
                None,
            ),
            "config_args": sysconfig.get_config_var("CONFIG_ARGS"),  # how it was built: PGO, LTO, JIT
            "granian_auto_loop": auto_loop(),
            "packages": {dist.metadata["Name"].lower(): dist.version for dist in importlib.metadata.distributions()},
        }
    )
)
report.flush()
