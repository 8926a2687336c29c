"""Under `pytest -n N` (.ci/run: -n 2) the longest test files run first, one test at a time.

pytest-xdist's `load` scheduling hands out the tests in collection order, in chunks: a long test
collected last can leave one worker idle while the other finishes it. Here the files of
SLOW_FIRST (most time first, from the durations in benchmarks/RESULTS.md) move to the front,
each whole and in its own order (so a module fixture is built at most once per worker), and
unless --maxschedchunk is given each worker is sent one test at a time when it is free: the
long tests spread over the workers and the short ones fill the end. Sorting without the
one-at-a-time sending would do the opposite (the first chunk, all long tests, to one worker).
"""

import sys

# Tests that take 5 s or more on 2 cores (`--durations=0` of the whole suite under `-n 2`, the
# machine otherwise quiet, 2026-12-06, commit 282412f; a test's time includes the module fixture
# it happened to build): marked `slow`, so `python3 -m pytest -q -n 2 -m "not slow" tests` is the
# quick subset (docs/bazel.md). A parameterized test is listed once, for all its cases.
# `--list_modules=FILE` writes the haviv_tf modules each test process imported (to check that a
# subset still touches every module).
SLOW = (
    "tests/api_docs_test.py::test_every_public_name_is_documented",
    "tests/backtrack_test.py::test_backtrack_needs_snapshots_and_slow_points",
    "tests/backtrack_test.py::test_backtrack_on_a_tiny_vocu_run_with_two_snapshots",
    "tests/bazel_test.py::test_bazel_fails_a_target_that_imports_an_undeclared_module",
    "tests/compat_test.py::CompatTest::test_finished_run_evaluates_a_new_delay_and_keeps_the_stored_ones",
    "tests/compat_test.py::CompatTest::test_finished_run_keeps_its_backtracking",
    "tests/compat_test.py::CompatTest::test_finished_run_searches_its_slow_points_again",
    "tests/compat_test.py::CompatTest::test_half_run_resumes_from_its_checkpoint_to_the_uninterrupted_end",
    "tests/compat_test.py::CompatTest::test_saved_model_loads_with_tensorflow_alone_and_gives_the_recorded_outputs",
    "tests/confusion_test.py::test_the_counts_are_the_runs_own_accuracy_and_name_where_each_class_goes",
    "tests/control_test.py::test_compare_writes_the_table_and_plots",
    "tests/control_test.py::test_control_equals_plain_continued_training",
    "tests/control_test.py::test_finetune_never_writes_into_the_parent_and_records_it",
    "tests/control_test.py::test_penalty_from_scratch_refreshes_targets_and_resumes_exactly",
    "tests/distribute_test.py::test_a_run_resumes_under_another_strategy",
    "tests/distribute_test.py::test_bad_strategy_input_is_one_line_and_exit_1",
    "tests/distribute_test.py::test_mirrored_over_two_cpu_devices_matches_one_device",
    "tests/distribute_test.py::test_sgd_steps_on_two_replicas_equal_one_device",
    "tests/distribute_test.py::test_two_local_workers_match_one_device",
    "tests/distribute_test.py::test_workers_that_restore_different_steps_are_refused",
    "tests/docs_commands_test.py::test_documented_command_validates",
    "tests/dynamics_isolation_test.py::test_the_library_loads_no_application_module",
    "tests/dynamics_isolation_test.py::test_the_library_works_without_matplotlib",
    "tests/evaluation_test.py::test_evaluation_memory_does_not_grow_with_the_delay",
    "tests/experiments_test.py::test_cnn_ceiling_writes_the_ceiling_a_report_reads",
    "tests/export_test.py::ExportTest::test_example_script_writes_slow_points",
    "tests/export_test.py::ExportTest::test_load_metadata_helper",
    "tests/export_test.py::ExportTest::test_saved_model_cli_lists_the_signatures",
    "tests/grid_weights_test.py::test_weights_never_replace_a_checkpoint",
    "tests/grid_weights_test.py::test_weights_restore_the_network_and_its_recorded_accuracy",
    "tests/jit_test.py::test_bfloat16_training_runs_and_gradients_are_float32",
    "tests/jit_test.py::test_jit_and_plain_training_agree_to_float_tolerance",
    "tests/learning_curve_test.py::test_every_snapshot_is_evaluated_and_drawn_against_step_and_summed_rate",
    "tests/main_test.py::test_a_second_writer_is_refused_and_a_killed_holder_does_not_block",
    "tests/main_test.py::test_damaged_latest_checkpoint_is_skipped_and_the_run_resumes_from_the_one_before",
    "tests/main_test.py::test_different_config_in_workdir_is_refused_unless_overwrite",
    "tests/main_test.py::test_evaluate_keeps_stored_accuracies_of_more_trials_and_adds_new_delays",
    "tests/main_test.py::test_memory_mode_follows_delays_and_stores_half_lives",
    "tests/main_test.py::test_modes_on_a_trained_workdir_and_analyze",
    "tests/main_test.py::test_nan_loss_stops_and_keeps_the_last_good_checkpoint",
    "tests/main_test.py::test_quick_run_writes_config_checkpoints_events_and_results",
    "tests/main_test.py::test_rerun_of_a_finished_run_resumes_without_training",
    "tests/main_test.py::test_sigkill_and_resume_ends_with_the_same_weights",
    "tests/network_test.py::TrainingTest::test_tiny_gru_learns_the_task_far_above_chance",
    "tests/pipeline_test.py::test_train_and_analyze_writes_every_artifact",
    "tests/readme_test.py::test_readme_snippet_runs",
    "tests/report_test.py::test_report_on_a_tiny_grid_states_every_claim",
    "tests/report_test.py::test_study_mode_runs_the_grid_and_writes_the_report",
    "tests/rerun_test.py::test_analysis_of_other_runs_is_not_written_over_without_overwrite",
    "tests/rerun_test.py::test_backtracking_shows_progress_and_keeps_a_result_of_other_settings",
    "tests/rerun_test.py::test_compare_refuses_a_finished_fine_tuning_of_other_settings",
    "tests/rerun_test.py::test_export_of_an_exported_network_does_nothing_without_overwrite",
    "tests/rerun_test.py::test_training_again_with_another_recipe_keeps_the_slow_points",
    "tests/slurm_test.py::test_job_array_runs_resumes_after_cancel_and_requeue_and_skips_when_done",
    "tests/slurm_test.py::test_submit_without_sbatch_is_one_error_line",
    "tests/train_test.py::NullWarningTest::test_a_learning_run_is_not_warned",
    "tests/train_test.py::NullWarningTest::test_a_run_stuck_at_the_trivial_solution_is_warned_once",
    "tests/train_test.py::TensorBoardResumeTest::test_a_resumed_run_does_not_log_the_killed_runs_steps_again",
)

SLOW_FIRST = ("report_test.py", "main_test.py", "slurm_test.py", "distribute_test.py",
              "rerun_test.py", "control_test.py", "train_test.py")


def pytest_addoption(parser):
  parser.addoption("--list_modules", default=None, metavar="FILE",
                   help="append the haviv_tf modules this test process imported to FILE")


def pytest_sessionfinish(session):
  path = session.config.getoption("list_modules")
  if path:
    names = sorted(n for n in sys.modules if n == "haviv_tf" or n.startswith("haviv_tf."))
    with open(path, "a") as f:   # one write per process (O_APPEND): workers do not interleave
      f.write("".join(n + "\n" for n in names))


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
