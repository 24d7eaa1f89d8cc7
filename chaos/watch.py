"""`KeyWatcher`: samples the artifact folder while a round runs, to catch what the end
state cannot show — a published key that two attempts wrote.

A published file must never change: once a key is seen, it keeps the same file
(inode, size, mtime) until it is deleted, and a deleted key never comes back. A key
seen with another file, or seen again after it was gone, was published twice (keys
repeated across attempts). Sampling can miss a short-lived overwrite; the end-state
check of sizes and checksums catches the rest."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

PARTIAL_DIR = ".partial"


def published_files(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every file under `root` outside `.partial/`, by key: (inode, size, mtime_ns)."""
    found: dict[str, tuple[int, int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root:
            dirnames[:] = [d for d in dirnames if d != PARTIAL_DIR]
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            key = os.path.relpath(path, root).replace(os.sep, "/")
            found[key] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return found


@dataclass
class KeyWatcher:
    root: Path
    interval: float = 0.5
    seen: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    republished: dict[str, str] = field(default_factory=dict)
    """Key → what was seen ("replaced" or "back after deletion")."""
    deleted: int = 0
    samples: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="chaos-keys", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        now = published_files(self.root)
        self.samples += 1
        for key, ident in now.items():
            before = self.seen.get(key)
            if key in self.gone:
                self.republished.setdefault(key, "back after deletion")
                self.gone.discard(key)
            elif before is not None and before != ident:
                self.republished.setdefault(key, "replaced by another file")
            self.seen[key] = ident
        for key in set(self.seen) - set(now) - self.gone:
            self.gone.add(key)
            self.deleted += 1
