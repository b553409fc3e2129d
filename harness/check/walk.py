"""Which files a fleet check covers: folders walked, globs applied, symlinks kept in the tree, shards.

`walk` lists every file under the given paths, in a stable order, as
`FleetFile`: the name the fleet gives it (`FleetFile.file`, the key of its
line), and what the walk already knows about it. It never opens a file and
never follows a symlink out of the tree it was given:

- a symlink to a file inside the tree is checked under its own name; one
  that points outside (or dangles) is listed with `FleetFile.skip` saying
  why, and its target is never read;
- a symlink to a folder is not descended into (its files, if they are in
  the tree, are walked under their real names);
- anything that is not a regular file (a FIFO would block a reader
  forever; a device never ends) is listed with `skip` and not opened.

Globs (`--include`, `--exclude`) match the path below its root, ``/``-separated:
``*`` and ``?`` stay within one folder name, ``**`` spans folders, and a
pattern without ``/`` matches the file's name at any depth (``*.pt``). A
folder that an exclude matches (``build``, ``**/cache``) is not entered.

`in_shard` splits a fleet across CI jobs by a digest of `FleetFile.file`,
so every job agrees on which job takes which file without talking.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from harness.runtime.errors import InputError

__all__ = ["DEFAULT_EXCLUDES", "FleetFile", "glob_regex", "in_shard", "parse_shard", "walk"]

#: Folders a fleet never enters unless an --include names them: version
#: control and caches hold no checkpoints, only thousands of small files.
DEFAULT_EXCLUDES = (".git", ".hg", ".svn", "__pycache__")


@dataclass(frozen=True)
class FleetFile:
    """One file the walk found.

    `file`: its name in the fleet (root as given + ``/`` + the path below it;
    the root itself for a file given directly). `path`: where to read it.
    `skip`: why it must not be opened (a symlink out of the tree, not a
    regular file), or "" when it is to be checked.
    """

    file: str
    root: str
    path: str
    skip: str = ""


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A compiled regex for one ``--include``/``--exclude`` glob, matched against the path below the root."""
    if not pattern or pattern.startswith("/"):
        msg = f"glob {pattern!r}: give a pattern relative to the folder (e.g. '*.pt' or 'runs/**/*.ckpt')"
        raise InputError(msg)
    text = pattern.rstrip("/")
    if "/" not in text:
        text = "**/" + text
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if text.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif text.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = text.find("]", i + 1)
            if end < 0:
                msg = f"glob {pattern!r}: '[' without ']'"
                raise InputError(msg)
            body = text[i + 1:end]
            negate = body.startswith("!")
            body = (body[1:] if negate else body).replace("\\", "\\\\").replace("^", "\\^").replace("[", "\\[")
            out.append("[" + ("^" if negate else "") + body + "]")
            i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out) + r"\Z")


def parse_shard(text: str) -> tuple[int, int]:
    """``I/N`` (1-based) as ``(I, N)``; InputError unless 1 <= I <= N."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        msg = f"--shard {text!r}: give I/N with 1 <= I <= N, e.g. --shard 2/4"
        raise InputError(msg)
    return int(m.group(1)), int(m.group(2))


def in_shard(file: str, shard: tuple[int, int]) -> bool:
    """Whether `file` (a `FleetFile.file`) falls in shard ``I/N``: stable on every machine and Python."""
    index, count = shard
    if count == 1:
        return True
    digest = hashlib.sha256(file.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % count == index - 1


def _matches(patterns: Sequence[re.Pattern[str]], rel: str) -> bool:
    return any(p.match(rel) for p in patterns)


def _inside(target: str, tree: str) -> bool:
    return target == tree or target.startswith(tree.rstrip(os.sep) + os.sep)


def _join(root: str, rel: str) -> str:
    return f"{root.rstrip('/')}/{rel}" if root not in ("", ".") else rel


def _classify(path: str, tree: str) -> str:
    """Why `path` must not be opened ("" when it is a regular file in the tree)."""
    try:
        link = os.lstat(path)
    except OSError as e:  # gone between the listing and now
        return f"it cannot be read ({e.strerror or e})"
    if stat.S_ISLNK(link.st_mode):
        target = os.path.realpath(path)
        if not _inside(target, tree):
            return "a symlink out of the tree, not followed"
        if not os.path.exists(target):
            return "a dangling symlink"
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        return f"it cannot be read ({e.strerror or e})"
    if stat.S_ISDIR(mode):
        return "a folder that cannot be listed"
    if not stat.S_ISREG(mode):
        return "not a regular file (a pipe, socket or device is never read)"
    return ""


def walk(
    paths: Sequence[str], include: Sequence[str] = (), exclude: Sequence[str] = (), *,
    shard: tuple[int, int] = (1, 1),
) -> Iterator[FleetFile]:
    """Every file under `paths` that the globs admit and the shard takes, sorted within each path.

    A path that does not exist is an InputError (one line naming every
    missing path), raised before anything is listed.
    """
    missing = [p for p in paths if not os.path.lexists(p)]
    if missing:
        msg = "no such file or folder: " + ", ".join(missing)
        raise InputError(msg)
    includes = [glob_regex(g) for g in include]
    excludes = [glob_regex(g) for g in exclude]
    named = {part for g in include for part in g.split("/")}  # an --include that names .git walks it
    defaults = [glob_regex(g) for g in DEFAULT_EXCLUDES if g not in named]
    seen: set[str] = set()
    for given in paths:
        root = given.rstrip("/") or "/"
        if not os.path.isdir(root) or os.path.islink(root):
            if root not in seen:
                seen.add(root)
                tree = os.path.realpath(os.path.dirname(os.path.abspath(root)) or "/")
                candidate = FleetFile(root, root, root, _classify(root, tree))
                if in_shard(candidate.file, shard):
                    yield candidate
            continue
        tree = os.path.realpath(root)
        for found in _walk_tree(root, tree, includes, excludes, defaults):
            file = _join(root, found)
            if file in seen or not in_shard(file, shard):
                continue
            seen.add(file)
            path = os.path.join(root, found)
            yield FleetFile(file, root, path, _classify(path, tree))


def _walk_tree(
    root: str, tree: str, includes: Sequence[re.Pattern[str]], excludes: Sequence[re.Pattern[str]],
    defaults: Sequence[re.Pattern[str]],
) -> Iterator[str]:
    """Relative paths of the files below `root` the globs admit, depth first, sorted."""
    stack: list[str] = [""]
    while stack:
        rel_dir = stack.pop()
        folder = os.path.join(root, rel_dir) if rel_dir else root
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            if not rel_dir:
                msg = f"{root}: cannot list it ({e.strerror or e})"
                raise InputError(msg) from None
            yield rel_dir  # listed, so that the run reports the folder it could not read
            continue
        subdirs: list[str] = []
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if is_dir:
                if not (_matches(excludes, rel) or _matches(defaults, rel)):
                    subdirs.append(rel)
                continue
            if entry.is_symlink() and _link_to_dir(entry.path, tree):
                continue  # a folder link: its files inside the tree are walked by their real names
            if includes and not _matches(includes, rel):
                continue
            if _matches(excludes, rel):
                continue
            yield rel
        stack.extend(reversed(subdirs))


def _link_to_dir(path: str, tree: str) -> bool:
    target = os.path.realpath(path)
    return os.path.isdir(target) and _inside(target, tree)
