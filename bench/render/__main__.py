"""`python bench/render [page ...]`: rebuild the pages under docs/results/ from their JSON."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]  # bench/: common and this package

from render import choice, performance, study, tuning  # noqa: E402

PAGES = {
    "performance": performance.render,
    "levers": lambda: study.render("levers"),
    "ablation": lambda: study.render("fast"),
    "tuning": tuning.render,
    "choice": choice.render,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pages", nargs="*", help=f"of {', '.join(PAGES)} (default: every page)")
    pages = parser.parse_args().pages or list(PAGES)
    if unknown := sorted(set(pages) - set(PAGES)):
        parser.error(f"unknown pages {unknown}: {', '.join(PAGES)}")
    for page in pages:
        print(f"wrote {PAGES[page]()}")


if __name__ == "__main__":
    main()
