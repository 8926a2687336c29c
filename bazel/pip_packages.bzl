"""The pip packages the BUILD targets may depend on: target name -> (distribution, import names).

`@pypi//:<target>` (and its alias `//:expect_<target>_installed`) exists only if the
distribution is installed for the `python3` on PATH: the `pypi` repository rule
(repositories.bzl) checks each one when Bazel first needs it. A target whose code imports one
of the import names must list the package in its deps (bazel/check_deps.py enforces it).
"""

PIP_PACKAGES = {
    "absl_py": ("absl-py", ["absl"]),
    "keras": ("keras", ["keras"]),
    "matplotlib": ("matplotlib", ["matplotlib"]),
    "numpy": ("numpy", ["numpy"]),
    "pytest": ("pytest", ["pytest"]),
    "scipy": ("scipy", ["scipy"]),
    "tensorboard": ("tensorboard", ["tensorboard"]),
    "tensorflow": ("tensorflow", ["tensorflow"]),
    "tensorflow_datasets": ("tensorflow-datasets", ["tensorflow_datasets"]),
}
