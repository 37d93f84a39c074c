"""Workflows that compose the library: export, compress (prune, distill, train), bench.

The CLI calls one recipe per command; recipes parse what the user named (``ref.parse_model_ref``)
and return typed results.
"""
