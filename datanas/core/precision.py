"""The Keras dtype policy a run computes in: float32, or bfloat16 with float32 weights.

``mixed_bfloat16`` is how TPUs (and Ampere or newer GPUs) run fast: layers
compute in bfloat16 while every variable -- network weights, architecture
logits, optimizer slots, batch-norm statistics -- stays float32.  The rest of
datanas is written for it: the estimators sample in float32 and cast their
codes to the layer's compute dtype, the tasks compute losses and metric sums in
float32, drop-path flips its coins in float32.

``mixed_float16`` is refused: float16's 5-bit exponent underflows small
gradients unless the loss is scaled (and the step skipped on overflow), which
the custom train steps do not do.  bfloat16 has float32's exponent range, so
no scaling is needed.

On a CPU without native bfloat16 kernels the policy is usually slower, not
faster; it is a GPU/TPU setting.
"""

from __future__ import annotations

import keras

__all__ = ["DTYPE_POLICIES", "set_dtype_policy"]

#: The policies a run may use.
DTYPE_POLICIES = ("float32", "mixed_bfloat16")


def set_dtype_policy(name):
    """Makes `name` the global Keras dtype policy (before any model is built).

    Returns:
      The keras.DTypePolicy now in force.

    Raises:
      ValueError: `name` is not one of DTYPE_POLICIES (one line naming it).
    """
    if name == "mixed_float16":
        raise ValueError("dtype policy 'mixed_float16' is not supported: float16 needs loss "
                         "scaling, which datanas' train steps do not do; use 'mixed_bfloat16' "
                         "(TPUs, Ampere or newer GPUs) or 'float32'.")
    if name not in DTYPE_POLICIES:
        raise ValueError(f"dtype policy must be one of {', '.join(DTYPE_POLICIES)}; "
                         f"got {name!r}.")
    keras.config.set_dtype_policy(name)
    return keras.config.dtype_policy()
