"""Decoder loops: `rec` layers whose `unit` is a sub-network, run step by step (TensorFlow)."""
