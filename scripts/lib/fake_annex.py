#!/usr/bin/env python3
"""Write a `git fast-import` stream that adds many annexed files to a git-annex repository
without their content: one commit on master with a symlink per file (pointing into
.git/annex/objects the way `git annex add` makes it), and one commit on the git-annex
branch with each key's location log (the key present in 0-3 of the given repositories; a
key present nowhere has a log recording where it was dropped).

Used by scripts/bench-placement to make a 100k-key repository in seconds; git-annex itself
(`fromkey --batch`, `setpresentkey --batch`) takes minutes for that many keys. The logs are
written in git-annex's own format (`T 1 UUID`, one line per repository, in UUID order) at
the paths git-annex uses (hashdirlower/keyFile.log); scripts/bench-placement checks that
git-annex reads them back (its repository sizes must equal ours).

usage: fake_annex.py --keys N --uuids U1,U2,... [--seed S] [--time T] > stream
Also writes "KEY FILE" lines (one per file) to --list PATH if given.
"""
import argparse
import hashlib
import random
import sys

ALPHABET = "0123456789zqjxkmvwgpfZQJXKMVWGPF"


def hash_dir_lower(key: bytes) -> str:
    h = hashlib.md5(key).hexdigest()
    return f"{h[0:3]}/{h[3:6]}/"


def hash_dir_mixed(key: bytes) -> str:
    d = hashlib.md5(key).digest()
    w = int.from_bytes(d[0:4], "little")
    c = lambda x: ALPHABET[(w >> (6 * x)) & 31]
    return f"{c(1)}{c(0)}/{c(3)}{c(2)}/"


def key_file(key: str) -> str:
    return key.replace("&", "&a").replace("%", "&s").replace(":", "&c").replace("/", "%")


DIRS = ["archive", "public", "music", "docs", "data", "deep/a/b", "photos/2024", ""]
EXTS = [".mp3", ".txt", ".bin", ".jpg", ".dat", ""]


def make_keys(n, rng):
    for i in range(n):
        # Sizes from 0 bytes to ~100 MB, log-uniform-ish.
        size = int(10 ** rng.uniform(0, 8)) if rng.random() > 0.02 else 0
        ext = rng.choice(EXTS)
        digest = hashlib.sha256(f"{i}-{rng.random()}".encode()).hexdigest()
        kind = rng.random()
        if kind < 0.8:
            key = f"SHA256E-s{size}--{digest}{ext}"
        elif kind < 0.9:
            key = f"MD5E-s{size}--{digest[:32]}{ext}"
        else:
            key = f"WORM-s{size}-m1700000000--name{i}{ext}"
        # Many directories of ~100 files (fast-import slows down on huge directories).
        d = rng.choice(DIRS)
        sub = f"{d}/{i % 97:02d}" if d else f"{i % 89:02d}"
        name = f"{sub}/f{i}{ext}"
        yield key, name


def data(out, payload: bytes):
    out.write(b"data %d\n" % len(payload))
    out.write(payload)
    out.write(b"\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, required=True)
    ap.add_argument("--uuids", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--time", type=int, default=1700000000)
    ap.add_argument("--max-copies", type=int, default=3)
    ap.add_argument("--list")
    a = ap.parse_args()
    uuids = sorted(a.uuids.split(","))
    rng = random.Random(a.seed)
    keys = list(make_keys(a.keys, rng))
    out = sys.stdout.buffer
    listing = open(a.list, "w") if a.list else None

    # master: one symlink per file.
    out.write(b"commit refs/heads/master\n")
    out.write(b"committer bench <bench@annexgate.invalid> %d +0000\n" % a.time)
    data(out, b"files")
    out.write(b"from refs/heads/master^0\n")
    for key, name in keys:
        depth = name.count("/")
        kf = key_file(key)
        target = "../" * depth + f".git/annex/objects/{hash_dir_mixed(key.encode())}{kf}/{kf}"
        out.write(b"M 120000 inline " + name.encode() + b"\n")
        data(out, target.encode())
        if listing:
            listing.write(f"{key} {name}\n")
    out.write(b"\n")

    # git-annex: one location log per key.
    out.write(b"commit refs/heads/git-annex\n")
    out.write(b"committer bench <bench@annexgate.invalid> %d +0000\n" % a.time)
    data(out, b"location logs")
    out.write(b"from refs/heads/git-annex^0\n")
    for i, (key, _name) in enumerate(keys):
        copies = rng.randint(0, a.max_copies)
        holders = sorted(rng.sample(uuids, min(copies, len(uuids))))
        ts = f"{a.time + i // 1000}.{i % 1000:09d}s"
        if holders:
            log = "".join(f"{ts} 1 {u}\n" for u in holders)
        else:
            # Every key gets a log: one with no copies left says where it was dropped.
            log = f"{ts} 0 {rng.choice(uuids)}\n"
        path = hash_dir_lower(key.encode()) + key_file(key) + ".log"
        out.write(b"M 100644 inline " + path.encode() + b"\n")
        data(out, log.encode())
    out.write(b"\n")
    if listing:
        listing.close()


if __name__ == "__main__":
    main()
