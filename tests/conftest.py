"""Under `pytest -n N` (.ci/run: -n 2) the longest test files run first, one test at a time.

pytest-xdist's `load` scheduling hands out the tests in collection order, in chunks: a long test
collected last can leave one worker idle while the other finishes it. Here the files of
SLOW_FIRST (most time first, from the durations in benchmarks/RESULTS.md) move to the front,
each whole and in its own order (so a module fixture is built at most once per worker), and
unless --maxschedchunk is given each worker is sent one test at a time when it is free: the
long tests spread over the workers and the short ones fill the end. Sorting without the
one-at-a-time sending would do the opposite (the first chunk, all long tests, to one worker).
"""

# Tests that take 8 s or more on 2 cores (`--durations`, measured 2026-12-06): marked `slow`, so
# `python3 -m pytest -q -n 2 -m "not slow" tests` is the quick subset (docs/bazel.md). A
# parameterized test is listed once, for all its cases.
SLOW = (
    "tests/backtrack_test.py::test_backtrack_needs_snapshots_and_slow_points",
    "tests/bazel_test.py::test_bazel_fails_a_target_that_imports_an_undeclared_module",
    "tests/compat_test.py::CompatTest::test_half_run_resumes_from_its_checkpoint_to_the_uninterrupted_end",
    "tests/control_test.py::test_compare_writes_the_table_and_plots",
    "tests/control_test.py::test_penalty_from_scratch_refreshes_targets_and_resumes_exactly",
    "tests/distribute_test.py::test_a_run_resumes_under_another_strategy",
    "tests/distribute_test.py::test_mirrored_over_two_cpu_devices_matches_one_device",
    "tests/distribute_test.py::test_two_local_workers_match_one_device",
    "tests/experiments_test.py::test_cnn_ceiling_writes_the_ceiling_a_report_reads",
    "tests/grid_weights_test.py::test_weights_never_replace_a_checkpoint",
    "tests/grid_weights_test.py::test_weights_restore_the_network_and_its_recorded_accuracy",
    "tests/jit_test.py::test_bfloat16_training_runs_and_gradients_are_float32",
    "tests/jit_test.py::test_jit_and_plain_training_agree_to_float_tolerance",
    "tests/jit_test.py::test_jit_training_is_deterministic",
    "tests/main_test.py::test_a_second_writer_is_refused_and_a_killed_holder_does_not_block",
    "tests/main_test.py::test_analysis_modes_without_a_readable_checkpoint_end_with_one_error_line",
    "tests/main_test.py::test_damaged_latest_checkpoint_is_skipped_and_the_run_resumes_from_the_one_before",
    "tests/main_test.py::test_different_config_in_workdir_is_refused_unless_overwrite",
    "tests/main_test.py::test_evaluate_keeps_stored_accuracies_of_more_trials_and_adds_new_delays",
    "tests/main_test.py::test_modes_on_a_trained_workdir_and_analyze",
    "tests/main_test.py::test_quick_run_writes_config_checkpoints_events_and_results",
    "tests/main_test.py::test_rerun_of_a_finished_run_resumes_without_training",
    "tests/main_test.py::test_sigkill_and_resume_ends_with_the_same_weights",
    "tests/pipeline_test.py::test_train_and_analyze_writes_every_artifact",
    "tests/report_test.py::test_report_on_a_tiny_grid_states_every_claim",
    "tests/report_test.py::test_study_mode_runs_the_grid_and_writes_the_report",
    "tests/rerun_test.py::test_compare_refuses_a_finished_fine_tuning_of_other_settings",
    "tests/rerun_test.py::test_export_of_an_exported_network_does_nothing_without_overwrite",
    "tests/rerun_test.py::test_training_shows_progress_names_its_files_and_the_tensorboard_command",
    "tests/slurm_test.py::test_job_array_runs_resumes_after_cancel_and_requeue_and_skips_when_done",
    "tests/summaries_test.py::test_every_tag_of_a_run_has_a_description",
    "tests/train_test.py::NullWarningTest::test_a_run_stuck_at_the_trivial_solution_is_warned_once",
    "tests/train_test.py::TensorBoardResumeTest::test_a_resumed_run_does_not_log_the_killed_runs_steps_again",
)

SLOW_FIRST = ("slurm_test.py", "report_test.py", "main_test.py", "control_test.py",
              "distribute_test.py")


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: takes 8 s or more on 2 cores (see SLOW)")
  if getattr(config.option, "maxschedchunk", 0) is None:  # xdist installed, option not given
    config.option.maxschedchunk = 1


def pytest_collection_modifyitems(config, items):
  del config

  def rank(item):
    name = item.path.name
    return SLOW_FIRST.index(name) if name in SLOW_FIRST else len(SLOW_FIRST)

  for item in items:
    if item.nodeid.split("[")[0] in SLOW:
      item.add_marker("slow")
  items.sort(key=rank)  # stable: within a file, and for the other files, pytest's order
