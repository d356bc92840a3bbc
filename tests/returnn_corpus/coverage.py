"""How much of the RETURNN corpus netcompiler runs: one line per network,
`name  OK|FAIL(stage)  first error`, and a final `N of M corpus networks run (and K give
their expected error)`.

    python -m tests.returnn_corpus.coverage [-v] [NAME ...]
    python tests/returnn_corpus/coverage.py [-v] [NAME ...]

`-v` also prints every validation error of a failing network (indented).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

try:
    from .harness import CorpusFailure, corpus_files, run_network
except ImportError:  # run as a script
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from harness import CorpusFailure, corpus_files, run_network


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in args
    names = [a for a in args if a != "-v"]
    files = [p for p in corpus_files() if not names or p.stem in names]
    width = max((len(p.stem) for p in files), default=0)
    n_ok = n_expected = 0
    for path in files:
        try:
            result = run_network(path)
        except CorpusFailure as exc:
            print(f"{path.stem:<{width}}  FAIL({exc.stage})  {exc.message}", flush=True)
            if verbose:
                for line in exc.details[1:]:
                    print(f"{'':<{width}}      {line}")
            continue
        except Exception as exc:  # a harness bug: still report, keep going
            print(f"{path.stem:<{width}}  FAIL(harness)  {type(exc).__name__}: {exc}", flush=True)
            continue
        if result["status"] == "ok":
            n_ok += 1
        else:
            n_expected += 1
        extra = "" if result["status"] == "ok" else f"  ({result['status']})"
        print(f"{path.stem:<{width}}  OK{extra}", flush=True)
    print(
        f"{n_ok} of {len(files)} corpus networks run"
        + (f" (and {n_expected} give their expected error)" if n_expected else "")
    )
    return 0 if n_ok == len(files) else 1


if __name__ == "__main__":
    sys.exit(main())
