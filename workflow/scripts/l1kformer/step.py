"""Running one pipeline step from a script: a log file, one-line errors, a non-zero exit."""

import contextlib
import errno
import os
import re
import sys
import time
import traceback

from l1kformer.errors import InputError


@contextlib.contextmanager
def step(log_path):
    """Send stderr to ``log_path``; yield a ``log(msg)`` function (messages starting with WARNING also
    go to the terminal).

    Bad input (:class:`InputError`) becomes one line, ``l1kformer error: <file or key>: <problem>``,
    in the log and on the terminal, and exit status 1. Other exceptions keep their traceback in the
    log and propagate.
    """
    terminal = sys.stderr
    with open(log_path, "w", buffering=1) as log_file:
        sys.stderr = log_file
        start = time.time()

        def log(message):
            print(f"[{time.time() - start:8.1f}s] {message}", file=log_file, flush=True)
            if message.startswith("WARNING"):  # warnings reach the terminal too
                print(f"l1kformer warning{message[len('WARNING'):]} ({log_path})", file=terminal, flush=True)

        def fail(line):
            print(line, file=log_file)
            print(line, file=terminal)
            sys.exit(1)

        try:
            yield log
        except InputError as exc:
            fail(f"l1kformer error: {exc}")
        except OSError as exc:
            line = _unwritable(exc)
            if line is None:
                traceback.print_exc(file=log_file)
                raise
            fail(line)
        except BaseException:
            traceback.print_exc(file=log_file)
            raise
        finally:
            sys.stderr = terminal


UNWRITABLE = {errno.EACCES: "permission denied", errno.EPERM: "permission denied",
              errno.EROFS: "read-only file system", errno.ENOSPC: "no space left on the device",
              errno.EDQUOT: "disk quota exceeded"}


def _unwritable(exc):
    """One line for an output that cannot be written (permissions, a read-only or full disk), else None.
    h5py reports the C library's errno only inside its message."""
    code = exc.errno
    if code is None:
        found = re.search(r"errno = (\d+)", str(exc))
        code = int(found.group(1)) if found else None
    if code not in UNWRITABLE:
        return None
    where = exc.filename or (re.search(r"name = '([^']+)'", str(exc)) or [None, "an output"])[1]
    return (f"l1kformer error: {where}: cannot write it ({UNWRITABLE[code]}); check that the results "
            f"folder (results_dir) is writable and has space")


def job_threads(allotted):
    """Threads for a job: what Snakemake allotted, never more than the cores this process may use
    (``--cores 8`` on a 2-core machine gives jobs 8 threads otherwise)."""
    return max(1, min(int(allotted), len(os.sched_getaffinity(0))))
