"""The GPU image, imitated for `gpu_check.sh --dry`: the packages it lacks cannot be imported.

On PYTHONPATH, Python runs this at start-up (and in every subprocess that inherits the path). Each
top-level name in BERTCLF_IMAGE_LACKS is set to None in sys.modules, so `import dvc` raises
ModuleNotFoundError and `importlib.util.find_spec("dvc")` answers None, as on the image.
"""

import os
import sys

for _name in os.environ.get("BERTCLF_IMAGE_LACKS", "").split():
    sys.modules.setdefault(_name, None)  # type: ignore[assignment]
