"""Shared absl flag definitions of the datanas trainers.

This top-level package sits beside ``absl.flags``; every module imports the
two under distinct names::

    from absl import flags as absl_flags
    from flags import core as flags_core
"""
