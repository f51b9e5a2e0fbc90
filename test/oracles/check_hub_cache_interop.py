#!/usr/bin/env python3
"""Checks that bertkit and Python's huggingface_hub share one cache.

    npx tsc -p tsconfig.json          # builds dist/, including the fake Hub
    pip install huggingface_hub
    python3 test/oracles/check_hub_cache_interop.py              # round trip (below)
    python3 test/oracles/check_hub_cache_interop.py --cache DIR  # check an existing cache

Round trip, all on 127.0.0.1 (the fake Hub of test/fixtures/hub/server.ts
serves the fixture repos bertkit-test/tiny-bert and, as a dataset,
bertkit-test/tiny-tomatoes):

1. bertkit downloads every file into cache A.
2. huggingface_hub reads each of them from cache A with
   hf_hub_download(..., local_files_only=True), try_to_load_from_cache and
   snapshot_download(local_files_only=True); scan_cache_dir must list the
   repos with no warnings.
3. huggingface_hub downloads the same files from the fake Hub into cache B;
   the two caches must have the same blobs, links and refs.
4. bertkit reads every file from cache B offline.

With --cache DIR, step 2 runs on DIR for every ref and snapshot file found.
Exit status 0 when everything matched.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

from huggingface_hub import hf_hub_download, scan_cache_dir, snapshot_download, try_to_load_from_cache
from huggingface_hub import __version__ as hf_version

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SERVER = os.path.join(ROOT, "dist", "test", "fixtures", "hub", "server.js")

failures = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)


def tree(cache):
    """Relative path -> ("link", target) | ("file", size) for everything in a cache, minus lock files."""
    out = {}
    for base, dirs, files in os.walk(cache):
        dirs[:] = [d for d in dirs if d != ".locks"]
        for name in dirs + files:
            p = os.path.join(base, name)
            rel = os.path.relpath(p, cache)
            if os.path.islink(p):
                out[rel] = ("link", os.readlink(p))
            elif os.path.isfile(p):
                out[rel] = ("file", os.path.getsize(p))
    return out


def read_side(cache, entries):
    """huggingface_hub reads what bertkit cached."""
    for e in entries:
        kind, repo, name, ours = e["repoType"], e["repoId"], e["filename"], e["path"]
        label = f"{kind} {repo} {name}"
        try:
            path = hf_hub_download(repo, name, repo_type=kind, cache_dir=cache, local_files_only=True)
        except Exception as err:  # noqa: BLE001 - report any failure by name
            check(False, f"hf_hub_download(local_files_only=True) {label}: {type(err).__name__}: {err}")
            continue
        check(os.path.abspath(path) == os.path.abspath(ours), f"hf_hub_download(local_files_only=True) {label} -> same path")
        with open(path, "rb") as f, open(ours, "rb") as g:
            check(f.read() == g.read(), f"same bytes {label}")
        cached = try_to_load_from_cache(repo, name, cache_dir=cache, repo_type=kind)
        check(isinstance(cached, str) and os.path.abspath(cached) == os.path.abspath(ours), f"try_to_load_from_cache {label}")


def scan(cache):
    info = scan_cache_dir(cache)
    check(not info.warnings, f"scan_cache_dir: no warnings ({[str(w) for w in info.warnings]})")
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        refs = sorted(ref for rev in repo.revisions for ref in rev.refs)
        print(f"      {repo.repo_type} {repo.repo_id}: {repo.nb_files} files, {repo.size_on_disk} bytes, refs {refs}")
    return info


def existing_cache(cache):
    entries = []
    for folder in sorted(os.listdir(cache)):
        if "--" not in folder:
            continue
        kind, _, rest = folder.partition("--")
        repo_type = {"models": "model", "datasets": "dataset"}.get(kind)
        if not repo_type:
            continue
        repo_id = rest.replace("--", "/")
        refs_dir = os.path.join(cache, folder, "refs")
        for base, _, files in os.walk(refs_dir):
            for ref_file in files:
                revision = os.path.relpath(os.path.join(base, ref_file), refs_dir).replace(os.sep, "/")
                commit = open(os.path.join(base, ref_file)).read()
                snap = os.path.join(cache, folder, "snapshots", commit)
                for sbase, _, sfiles in os.walk(snap):
                    for name in sfiles:
                        rel = os.path.relpath(os.path.join(sbase, name), snap).replace(os.sep, "/")
                        label = f"{repo_type} {repo_id}@{revision} {rel}"
                        try:
                            path = hf_hub_download(repo_id, rel, repo_type=repo_type, revision=revision, cache_dir=cache, local_files_only=True)
                            check(os.path.realpath(path) == os.path.realpath(os.path.join(sbase, name)), f"hf_hub_download(local_files_only=True) {label}")
                        except Exception as err:  # noqa: BLE001
                            check(False, f"{label}: {type(err).__name__}: {err}")
                        entries.append(label)
    check(len(entries) > 0, f"found {len(entries)} cached files in {cache}")
    scan(cache)


def round_trip():
    if not os.path.exists(SERVER):
        sys.exit(f"{SERVER} is missing: run `npx tsc -p tsconfig.json` first")
    work = tempfile.mkdtemp(prefix="bertkit-interop-")
    cache_a, cache_b = os.path.join(work, "bertkit-cache"), os.path.join(work, "python-cache")
    proc = subprocess.Popen(["node", SERVER, cache_a], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        first = json.loads(proc.stdout.readline())
        endpoint, entries = first["endpoint"], first["files"]
        print(f"huggingface_hub {hf_version}; fake Hub at {endpoint}; bertkit filled {cache_a} with {len(entries)} files")

        print("-- huggingface_hub reads bertkit's cache")
        read_side(cache_a, entries)
        snap = snapshot_download("bertkit-test/tiny-bert", cache_dir=cache_a, local_files_only=True)
        check(os.path.abspath(snap) == os.path.abspath(first["snapshot"]), "snapshot_download(local_files_only=True) -> bertkit's snapshot folder")
        scan(cache_a)

        print("-- huggingface_hub downloads from the fake Hub; both caches must match")
        for e in entries:
            hf_hub_download(e["repoId"], e["filename"], repo_type=e["repoType"], cache_dir=cache_b, endpoint=endpoint, token=False)
        ta, tb = tree(cache_a), tree(cache_b)
        # Each client writes its own words into the cache tag: compare its presence only.
        check("CACHEDIR.TAG" in ta and "CACHEDIR.TAG" in tb, "both caches carry CACHEDIR.TAG")
        ta.pop("CACHEDIR.TAG", None)
        tb.pop("CACHEDIR.TAG", None)
        only_a = sorted(set(ta) - set(tb))
        only_b = sorted(set(tb) - set(ta))
        check(not only_a, f"nothing only in bertkit's cache {only_a}")
        check(not only_b, f"nothing only in Python's cache {only_b}")
        differ = sorted(p for p in set(ta) & set(tb) if ta[p] != tb[p])
        check(not differ, f"same links, blob sizes and refs {[(p, ta[p], tb[p]) for p in differ]}")

        print("-- bertkit reads Python's cache offline")
        proc.stdin.write(f"read {cache_b}\n")
        proc.stdin.flush()
        answer = json.loads(proc.stdout.readline())
        for r in answer["results"]:
            check(r["ok"], f"bertkit offline {r['repoId']} {r['filename']}: {r['detail']}")
        proc.stdin.write("quit\n")
        proc.stdin.flush()
    finally:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", help="check an existing cache filled by bertkit instead of the round trip")
    args = ap.parse_args()
    if args.cache:
        existing_cache(args.cache)
    else:
        round_trip()
    print(f"{'FAILED: ' + str(len(failures)) + ' checks' if failures else 'all checks passed'}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
