#!/usr/bin/env python3
"""Recover a Lifeboat files snapshot with nothing but the stock `age` and `zstd` tools (and
`b3sum`, if installed, to verify names and ids), following docs/FORMAT.md step by step. It
uses no Lifeboat code: it is the document's recipe, made runnable, and the test
`stock_tools_recover_a_snapshot_exactly_following_format_md` checks that it gives back the
source exactly.

    recover.py REPO IDENTITY OUT [SNAPSHOT-ID-OR-PREFIX]

REPO is a local repository directory (or a local copy of a bucket prefix), IDENTITY an age
identity file that one of its keys/ objects is encrypted to, OUT an empty directory. Without a
snapshot id the latest snapshot (by its `time`) is recovered. Run as root to restore owners and
trusted./security. attributes.
"""

import base64
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile

CHUNK_ID_CONTEXT = "lifeboat 2026-11 chunk id key v1"
BLOCK = 4096
# Node types made with mknod, and their file-type bits.
SPECIAL = {"fifo": stat.S_IFIFO, "socket": stat.S_IFSOCK, "chardev": stat.S_IFCHR, "blockdev": stat.S_IFBLK}


def fail(message):
    sys.exit(f"recover.py: {message}")


def run(cmd, data=None):
    """Runs a tool; returns its stdout, or None when it fails."""
    done = subprocess.run(cmd, input=data, capture_output=True, check=False)
    return done.stdout if done.returncode == 0 else None


def age_decrypt(identity, path):
    out = run(["age", "-d", "-i", identity, path])
    if out is None:
        fail(f"age cannot decrypt {path} with {identity}")
    return out


def zstd_decompress(data):
    out = run(["zstd", "-d", "-c", "-q"], data)
    if out is None:
        fail("zstd -d failed")
    return out


HAVE_B3SUM = shutil.which("b3sum") is not None


def b3sum(data, *flags):
    """BLAKE3 of data as hex (b3sum reads a key from stdin for --keyed, so data goes via a file)."""
    with tempfile.NamedTemporaryFile() as f:
        f.write(data)
        f.flush()
        return run(["b3sum", "--no-names", *flags, f.name]).decode().strip()


def keyed_b3sum(key, data):
    with tempfile.NamedTemporaryFile() as f:
        f.write(data)
        f.flush()
        return run(["b3sum", "--no-names", "--keyed", f.name], key).decode().strip()


def time_key(t):
    """Snapshot times are RFC 3339 in UTC with 0 to 9 fractional digits: compare the whole
    seconds, then the fraction padded to nanoseconds."""
    whole, _, fraction = t.rstrip("Z").partition(".")
    return (whole, fraction.ljust(9, "0"))


def main():
    if len(sys.argv) not in (4, 5):
        fail("usage: recover.py REPO IDENTITY OUT [SNAPSHOT-ID-OR-PREFIX]")
    repo, identity, out = sys.argv[1], sys.argv[2], sys.argv[3]
    wanted = sys.argv[4] if len(sys.argv) == 5 else None
    work = tempfile.mkdtemp(prefix="lifeboat-recover-")
    os.chmod(work, 0o700)

    # 0. The config is plaintext JSON.
    config = json.load(open(os.path.join(repo, "config")))
    if config.get("format") != "lifeboat-repository" or config.get("version") not in (1, 2):
        fail(f"not a repository of format 1 or 2: {config.get('format')} {config.get('version')}")

    # 1. Unwrap the repository key: age takes one input, so try each keys/ object in turn.
    repo_key = os.path.join(work, "repo.key")
    for name in sorted(os.listdir(os.path.join(repo, "keys"))):
        text = run(["age", "-d", "-i", identity, os.path.join(repo, "keys", name)])
        if text is not None:
            with open(repo_key, "wb") as f:
                f.write(text)
            break
    else:
        fail(f"no keys/ object of {repo} opens with {identity}")
    secret = next(l for l in text.decode().splitlines() if l.startswith("AGE-SECRET-KEY-1"))
    chunk_key = None
    if HAVE_B3SUM:
        # The blob-id key: BLAKE3 derive_key(context, the AGE-SECRET-KEY-1... line's bytes).
        chunk_key = run(["b3sum", "--derive-key", CHUNK_ID_CONTEXT, "--raw"], secret.encode())

    # 2. Every index file: age, zstd, JSON. Its name is the BLAKE3 of its encrypted bytes.
    where = {}
    for name in os.listdir(os.path.join(repo, "index")):
        path = os.path.join(repo, "index", name)
        if HAVE_B3SUM and b3sum(open(path, "rb").read()) != name:
            fail(f"index/{name} is damaged: its BLAKE3 is not its name")
        for pack in json.loads(zstd_decompress(age_decrypt(repo_key, path)))["packs"]:
            for blob in pack["blobs"]:
                where[blob["id"]] = (pack["id"], blob["offset"], blob["length"], blob["raw_length"])

    # 3. The snapshot: named by a random id (nothing to verify but age's authentication).
    snapshots = {}
    for name in os.listdir(os.path.join(repo, "snapshots")):
        if wanted is None or name.startswith(wanted):
            snapshots[name] = json.loads(zstd_decompress(age_decrypt(repo_key, os.path.join(repo, "snapshots", name))))
    if not snapshots:
        fail(f"no snapshot {wanted or ''} in {repo}")
    if wanted is not None and len(snapshots) > 1:
        fail(f"snapshot prefix {wanted} matches {len(snapshots)} snapshots")
    snap_id = max(snapshots, key=lambda s: time_key(snapshots[s]["time"]))
    snap = snapshots[snap_id]

    # 4. A blob: decrypt its pack (named by the BLAKE3 of its encrypted bytes), cut out its
    # zstd frame, decompress; its id is the keyed BLAKE3 of what comes out.
    packs = {}

    def blob(blob_id):
        pack, offset, length, raw_length = where[blob_id]
        if pack not in packs:
            path = os.path.join(repo, "data", pack[:2], pack)
            if HAVE_B3SUM and b3sum(open(path, "rb").read()) != pack:
                fail(f"pack {pack} is damaged: its BLAKE3 is not its name")
            packs.clear()  # one pack in memory at a time
            packs[pack] = age_decrypt(repo_key, path)
        data = zstd_decompress(packs[pack][offset:offset + length])
        if len(data) != raw_length or (chunk_key and keyed_b3sum(chunk_key, data) != blob_id):
            fail(f"blob {blob_id} is damaged")
        return data

    # 5. The tree: its blobs concatenated are JSON lines, one node each.
    listing = b"".join(blob(b) for b in snap["tree"])
    nodes = [json.loads(line) for line in listing.split(b"\n") if line]

    def raw(node, field):
        if field + "_raw" in node:
            return base64.b64decode(node[field + "_raw"])
        return node[field].encode() if field in node else None

    def place(node):
        path = raw(node, "path")
        parts = path.split(b"/")
        if path.startswith(b"/") or any(p in (b"", b".", b"..") for p in parts) or b"\0" in path:
            fail(f"unsafe path {path!r} in the tree")
        return os.path.join(os.fsencode(out), path)

    as_root = os.geteuid() == 0
    first_name = {}
    incomplete = []
    done = []
    for node in nodes:
        path = place(node)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if node["type"] == "dir":
            os.makedirs(path, mode=0o700, exist_ok=True)
            done.append((node, path))
            continue
        if node["type"] == "symlink":
            os.symlink(raw(node, "target"), path)
            done.append((node, path))
            continue
        inode = (node.get("dev", 0), node["inode"], node["type"])
        if node.get("nlink", 0) > 1 and inode in first_name:
            os.link(first_name[inode], path)  # another name of a file (or FIFO…) already made
            continue
        if node["type"] in SPECIAL:
            # FIFOs, sockets and device nodes: no content. Device nodes need root: without,
            # each is named and left out, and the recovery ends unsuccessful.
            try:
                os.mknod(path, 0o600 | SPECIAL[node["type"]], node.get("rdev", 0))
            except PermissionError as e:
                print(f"not recovered: {path!r}: {e} (device nodes need root)", file=sys.stderr)
                incomplete.append(path)
                continue
            first_name[inode] = path
            done.append((node, path))
            continue
        first_name[inode] = path
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
        os.ftruncate(fd, node["size"])
        at = 0
        for chunk in node.get("chunks", []):  # empty files have no "chunks"
            data = blob(chunk)
            # Blocks of zeros are not written: the file is already that long, so they stay
            # holes and a sparse file stays sparse.
            start = 0
            while start < len(data):
                end = min(len(data), (at + start) // BLOCK * BLOCK + BLOCK - at)
                if data[start:end].count(0) != end - start:
                    os.pwrite(fd, data[start:end], at + start)
                start = end
            at += len(data)
        os.close(fd)
        done.append((node, path))

    # 6. Metadata: owner first (chown clears set-id bits), then extended attributes, then the
    # mode, then the times; directories last, deepest first.
    def metadata(node, path):
        link = node["type"] == "symlink"
        if as_root:
            os.chown(path, node["uid"], node["gid"], follow_symlinks=False)
        for x in node.get("xattrs", []):
            if as_root or not x["name"].startswith(("trusted.", "security.")):
                os.setxattr(path, x["name"], base64.b64decode(x["value"]), follow_symlinks=False)
        if not link:
            os.chmod(path, node["mode"])
        os.utime(path, ns=(node["mtime_ns"], node["mtime_ns"]), follow_symlinks=False)

    for node, path in done:
        if node["type"] != "dir":
            metadata(node, path)
    dirs = [(node, path) for node, path in done if node["type"] == "dir"]
    for node, path in sorted(dirs, key=lambda d: -d[1].count(b"/")):
        metadata(node, path)

    shutil.rmtree(work)
    if incomplete:
        fail(f"recovered snapshot {snap_id} into {out} but for {len(incomplete)} device node(s) named above")
    print(f"recovered snapshot {snap_id}: {len(nodes)} entries into {out}")


if __name__ == "__main__":
    main()
