"""Optimum export, quantisation recipes, variant manifests and the model store."""
