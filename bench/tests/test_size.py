"""Checks the bench kit's Python size by issue 23's counting rule, so the kit cannot grow back unseen.

The rule (bench/README.md, *Layout*): every `*.py` under bench/ outside bench/tests/ and the
virtualenvs, plus every extension-less file under bench/ (outside results/) whose first line is a
python shebang, counted as `wc -l` counts (newlines). CEILING is the count when this file last
changed (issue 23's third cut brought it to 4,977, run16's /hit and HTTPS rows to 4,999, and
bench/api's wrk CPU column, made in fewer lines, to 4,998); lower it with each cut, never raise it
without a reason, and never past LIMIT (issue 23's 5,000).

    python3 bench/tests/test_size.py
"""
import os
import unittest
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
CEILING = 4_998
LIMIT = 5_000
SKIP = {"tests", "results", ".venv", ".venv-eventlet", ".tools"}


def counted_files(root: Path = BENCH) -> list[Path]:
    out = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not (Path(folder) == root and d in SKIP) and not d.startswith(".venv")]
        for name in files:
            path = Path(folder) / name
            if path.is_symlink():
                continue
            if name.endswith(".py"):
                out.append(path)
            elif "." not in name:
                with open(path, "rb") as f:
                    first = f.readline()
                if first.startswith(b"#!") and b"python" in first:
                    out.append(path)
    return sorted(out)


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n")


class SizeTest(unittest.TestCase):
    def test_the_rule_sees_every_tool(self):
        names = {str(p.relative_to(BENCH)) for p in counted_files()}
        for tool in ("run", "compare", "hostile", "syscalls", "tail", "api", "device/run16",
                     "kit/session.py", "gunicorn/app.py"):
            self.assertIn(tool, names)
        self.assertFalse([n for n in names if n.startswith(("tests/", "results/"))])

    def test_at_most_the_ceiling(self):
        files = counted_files()
        total = sum(lines(p) for p in files)
        print(f"\nbench kit Python: {total} lines in {len(files)} files (ceiling {CEILING}, target 5,000)")
        self.assertLessEqual(total, CEILING, "the bench kit grew: cut elsewhere, or say why in CEILING's commit")
        self.assertLessEqual(CEILING, LIMIT, "issue 23 caps the kit at 5,000 lines: cut before adding")


if __name__ == "__main__":
    unittest.main()
