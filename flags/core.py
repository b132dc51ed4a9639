"""Every flag group of the trainers in one namespace, as they import it
(``from flags import core as flags_core``).  Each group is its own module:

* presets.py -- named sets of flag values (``--preset``);
* search.py -- method, space, estimator, costs, random search, ablations;
* training.py -- image data, the final network and its optimiser;
* distribution.py -- tf.distribute strategy, op threads, log verbosity;
* runs.py -- the run lifecycle: identity, planning, flag files, one-line ends.

Library code never reads flags.
"""

from flags.presets import (  # noqa: F401
    SEARCH_PRESETS, TRAIN_PRESETS, define_preset_flag, apply_preset)
from flags.search import (  # noqa: F401
    define_arch_schedule_flags, define_cost_flags, define_egs_flags, search_method_choices,
    image_space_choices, derivation_rule_choices, define_search_flags, define_ablation_flags,
    search_config_from_flags, EGS_FLAGS, egs_options_from_flags, define_random_search_flags)
from flags.training import (  # noqa: F401
    define_image_data_flags, define_train_flags, define_cifar_train_flags,
    train_config_from_flags, check_layers)
from flags.distribution import (  # noqa: F401
    define_thread_flags, threads_from_flags, define_distribution_flags, strategy_from_flags,
    quiet_logging)
from flags.runs import (  # noqa: F401
    define_run_flags, TRAIN_RESULT_FILE, TRAIN_RESULT_FILES, NOT_IDENTITY, ADDED_WITH_DEFAULT,
    added_defaults, trainer_flag_values, FLAG_FILES, write_flags, run_identity, PreparedRun,
    prepare_run, SEARCH_RESULT_FILE, SEARCH_RESULT_FILES, prepare_search_run,
    prepare_training_run, run_errors)

__all__ = ["SEARCH_PRESETS", "TRAIN_PRESETS", "define_preset_flag", "apply_preset",
           "define_arch_schedule_flags",
           "define_cost_flags", "define_egs_flags", "search_method_choices", "image_space_choices",
           "derivation_rule_choices", "define_search_flags", "define_ablation_flags",
           "search_config_from_flags", "EGS_FLAGS", "egs_options_from_flags",
           "define_random_search_flags", "define_image_data_flags", "define_train_flags",
           "define_cifar_train_flags", "train_config_from_flags", "check_layers",
           "define_thread_flags", "threads_from_flags", "define_distribution_flags",
           "strategy_from_flags", "quiet_logging", "define_run_flags", "TRAIN_RESULT_FILE",
           "TRAIN_RESULT_FILES", "NOT_IDENTITY", "ADDED_WITH_DEFAULT", "added_defaults",
           "trainer_flag_values", "FLAG_FILES", "write_flags", "run_identity", "PreparedRun",
           "prepare_run", "SEARCH_RESULT_FILE", "SEARCH_RESULT_FILES", "prepare_search_run",
           "prepare_training_run", "run_errors"]
