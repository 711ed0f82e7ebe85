"""Files of the data folder that only their owner may read (the generated secret key, the
embedded Redis's password in its config and URL), written so that no process ever reads one
half written: web, worker, beat and a person's `manage.py` commands start side by side."""

import os
import secrets
from pathlib import Path


def private_file_write(path: Path, text: str, *, unless_present: bool = False) -> None:
    """Put `text` at `path`, readable by its owner alone. The text goes into a draft of this
    process's own, synced, then into place in one step: a reader finds the old file or the new
    one, whole, never an empty or partial one (a touch then a write let a process starting
    meanwhile read an empty secret key).

    `unless_present`: leave a file already there as it is, so of several processes writing at
    once the first wins and every one reads the same text (a link fails when the name exists);
    otherwise the new text replaces the old."""
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        if not unless_present:
            os.replace(draft, path)
            return
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # another process's is in place: that one is everyone's
    finally:
        draft.unlink(missing_ok=True)
