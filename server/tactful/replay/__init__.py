"""Offline replay of logged sessions through show/hide policies, and its HTML report."""
