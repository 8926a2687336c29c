"""Under Bazel only: haviv_tf comes from the runfiles, never from an editable install.

`pip install -e .` adds a finder (sys.meta_path) that serves haviv_tf's modules from the source
checkout. A module missing from a target's runfiles would then still import, and Bazel could
not check the dependency graph. This file is on the path of Bazel's Python targets only
(//bazel:hermetic), and Python imports it at start-up, in the subprocesses of tests too.
"""

import sys

sys.meta_path[:] = [f for f in sys.meta_path
                    if not getattr(f, "__module__", "").startswith("__editable__")
                    and not type(f).__module__.startswith("__editable__")]
