"""Command line: `python -m rdd.report build ...` and `python -m rdd.report index ...`."""

import argparse
import sys

from rdd import io, layout
from rdd.cli import Parser, output_file, output_folder
from rdd.report.errors import ReportInputError
from rdd.report.paper import DEFAULT_PATH


def report_file(text):
    """argparse type: a report `build` wrote (.html), whose summary lies beside it."""
    if not text.endswith(".html"):
        raise argparse.ArgumentTypeError(f"{text} must end in .html (a report written by `build`)")
    return text


def build_parser():
    parser = Parser(prog="python -m rdd.report", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build", help="tidy CSVs and the HTML report of one study")
    p.add_argument("--manifest", required=True, help="results/<study>/manifest.json (written by the workflow)")
    p.add_argument("--tables-dir", required=True, type=output_folder,
                   help="folder for metrics.csv, speed.csv, curves.csv, stages.csv")
    p.add_argument("--out", required=True, type=output_file(".html"),
                   help="the report, reports/<study>.html (summary JSON goes beside it)")
    p.add_argument("--paper-values", default=str(DEFAULT_PATH), help="cited paper figures (default: %(default)s)")
    p = sub.add_parser("index", help="an index page linking every report")
    p.add_argument("--reports", nargs="+", required=True, type=report_file, help="the reports built by `build`")
    p.add_argument("--out", required=True, type=output_file(".html"), help="reports/index.html")
    return parser


def files(args):
    """(what the command reads, what it writes), as (what, path) pairs for io.overwrite_problem."""
    if args.command == "build":
        tables = [(f"--tables-dir's {name}.csv", layout.table_file(args.tables_dir, name)) for name in layout.TABLES]
        return ([("--manifest", args.manifest), ("--paper-values", args.paper_values)],
                [("--out", args.out), ("--out's summary", layout.summary(args.out)), *tables])
    return ([*(("--reports", report) for report in args.reports),
             *(("a summary of --reports", layout.summary(report)) for report in args.reports)], [("--out", args.out)])


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if problem := io.overwrite_problem(*files(args)):
            raise ReportInputError(problem)
        # Imported here so `--help` and a refused output stay fast (matplotlib, pandas, seaborn).
        from rdd.report.render import build, build_index

        if args.command == "build":
            summary = build(args.manifest, args.tables_dir, args.out, args.paper_values)
            print(f"[report] {args.out}: " + ", ".join(f"{k} {v['done']}/{v['expected']}"
                                                      for k, v in summary["progress"].items()))
        else:
            studies = build_index(args.reports, args.out)
            print(f"[report] {args.out}: {len(studies)} studies")
    except ReportInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
