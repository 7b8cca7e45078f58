"""Inference graphs: one package per graph, each exposing `graph` (see docs/concepts.md)."""
