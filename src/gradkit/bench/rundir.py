"""The run directory ``OUT_DIR/NAME``: its name, one writer at a time, and nothing written outside it.

* A run without ``--name`` gets a fresh directory (``default``, ``default-2``, ...), claimed with
  ``os.mkdir``, which fails if another process claimed it first; a named run that already exists is
  refused unless the caller allows overwriting.
* One bench writes a run directory at a time: :class:`RunLock` holds an exclusive ``fcntl.flock`` on
  ``NAME/.lock`` for the whole bench. The kernel releases it when the process dies, however it dies,
  so a reader that finds ``"status": "running"`` and can take the lock knows the writer is gone
  (:func:`lock_holder_alive`).
* File names derived from data (task names in ``results.json``) go through :func:`safe_filename`,
  so ``gradkit report`` writes only directly inside the run directory.
"""
from __future__ import annotations

import errno
import os
import re
import tempfile
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: an exclusively created lock file instead
    fcntl = None

__all__ = ["RunBusyError", "RunLock", "check_writable_dir", "claim_run_dir", "lock_holder_alive",
           "refuse_existing_run", "safe_filename", "valid_run_name", "LOCK_NAME"]

LOCK_NAME = ".lock"
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class RunBusyError(ValueError):
    """Another process is writing this run directory."""


def valid_run_name(name: str) -> str:
    """``name`` if it is a plain directory name (letters, digits, '.', '_', '-'; at most 100), else ValueError."""
    if not isinstance(name, str) or not _RUN_NAME.match(name):
        raise ValueError(f"--name must be a plain directory name of letters, digits, '.', '_' and '-' "
                         f"(starting with a letter or digit, at most 100 characters), got {name!r}")
    return name


def safe_filename(text: str, fallback: str = "task") -> str:
    """``text`` made into one path component: runs of other characters become '_', no leading dots."""
    cleaned = _UNSAFE.sub("_", str(text)).strip("._")[:100]
    return cleaned or fallback


def check_writable_dir(path: str | Path, option: str = "--out-dir") -> Path:
    """Create ``path`` if needed and prove a file can be written in it; a clear ValueError otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {str(path)!r} is a file, not a directory; give a directory (it is created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ValueError(f"{option} {str(path)!r} is not a writable directory ({reason}); give a directory you can write to") from None
    return path


def refuse_existing_run(run: Path, name: str) -> None:
    """ValueError if ``run`` (the directory of ``--name name``) already holds anything but its lock file."""
    if run.is_dir() and any(p.name != LOCK_NAME for p in run.iterdir()):
        raise ValueError(f"--name {name!r}: {str(run)!r} already holds a run; pass --overwrite to replace it, "
                         f"or choose another --name (without --name every run gets a fresh directory)")


def claim_run_dir(out_dir: Path, name: str | None, base: str, overwrite: bool) -> tuple[Path, "RunLock"]:
    """The run directory, locked: ``out_dir/name`` (refused if it holds a run, unless ``overwrite``), else a
    fresh ``out_dir/base``, ``base-2``, ... The caller releases the returned lock when the bench is done."""
    if name is not None:
        run = out_dir / valid_run_name(name)
        if run.exists() and not run.is_dir():
            raise ValueError(f"--name {name!r}: {str(run)!r} exists and is not a directory; choose another --name")
        run.mkdir(exist_ok=True)
        lock = RunLock(run).acquire()  # before looking inside: a bench finishing meanwhile is seen
        if not overwrite:
            try:
                refuse_existing_run(run, name)
            except ValueError:
                lock.release()
                raise
        return run, lock
    base = safe_filename(base, "run")
    for i in range(1, 10_000):
        run = out_dir / (base if i == 1 else f"{base}-{i}")
        try:
            run.mkdir()  # atomic: of two benches racing for one name, exactly one gets it
        except FileExistsError:
            continue
        return run, RunLock(run).acquire()
    raise ValueError(f"--out-dir {str(out_dir)!r}: no free run name {base}-N below 10000; pass --name")


class RunLock:
    """An exclusive, non-blocking lock on a run directory, held until :meth:`release` (or process death)."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        if fcntl is None:  # pragma: no cover
            try:
                self._fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                raise RunBusyError(self._busy_message()) from None
        else:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise RunBusyError(self._busy_message()) from None
                raise
            self._fd = fd
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode())
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        if fcntl is None:  # pragma: no cover
            os.close(self._fd)
            self.path.unlink(missing_ok=True)
        else:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def _busy_message(self) -> str:
        try:
            pid = self.path.read_text().strip()
        except OSError:
            pid = ""
        holder = f" (process {pid})" if pid.isdigit() else ""
        return (f"run directory {str(self.path.parent)!r} is being written by another gradkit bench{holder}; "
                f"wait for it to finish or choose another --name")


def lock_holder_alive(run_dir: str | Path) -> bool:
    """Whether some process holds ``run_dir``'s lock now (its bench is still running)."""
    path = Path(run_dir) / LOCK_NAME
    if not path.exists():
        return False
    if fcntl is None:  # pragma: no cover - the lock file exists only while held
        return True
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
