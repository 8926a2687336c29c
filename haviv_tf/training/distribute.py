"""tf.distribute strategies for training, and the multi-worker plumbing around them.

  default       tf.distribute.get_strategy(): one device, the code path of a plain run.
  mirrored      MirroredStrategy over the visible GPUs, or, without a GPU, over the logical CPU
                devices (split the CPU into N of them with `split_cpu(N)` / --cpu_devices=N
                before TensorFlow initialises its devices).
  multi_worker  MultiWorkerMirroredStrategy on the cluster described by TF_CONFIG (one process
                per worker; every worker runs the same command).
  tpu           TPUClusterResolver + tf.tpu.experimental.initialize_tpu_system + TPUStrategy.
                Written against the public API only and untested here (no TPU on this machine).

Training under any of them gives the update of the single-device run for the same seed, up to
float summation order: the global batch (cfg.batch_size trials) is cut into equal per-replica
shards by `distribute_batches`, and DelayedClassifier.train_step scales each replica's loss so
that the replicas' gradients, summed by the optimizer, are the gradient of the global loss.

Multi-worker checkpointing follows TensorFlow's pattern: every worker takes part in every save
(saving may need collective ops), but only the chief writes into the workdir; the others write
to a scratch directory (`scratch_dir`) that is deleted afterwards. Only the chief writes
config.json, results, TensorBoard and exports, and only the chief runs the analysis after
training.
"""

import json
import os
import tempfile

import tensorflow as tf

from haviv_tf.base import config as config_lib
from haviv_tf.models import keras_private

STRATEGIES = config_lib.STRATEGIES
TF_CONFIG_EXAMPLE = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}\'')


def check_name(name: str) -> str:
  """Returns `name` if it is a strategy name; ValueError (one line) otherwise."""
  if name not in STRATEGIES:
    raise config_lib.InputError(f"unknown strategy {name!r}; valid: {', '.join(STRATEGIES)}")
  return name


def split_cpu(num_devices: int) -> None:
  """Splits the first physical CPU into `num_devices` logical devices (CPU:0 .. CPU:N-1).

  Must be called before TensorFlow initialises its devices (before the first op, or
  tf.config.list_logical_devices); a repeated call with the same count is a no-op.

  Raises:
    ValueError: bad count, or the devices are already initialised with another layout.
  """
  if isinstance(num_devices, bool) or not isinstance(num_devices, int) or num_devices < 1:
    raise config_lib.InputError(f"`cpu_devices` must be a positive integer, got {num_devices!r}")
  cpu = tf.config.list_physical_devices("CPU")[0]
  current = tf.config.get_logical_device_configuration(cpu)
  if current is not None and len(current) == num_devices:
    return
  try:
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)])
  except RuntimeError:
    have = len(tf.config.list_logical_devices("CPU"))
    raise config_lib.InputError(f"cannot split the CPU into {num_devices} logical devices: TensorFlow has "
                     f"already initialised {have}; split it at program start") from None


def tf_config() -> dict:
  """TF_CONFIG parsed and checked for MultiWorkerMirroredStrategy.

  Raises:
    ValueError: TF_CONFIG missing, not JSON, or not a cluster with this task in it (one line).
  """
  raw = os.environ.get("TF_CONFIG", "").strip()
  if not raw:
    raise config_lib.InputError("--strategy=multi_worker needs the TF_CONFIG environment variable, e.g. "
                     + TF_CONFIG_EXAMPLE)
  try:
    config = json.loads(raw)
  except json.JSONDecodeError as e:
    raise config_lib.InputError(f"TF_CONFIG is not valid JSON ({e.msg} at column {e.colno})") from None
  if not isinstance(config, dict):
    raise config_lib.InputError("TF_CONFIG must be a JSON object with \"cluster\" and \"task\"")
  cluster, task = config.get("cluster"), config.get("task")
  if not isinstance(cluster, dict) or not cluster:
    raise config_lib.InputError("TF_CONFIG has no \"cluster\" (a map of job name to host:port list), e.g. "
                     + TF_CONFIG_EXAMPLE)
  for job, hosts in cluster.items():
    if job not in ("chief", "worker"):
      raise config_lib.InputError(f"TF_CONFIG cluster job {job!r} is not supported; use chief and worker")
    if (not isinstance(hosts, list) or not hosts
        or not all(isinstance(h, str) and h.rpartition(":")[2].isdigit() for h in hosts)):
      raise config_lib.InputError(f"TF_CONFIG cluster {job!r} must be a non-empty list of \"host:port\", "
                       f"got {hosts!r}")
  if len(cluster.get("chief", [])) > 1:
    raise config_lib.InputError("TF_CONFIG may name at most one chief")
  if not isinstance(task, dict) or "type" not in task or "index" not in task:
    raise config_lib.InputError("TF_CONFIG has no \"task\" {\"type\": ..., \"index\": ...} for this process")
  kind, index = task["type"], task["index"]
  if kind not in cluster:
    raise config_lib.InputError(f"TF_CONFIG task type {kind!r} is not a job of the cluster "
                     f"({', '.join(cluster)})")
  if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster[kind]):
    raise config_lib.InputError(f"TF_CONFIG task index {index!r} is out of range for the "
                     f"{len(cluster[kind])} {kind} task(s)")
  return config


def make_strategy(name: str, cpu_devices: int = 0, tpu: str = ""):
  """The tf.distribute strategy `name` (one of STRATEGIES).

  Args:
    name: default | mirrored | multi_worker | tpu.
    cpu_devices: mirrored on a machine without GPU: first split the CPU into this many logical
      devices (0: use the logical CPU devices as they are). Only with `mirrored`.
    tpu: TPUClusterResolver's `tpu` argument (name or grpc:// address; "" = the local / Cloud
      TPU VM default). Only with `tpu`.

  Raises:
    ValueError: a bad name or argument, missing/invalid TF_CONFIG, no TPU (one line).
  """
  check_name(name)
  if cpu_devices and name != "mirrored":
    raise config_lib.InputError("--cpu_devices goes with --strategy=mirrored")
  if tpu and name != "tpu":
    raise config_lib.InputError("--tpu goes with --strategy=tpu")
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
      if cpu_devices:
        raise config_lib.InputError(f"--cpu_devices splits the CPU of a machine without GPU; this one has "
                         f"{len(gpus)} GPU(s), which mirrored uses")
      return tf.distribute.MirroredStrategy()
    if cpu_devices:
      split_cpu(cpu_devices)
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=devices)
  if name == "multi_worker":
    tf_config()
    return tf.distribute.MultiWorkerMirroredStrategy(
        cluster_resolver=tf.distribute.cluster_resolver.TFConfigClusterResolver())
  # The TPU path: the public TPUStrategy recipe. Untested here (no TPU on this machine).
  try:
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or None)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  except (ValueError, RuntimeError, tf.errors.OpError) as e:
    first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
    raise config_lib.InputError(f"cannot connect to a TPU ({first})") from None


def name_of(strategy) -> str:
  """The STRATEGIES name of a strategy object."""
  if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return "multi_worker"
  if isinstance(strategy, tf.distribute.MirroredStrategy):
    return "mirrored"
  if isinstance(strategy, tf.distribute.TPUStrategy):
    return "tpu"
  return "default"


def is_default(strategy) -> bool:
  """Whether `strategy` is None or TensorFlow's default (no-op, single-device) strategy."""
  return strategy is None or (not tf.distribute.has_strategy()
                              and strategy is tf.distribute.get_strategy())


def is_multi_worker(strategy) -> bool:
  """Whether `strategy` is a MultiWorkerMirroredStrategy joined to more than one worker."""
  return keras_private.in_multi_worker_mode(strategy)


def is_chief(strategy) -> bool:
  """Whether this process writes the workdir: always, except a non-chief multi-worker task.

  The chief is the "chief" task, or worker 0 when the cluster has no chief job.
  """
  return strategy is None or bool(strategy.extended.should_checkpoint)


def task_of(strategy):
  """(task type, task index) of this process in a multi-worker cluster, else (None, None)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if not is_multi_worker(strategy) or resolver is None:
    return None, None
  return resolver.task_type, resolver.task_id


def scratch_dir(strategy) -> str:
  """A fresh temporary directory where a non-chief worker writes (delete it afterwards)."""
  kind, index = task_of(strategy)
  return tempfile.mkdtemp(prefix=f"haviv_tf_{kind or 'worker'}{'' if index is None else index}_")


def describe(strategy) -> dict:
  """What config.json records about the strategy: name, replicas, workers."""
  strategy = strategy or tf.distribute.get_strategy()
  out = dict(name=name_of(strategy), num_replicas=int(strategy.num_replicas_in_sync))
  if is_multi_worker(strategy):
    cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    out["num_workers"] = sum(len(v) for v in cluster.values())
  else:
    out["num_workers"] = 1
  return out


def barrier(strategy) -> None:
  """Returns once every worker has reached it (a no-op unless multi-worker)."""
  if is_multi_worker(strategy):
    gather_ints(strategy, 0)


def gather_ints(strategy, value: int) -> list:
  """`value` of every replica, in replica order (a collective: every worker must call it)."""
  @tf.function
  def gather(v):
    return strategy.gather(strategy.run(lambda: tf.identity(v)), axis=0)

  return [int(v) for v in gather(tf.constant([float(value)], tf.float64)).numpy()]


def check_same_step(strategy, step: int) -> None:
  """Raises ValueError unless every worker restored the same step (multi-worker only).

  Workers that resume from different checkpoints (e.g. a workdir not on a filesystem they
  share) would train different numbers of steps and then wait on each other forever.
  """
  if not is_multi_worker(strategy):
    return
  try:
    steps = gather_ints(strategy, step)
  except (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError):
    # A worker that has the others' steps may stop (below) before the last of them has read
    # its own: that one's collective is then cut off.
    raise config_lib.InputError(
        "another worker stopped during the check that every worker restored the same step "
        "(its error says why; most likely the workers restored different steps: the workdir "
        "must be on a filesystem every worker shares)") from None
  if len(set(steps)) > 1:
    raise config_lib.InputError(f"the workers restored different steps {sorted(set(steps))}: the workdir "
                     "must be on a filesystem every worker shares")


def check_divisible(strategy, batch_size: int, speed_noise: int) -> None:
  """Raises ValueError unless the global batch and the K speed-noise frames split evenly."""
  replicas = strategy.num_replicas_in_sync
  if batch_size % replicas:
    raise config_lib.InputError(f"`batch_size` {batch_size} does not split evenly over the {replicas} "
                     "replicas; use a multiple of the replica count")
  if speed_noise % replicas:
    raise config_lib.InputError(f"the speed penalty's {speed_noise} targets (10 x `speed_copies`) do not "
                     f"split evenly over the {replicas} replicas; choose `speed_copies` so "
                     "that they do")


def distribute_batches(strategy, make_dataset, batch_size: int, speed_noise: int = 0):
  """Distributes a dataset of global batches so that replica r gets shard r of every batch.

  `make_dataset()` returns a tf.data.Dataset whose element k is the whole global batch of a
  step: (inputs [B, ...], targets dict of [B, ...] tensors, plus "speed_noise" [K, frame_size]
  when `speed_noise` = K > 0). Every input pipeline (one per worker) builds the same global
  batches and keeps the shards of its own replicas, in replica order: replica r (r =
  pipeline id x local replicas + local index, tf.distribute's numbering) gets trials
  [r B/R, (r+1) B/R) and speed-noise frames [r K/R, (r+1) K/R), which DelayedClassifier pairs
  with rows [r K/R, (r+1) K/R) of its speed targets. No global batch is dropped or
  duplicated, whatever the auto-shard policy would do: sharding is explicit and auto-sharding
  is off.

  Raises:
    ValueError: B or K not divisible by the number of replicas.
  """
  replicas = strategy.num_replicas_in_sync
  check_divisible(strategy, batch_size, speed_noise)

  def dataset_fn(ctx: tf.distribute.InputContext):
    local = replicas // ctx.num_input_pipelines
    first = ctx.input_pipeline_id * local

    def shards(inputs, targets):
      def cut(x, rows):
        x = tf.reshape(x, [replicas, rows // replicas] + x.shape[1:].as_list())
        return x[first:first + local]
      out_targets = {k: cut(v, speed_noise if k == "speed_noise" else batch_size)
                     for k, v in targets.items()}
      return tf.data.Dataset.from_tensor_slices((cut(inputs, batch_size), out_targets))

    ds = make_dataset().flat_map(shards)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    options.deterministic = True
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)

  return strategy.distribute_datasets_from_function(dataset_fn)
