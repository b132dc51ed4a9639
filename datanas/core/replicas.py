"""A distributed variable's copy on the current replica."""

__all__ = ["replica_component"]


def replica_component(variable):
    """The tf.Variable behind a Keras variable, and under a distribution
    strategy this replica's copy of it: a function called from a replica
    must read, assign and differentiate the replica's own component (a
    gradient asked of the distributed variable would be None), and a
    collective needs inputs placed on the replica's device."""
    variable = getattr(variable, "_value", variable)
    component = getattr(variable, "_get_on_device_or_primary", None)   # DistributedVariable
    return component() if component is not None else variable
