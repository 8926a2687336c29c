"""Default recipe on an LSTM with c kept in the reached range vs c free (the authors')."""
import sys
from haviv_tf.analysis import pipeline
from haviv_tf.probes import slow_points
which, workdir = sys.argv[1], sys.argv[2]
cfg, source, run = pipeline.restore(workdir)
s = pipeline.find_slow_points(cfg, run, source, workdir,
                              slow_points.SlowPointConfig(lstm_c=which))
print(which, s["slow_point_summary"])
