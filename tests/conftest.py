"""Under `pytest -n N` (.ci/run: -n 2) the longest test files run first, one test at a time.

pytest-xdist's `load` scheduling hands out the tests in collection order, in chunks: a long test
collected last can leave one worker idle while the other finishes it. Here the files of
SLOW_FIRST (most time first, from the durations in benchmarks/RESULTS.md) move to the front,
each whole and in its own order (so a module fixture is built at most once per worker), and
unless --maxschedchunk is given each worker is sent one test at a time when it is free: the
long tests spread over the workers and the short ones fill the end. Sorting without the
one-at-a-time sending would do the opposite (the first chunk, all long tests, to one worker).
"""

SLOW_FIRST = ("slurm_test.py", "report_test.py", "main_test.py", "control_test.py",
              "distribute_test.py")


def pytest_configure(config):
  if getattr(config.option, "maxschedchunk", 0) is None:  # xdist installed, option not given
    config.option.maxschedchunk = 1


def pytest_collection_modifyitems(config, items):
  del config

  def rank(item):
    name = item.path.name
    return SLOW_FIRST.index(name) if name in SLOW_FIRST else len(SLOW_FIRST)

  items.sort(key=rank)  # stable: within a file, and for the other files, pytest's order
