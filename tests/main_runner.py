"""`python3 -m haviv_tf.main ARGS` for the tests, without paying for TensorFlow's import each time.

A command-line test's run of haviv_tf.main is still a process of its own, started fresh for
each call: its flags, its TensorFlow runtime (threads, devices, XLA), its environment, working
directory, stdin, stdout, stderr, process id and exit status are its own (signal it, kill it),
and it ends as `python3 -m` ends (atexit handlers, the exit status of SystemExit, a traceback
and status 1 for an uncaught exception). What it does not pay for is importing TensorFlow,
Keras and haviv_tf (about 5 s of CPU per process on 2 cores): it is forked from a server
process that imported them and has run nothing else. The server is one per test process (`run`
and `start` start it on first use) and ends with it. Forking is safe there: the server runs no
TensorFlow op and no thread of its own, so no runtime threads or devices exist to be copied.

HAVIV_TF_TEST_FORK=0 runs every call as a real `python3 -m haviv_tf.main` subprocess instead
(the tests of the start-up itself — `--help`, the documented commands, a first full run — call
subprocess themselves).
"""

import atexit
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

_server = None
_codes = {}     # request id -> exit status, as the server reports them
_next_id = [0]
_pending = [b""]   # the server's output read but not yet taken in (a part of a line)


def _forking():
  return os.environ.get("HAVIV_TF_TEST_FORK", "1") != "0"


def run(args, timeout=600, env=None, cwd=None, input=None):  # pylint: disable=redefined-builtin
  """subprocess.run([python, -m, haviv_tf.main, *args], capture_output=True, text=True, ...)."""
  if not _forking():
    return subprocess.run(_argv(args), capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=cwd, input=input)
  with tempfile.TemporaryDirectory(prefix="main_runner_") as tmp:
    out, err = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
    proc = start(args, env=env, cwd=cwd, input=input, stdout=out, stderr=err)
    try:
      proc.wait(timeout)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait()
      raise
    with open(out, errors="replace") as o, open(err, errors="replace") as e:
      return subprocess.CompletedProcess(proc.args, proc.returncode, o.read(), e.read())


def start(args, env=None, cwd=None, input=None, stdout=os.devnull, stderr=None):  # pylint: disable=redefined-builtin
  """A started `python3 -m haviv_tf.main ARGS` (subprocess.Popen's pid, poll, wait, kill).

  stdout and stderr are file paths (appended to; stderr None: into stdout's file).
  """
  if not _forking():
    with open(stdout, "a") as out, open(stderr or os.devnull, "a") as err:
      proc = subprocess.Popen(_argv(args), env=env, cwd=cwd, stdout=out,
                              stderr=subprocess.STDOUT if stderr is None else err,
                              stdin=subprocess.PIPE if input else subprocess.DEVNULL, text=True)
    if input:
      proc.stdin.write(input)
      proc.stdin.close()
    return proc
  stdin = tempfile.NamedTemporaryFile("w", prefix="main_runner_stdin_", delete=False)
  with stdin:
    stdin.write(input or "")
  _next_id[0] += 1
  request = dict(id=_next_id[0], args=[str(a) for a in args],
                 env=dict(os.environ if env is None else env),
                 cwd=os.path.abspath(cwd or os.getcwd()), stdin=stdin.name, stdout=stdout,
                 stderr=stderr or stdout)
  server = _start_server()
  server.stdin.write((json.dumps(request) + "\n").encode())
  server.stdin.flush()
  return Process(request["id"], _argv(args), stdin.name)


class Process:
  """A forked run: what the tests use of subprocess.Popen."""

  def __init__(self, request_id, args, stdin_path):
    self.args, self._id, self._stdin = args, request_id, stdin_path
    self.returncode = None
    # The first request waits for the server's imports (about 10 s, more on a busy machine).
    self.pid = _until(lambda: _codes.pop(("pid", request_id), None), 600)
    if self.pid is None:
      raise RuntimeError("the main_runner server started no process within 600 s")

  def poll(self):
    while _read_report(0):   # what the server has reported so far
      pass
    return self._done()

  def wait(self, timeout=None):
    code = _until(self._done, timeout)
    if code is None:
      raise subprocess.TimeoutExpired(self.args, timeout)
    return code

  def kill(self):
    if self.returncode is None:
      os.kill(self.pid, signal.SIGKILL)

  def _done(self):
    if self.returncode is None and self._id in _codes:
      self.returncode = _codes.pop(self._id)
      os.unlink(self._stdin)
    return self.returncode


def _until(ready, timeout):
  """Reads the server's reports until ready() is not None (its value) or timeout s pass (None)."""
  deadline = None if timeout is None else time.monotonic() + timeout
  while (value := ready()) is None:
    left = None if deadline is None else deadline - time.monotonic()
    if left is not None and left <= 0:
      return None
    _read_report(left)
  return value


def _read_report(timeout):
  """Takes in one report line of the server if one comes within timeout s; True if one did."""
  server = _start_server()
  fd = server.stdout.fileno()
  while b"\n" not in _pending[0]:
    if not select.select([fd], [], [], timeout)[0]:
      return False
    data = os.read(fd, 1 << 16)
    if not data:
      raise RuntimeError(f"the main_runner server ended (status {server.wait()})")
    _pending[0] += data
  line, _pending[0] = _pending[0].split(b"\n", 1)
  report = json.loads(line)
  if "returncode" in report:
    _codes[report["id"]] = report["returncode"]
  else:
    _codes[("pid", report["id"])] = report["pid"]
  return True


def _argv(args):
  return [sys.executable, "-m", "haviv_tf.main", *[str(a) for a in args]]


def _start_server():
  global _server
  if _server is None or _server.poll() is not None:
    _server = subprocess.Popen([sys.executable, os.path.abspath(__file__)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    _pending[0] = b""
    atexit.register(_stop, _server)
  return _server


def _stop(server):
  server.stdin.close()   # the server ends at the end of its input, once its children have
  try:
    server.wait(timeout=60)
  except subprocess.TimeoutExpired:
    server.kill()
    server.wait()
  server.stdout.close()


# -- the server ------------------------------------------------------------------------------


def _serve():
  """Imports, then forks one child per request line (a JSON object) on stdin.

  Reports {"id", "pid"} when a child starts and {"id", "returncode"} when it ends, on stdout.
  """
  _import_everything()
  channel = os.dup(1)
  os.dup2(os.open(os.devnull, os.O_WRONLY), 1)   # nothing else may write to the channel
  children = {}   # pid -> request id
  pending = b""
  open_input = True

  def report(**fields):
    os.write(channel, (json.dumps(fields) + "\n").encode())

  while open_input or children:
    if open_input and select.select([0], [], [], 0.02)[0]:
      data = os.read(0, 1 << 16)
      open_input = bool(data)
      pending += data
      while b"\n" in pending:
        line, pending = pending.split(b"\n", 1)
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
          os.close(channel)
          _child(request)   # never returns
        children[pid] = request["id"]
        report(id=request["id"], pid=pid)
    elif not open_input:
      time.sleep(0.02)
    while children:
      pid, status = os.waitpid(-1, os.WNOHANG)
      if pid == 0:
        break
      report(id=children.pop(pid), returncode=os.waitstatus_to_exitcode(status))


def _import_everything():
  """Everything haviv_tf.main imports when it runs, but not haviv_tf.main itself: its flags
  are defined when the child runs it as __main__."""
  import pkgutil  # pylint: disable=g-import-not-at-top
  # As in a real run, absl's log handler is in place before TensorFlow is imported (app.run
  # installs it; TensorFlow adds a handler of its own to a root logger that has none).
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.use_absl_handler()
  import tensorflow  # pylint: disable=g-import-not-at-top,unused-import
  import keras  # pylint: disable=g-import-not-at-top,unused-import
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  _keep_matplotlib_folder()
  import haviv_tf  # pylint: disable=g-import-not-at-top
  for mod in pkgutil.walk_packages(haviv_tf.__path__, "haviv_tf."):
    if mod.name != "haviv_tf.main":
      __import__(mod.name)
  # What TensorFlow's import left for absl's app.run to call (it counts the GPUs): a child whose
  # run imports TensorFlow after app.run would call it then. Called here once, it stays out of
  # the stderr of a child that ends before any TensorFlow use (a flag error: one line).
  while app._init_callbacks:  # pylint: disable=protected-access
    app._init_callbacks.popleft()()  # pylint: disable=protected-access


def _keep_matplotlib_folder():
  """Matplotlib's temporary folder, when the home folder is not writable (Bazel's sandbox), is
  removed by the server alone.

  Matplotlib then makes a temporary folder on import and registers its removal at exit: an
  atexit handler every forked child would inherit and run, so the first child to end would take
  the folder from all later ones (a traceback on their stderr).
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  folder = matplotlib.get_configdir()
  if not os.path.basename(folder).startswith("matplotlib-"):
    return
  atexit.unregister(shutil.rmtree)
  server = os.getpid()
  atexit.register(lambda: os.getpid() == server and shutil.rmtree(folder, ignore_errors=True))


def _child(request):
  """Runs haviv_tf.main as `python3 -m` would, in the request's directory and environment."""
  import runpy  # pylint: disable=g-import-not-at-top
  out = os.O_WRONLY | os.O_CREAT | os.O_APPEND
  os.dup2(os.open(request["stdin"], os.O_RDONLY), 0)
  os.dup2(os.open(request["stdout"], out, 0o644), 1)
  os.dup2(os.open(request["stderr"], out, 0o644), 2)
  sys.stdin = open(0, closefd=False)
  os.environ.clear()
  os.environ.update(request["env"])
  tempfile.tempdir = None   # TMPDIR is read again (tempfile caches it)
  os.chdir(request["cwd"])
  sys.path[0] = request["cwd"]
  sys.argv = [os.path.join(os.path.dirname(__import__("haviv_tf").__file__), "main.py"),
              *request["args"]]
  # SystemExit and uncaught exceptions end the child as they end `python3 -m haviv_tf.main`.
  runpy.run_module("haviv_tf.main", run_name="__main__", alter_sys=True)
  sys.exit(0)


if __name__ == "__main__":
  _serve()
