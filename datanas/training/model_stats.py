"""Moved to ``datanas.core.model_stats``; this name stays for older imports."""

from datanas.core.model_stats import IMAGENET_MOBILE_MULT_ADDS, count_multiply_adds, count_parameters

__all__ = ["count_parameters", "count_multiply_adds", "IMAGENET_MOBILE_MULT_ADDS"]
