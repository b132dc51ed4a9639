"""What graph and host search steps share: the joint, weight and
architecture steps of a sampled child, written once in terms of the step
kind's own ``update`` (``graph_steps.GraphSteps``, ``host_steps.HostSteps``)."""

__all__ = ["SampledSteps"]


class SampledSteps:
    """Base of a step kind of one `Searcher`."""

    def __init__(self, searcher, *, stream_weights, stream_arch):
        self.searcher = searcher
        self.stream_weights, self.stream_arch = stream_weights, stream_arch

    def update(self, batch, stream, update_weights, update_arch, prefix=""):
        """Forward/backward of the child sampled for `stream`; updates the
        chosen variable sets; the step's metric means."""
        raise NotImplementedError

    def joint_update(self, batch):
        """DATA's joint step: weights and logits from one batch."""
        return self.searcher.advance(self.update(batch, self.stream_weights, True, True))

    def weight_update(self, batch):
        return self.searcher.advance(self.update(batch, self.stream_weights, True, False))

    def arch_update(self, batch):
        """First-order architecture step on a held-out batch (alternate mode)."""
        return self.update(batch, self.stream_arch, False, True, "arch_")
