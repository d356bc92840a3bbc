"""Test hooks that make a training run fail on purpose at a chosen point, so the tests of
resuming, atomic checkpoints, concurrent runs and NaN handling can create those faults.

Each hook is an environment variable holding "EPOCH:STEP" (STEP 1-based, or `save` / `saved`
for the moments around a checkpoint's rename; see `netcompiler.training.trainer`):
    NETCOMPILER_TEST_DIE_AT    the process kills itself with SIGKILL there
    NETCOMPILER_TEST_STOP_AT   the process stops itself with SIGSTOP there (keeping its lock)
    NETCOMPILER_TEST_NAN_AT    the training loss of that step is replaced by NaN
"""

from __future__ import annotations

import os
import signal
import sys

DIE_ENV = "NETCOMPILER_TEST_DIE_AT"
NAN_ENV = "NETCOMPILER_TEST_NAN_AT"
STOP_ENV = "NETCOMPILER_TEST_STOP_AT"


def hook_set_for(env: str, epoch: int, step) -> bool:
    """Whether the hook `env` names this point ("EPOCH:STEP"); a malformed value names none."""
    spec = os.environ.get(env)
    if not spec:
        return False
    e, _, s = spec.partition(":")
    try:
        return int(e) == epoch and s.strip() == str(step)
    except ValueError:
        return False


def die_or_stop_if_asked(epoch: int, step) -> None:
    """Kill (DIE_ENV) or stop (STOP_ENV) this process if a hook names this point; the output
    written so far is flushed first, so the tests can read it."""
    if hook_set_for(DIE_ENV, epoch, step):
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    if hook_set_for(STOP_ENV, epoch, step):
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGSTOP)
