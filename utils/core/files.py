"""Writing files and folders atomically: through a temporary one in the target's folder and a
rename, so a reader never sees a partial one and an interrupted write leaves the old (or none);
text, CSV and JSON (numpy numbers as JSON numbers, `to_builtin`) written so."""
import csv
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from typing import Dict, Iterator, List

import numpy as np


def check_writable(path: str) -> None:
    """Raise OSError unless a file can be created beside `path` (probes with a temporary file:
    permission bits alone do not tell, e.g. for root or read-only mounts)."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OSError(f"cannot write {path}: folder {folder} does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix='.probe-', dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as error:
        raise OSError(f"cannot write {path}: folder {folder} is not writable "
                      f"({error.strerror}); choose another output path") from None


def plain_file_mode() -> int:
    """The mode open() gives a new file: 0o666 without the process's umask bits."""
    return 0o666 & ~_umask()


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextmanager
def atomic_write(path: str) -> Iterator[str]:
    """Yield a temporary path beside `path` (same suffix) to write to; on success it becomes
    `path` with the mode a plain write would give; on an exception it is removed."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OSError(f"cannot write {path}: folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.tmp-',
                               suffix=os.path.splitext(path)[1], dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, plain_file_mode())  # mkstemp makes it 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextmanager
def atomic_folder(path: str) -> Iterator[str]:
    """Yield a new temporary folder beside `path` to fill; on success it is renamed to `path`
    (which must not exist: the rename fails rather than replace a folder that appeared
    meanwhile) with the mode os.mkdir gives; on an exception it is removed."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f'.{os.path.basename(os.path.abspath(path))}.tmp-', dir=parent)
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it 0700
        os.rename(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def to_builtin(value):
    """`value` with numpy scalars and arrays (also inside dicts, lists, tuples) turned into
    Python numbers and lists, as JSON needs them."""
    if isinstance(value, dict):
        return {k: to_builtin(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_builtin(v) for v in value]
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return value


def write_json_atomic(path: str, data: dict) -> None:
    """Write `data` as JSON to `path` through a temporary file and a rename."""
    with atomic_write(path) as tmp, open(tmp, 'w') as f:
        json.dump(to_builtin(data), f, indent=2, sort_keys=True)


def write_text_atomic(path: str, text: str) -> None:
    """Write a text file through a temporary file and a rename."""
    with atomic_write(path) as tmp, open(tmp, 'w') as f:
        f.write(text)


def write_csv_atomic(path: str, rows: List[Dict]) -> None:
    """Write rows (dicts with the same keys) as CSV through a temporary file and a rename."""
    with atomic_write(path) as tmp, open(tmp, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
