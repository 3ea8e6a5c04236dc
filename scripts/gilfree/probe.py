"""Run by the interpreter under test (stdlib only): what build it is (free-threaded or not, and its configure
flags), and whether the GIL is still off after Granian and the app are imported, since an extension module can
re-enable it.

Usage: python probe.py APPS_DIR MODULE
"""

import importlib
import importlib.metadata
import json
import platform
import sys
import sysconfig

apps_dir, module = sys.argv[1], sys.argv[2]
sys.path.insert(0, apps_dir)
importlib.import_module("granian")
importlib.import_module("granian._granian")
importlib.import_module(module)
print(json.dumps({
    "executable": sys.executable,
    "version": platform.python_version(),
    "implementation": platform.python_implementation(),
    "free_threaded_build": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
    "gil_enabled": sys._is_gil_enabled() if hasattr(sys, "_is_gil_enabled") else True,
    "config_args": sysconfig.get_config_var("CONFIG_ARGS"),  # how it was built: PGO, LTO, JIT
    "packages": {dist.metadata["Name"].lower(): dist.version for dist in importlib.metadata.distributions()},
}))
