"""Backward passes that end their process, crash or never return, and one that is right.

Each spec in this folder checks one of them (docs/trust-and-isolation.md):

    gradcheck run examples/isolation --timeout 2

Every spec runs in a worker process of its own, so each of these is that spec's error result
and the run goes on to the next. The forward is ``out = 2 * x``.
"""

import ctypes
import os
import sys


def good(grad_out, x):
    return 2 * grad_out


def sysexit(grad_out, x):
    sys.exit(3)  # raises SystemExit in the checked code: an exception like any other


def exits(grad_out, x):
    os._exit(0)  # ends the worker at once, with a success code: no result, no exception


def segfault(grad_out, x):
    ctypes.string_at(0)  # reads address 0: the worker is killed by SIGSEGV


def spins(grad_out, x):
    while True:  # never returns: stopped by the timeout, which names the line it was at
        sum(range(10**7))  # busy in one line (a bare `pass` loop is caught at either of two)
