"""Runs one test file under Bazel: its deps check (check_deps.py), then pytest on it.

  pytest_main.py --target=NAME --deps=... --pip=... TEST_FILE [-- PYTEST_ARGS...]

Honours `bazel test --test_filter=EXPR` (pytest -k EXPR) and writes the JUnit XML Bazel asks
for. pytest's cache is off: the runfiles tree is not a place to write to.
"""

import os
import sys

import check_deps  # pylint: disable=import-error  (bazel/ is on the path: defs.bzl)
import pytest


def main(argv):
  extra = []
  if "--" in argv:
    argv, extra = argv[:argv.index("--")], argv[argv.index("--") + 1:]
  if check_deps.check(argv) != 0:
    return 1
  srcs = check_deps.parse(argv).srcs
  args = ["-q", "-p", "no:cacheprovider", *extra]
  if os.environ.get("TESTBRIDGE_TEST_ONLY"):
    args += ["-k", os.environ["TESTBRIDGE_TEST_ONLY"]]
  if os.environ.get("XML_OUTPUT_FILE"):
    args.append(f"--junitxml={os.environ['XML_OUTPUT_FILE']}")
  return pytest.main(args + srcs)


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
