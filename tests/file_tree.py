"""What a folder holds, to check that a command left it unchanged."""

import os


def tree(folder, ignore_names=(".lock",), ignore_top=()):
  """{path: (size, mtime_ns)} of every file and folder under `folder`, except files and folders
  named in `ignore_names` (e.g. a workdir's lock, where each process that takes it writes its
  PID) and the top-level entries in `ignore_top` with all they hold (e.g. a sweep's logs)."""
  out = {}
  for dirpath, dirnames, filenames in os.walk(folder):
    top = os.path.relpath(dirpath, folder) == "."
    dirnames[:] = [d for d in dirnames
                   if d not in ignore_names and not (top and d in ignore_top)]
    for name in dirnames + [f for f in filenames
                            if f not in ignore_names and not (top and f in ignore_top)]:
      st = os.stat(os.path.join(dirpath, name))
      out[os.path.join(dirpath, name)] = (st.st_size, st.st_mtime_ns)
  return out
