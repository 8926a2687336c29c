"""py_library / py_binary / py_test for this workspace: Bazel's native rules, plus a deps check.

BUILD loads these under the native names, so a target reads exactly like a native one:

  py_library(name = "sweep", srcs = ["haviv_tf/study/sweep.py"], deps = [":artifacts", ":config"])

Convention: one py_library per module of haviv_tf, named after the module; one py_test per
test file, named after the file; pip packages as `@pypi//:<pkg>` (bazel/pip_packages.bzl; the
older alias `:expect_<pkg>_installed` means the same). Besides the native target:

- py_library / py_binary `X` get a test `X_deps` (tag "deps", about a second): every haviv_tf
  module and pip package X's sources import, at any depth, must be in X's own deps
  (bazel/check_deps.py).
- py_test runs its file with pytest after the same check of the file's imports
  (bazel/pytest_main.py), so a test target that imports a module it does not list fails.
  At run time its runfiles hold only the modules its deps declare (bazel/sitecustomize.py
  hides an editable install), so a module missing from the transitive deps fails to import.
"""

load("//bazel:pip_packages.bzl", "PIP_PACKAGES")

_PIP_ARG = "--pip=" + ",".join([
    "%s:%s" % (t, "|".join(imps))
    for t, (_, imps) in sorted(PIP_PACKAGES.items())
])

def _check_args(name, srcs, deps):
    target = "--target=//%s:%s" % (native.package_name(), name)
    return [target, "--deps=" + ",".join(deps), _PIP_ARG] + srcs

def _deps_test(name, srcs, deps):
    native.py_test(
        name = name + "_deps",
        srcs = ["//bazel:check_deps.py"],
        main = "//bazel:check_deps.py",
        args = _check_args(name, srcs, deps),
        data = srcs,
        size = "small",
        tags = ["deps"],
    )

def py_library(name, srcs = [], deps = [], **kwargs):
    native.py_library(name = name, srcs = srcs, deps = deps, **kwargs)
    if srcs:
        _deps_test(name, srcs, deps)

def py_binary(name, srcs = [], deps = [], **kwargs):
    native.py_binary(name = name, srcs = srcs, deps = deps, **kwargs)
    _deps_test(name, srcs, deps)

def py_test(name, srcs, deps = [], args = [], **kwargs):
    native.py_test(
        name = name,
        srcs = srcs + ["//bazel:pytest_main.py"],
        main = "//bazel:pytest_main.py",
        args = _check_args(name, srcs, deps + ["@pypi//:pytest"]) + (["--"] + args if args else []),
        deps = deps + ["//bazel:check_deps", "//bazel:hermetic", "@pypi//:pytest"],
        **kwargs
    )
