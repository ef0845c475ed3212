"""Merge a partial reference file (``make_reference.R`` run with ``REF_CASES``) into the committed one.

Run from the repository root::

    REF_CASES=case1,case2 REF_OUT=/tmp/part.json Rscript tests/reference/make_reference.R
    python tests/reference/merge_reference.py /tmp/part.json

or, for ``make_reference_families.R`` (``FAM_CASES``, ``FAM_OUT``), into ``families_reference.json``::

    python tests/reference/merge_reference.py /tmp/part.json tests/reference/families_reference.json

The entries of the cases in the partial file replace (or are appended to) those of
``tests/reference/lme4_reference.json``; every other entry is kept byte for byte, so cases whose R fit
is not reproducible to the last digit (grouseticks_nested_crossed: bobyqa's stopping point depends
on the R session) keep their committed numbers. ``_meta`` gets ``generated_hard_cases``: the time
of the partial run.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

TARGET = Path(__file__).parent / "lme4_reference.json"


def blocks(text: str) -> dict[str, str]:
    """Top-level entries of a pretty-printed (jsonlite) JSON object, as text, in order."""
    lines = text.rstrip("\n").split("\n")
    assert lines[0] == "{" and lines[-1] == "}"
    starts = [i for i, line in enumerate(lines) if re.match(r'^  "[^"]+": ', line)]
    out = {}
    for j, i in enumerate(starts):
        end = starts[j + 1] if j + 1 < len(starts) else len(lines) - 1
        key = re.match(r'^  "([^"]+)"', lines[i]).group(1)
        out[key] = "\n".join(lines[i:end]).rstrip().rstrip(",")
    return out


def main(part_path: str, target: Path = TARGET) -> None:
    old_text, part_text = target.read_text(), Path(part_path).read_text()
    old, part = blocks(old_text), blocks(part_text)
    part_meta = json.loads(part_text)["_meta"]
    meta = json.loads(old_text)["_meta"]
    for k in ("R", "lme4", "glmmTMB"):
        if meta[k] != part_meta[k]:
            sys.exit(f"{k} differs: {meta[k]} (committed) vs {part_meta[k]} (partial run)")
    meta["generated_hard_cases"] = part_meta["generated"]
    merged = {}
    merged["_meta"] = '  "_meta": ' + json.dumps(meta, indent=2).replace("\n", "\n  ")
    for key, text in old.items():
        if key != "_meta":
            merged[key] = part.get(key, text)
    for key, text in part.items():
        if key not in merged:
            merged[key] = text
    out = "{\n" + ",\n".join(merged.values()) + "\n}\n"
    check = json.loads(out)
    assert set(check) == set(json.loads(old_text)) | set(json.loads(part_text))
    target.write_text(out)
    print(f"merged {len(part) - 1} entries into {target}")


if __name__ == "__main__":
    main(sys.argv[1], *(Path(a) for a in sys.argv[2:3]))
