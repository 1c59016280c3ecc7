"""``fastddpg plot``: the Plotly report of one or more run directories."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from .options import check_out_file


def add_parser(sub: Any) -> None:
    """``fastddpg plot RUN_DIR... [--out HTML] [--plotly-cdn]``."""
    plot = sub.add_parser("plot", help="write the Plotly report of one or more runs",
                          description="Regenerate report.html from run directories; several runs are overlaid "
                          "and labelled by directory name.")
    plot.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories made by `fastddpg run`")
    plot.add_argument("--out", default=None, help="output HTML (default: RUN_DIR/report.html for one run, "
                      "./report_compare.html for several)")
    plot.add_argument("--plotly-cdn", action="store_true", help="load plotly.js from the CDN: a small file that "
                      "needs a network connection to view (default: plotly.js inlined, works offline)")


def command(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    from ..core.schema import REPORT_FILE
    from ..reports.plots import write_report

    default = Path(args.run_dirs[0]) / REPORT_FILE if len(args.run_dirs) == 1 else Path("report_compare.html")
    if args.out:
        check_out_file(args.out)
    out = write_report(args.run_dirs, args.out or default, plotly_cdn=args.plotly_cdn)
    print(f"report: {os.path.abspath(out)}")
    return 0


