"""Hand-written forward and backward passes of the built-in layers.

Each module holds one family of layers. Every backward is written to be
read: plain vectorised torch, no autograd, the math in the docstring.
"""
