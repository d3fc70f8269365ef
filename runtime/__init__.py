"""Torch-free inference: media, lip crops, features, graph sessions, routing, decoding.

Nothing under this package may import torch (a test enforces it).
"""
