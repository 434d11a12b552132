"""`saetui eval`: downstream loss and accuracy with the SAE spliced into CLIP, reconstruction metrics, neuron alignment.

Import the submodule you need (runner.evaluate, report, store); the package imports nothing heavy itself.
"""
