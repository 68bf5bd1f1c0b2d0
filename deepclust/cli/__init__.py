"""``deepclust`` command line; each command mirrors a library call. ``deepclust COMMAND --help``.

One builder per command (``add_<command>(sub)``, beside the command it builds) in one module per command group:
``stage_commands`` (corpus, mix, features, evaluate, listen), ``training_commands`` (train, train-dynamic,
export-model), ``separate_commands`` (separate, separate-archive), ``recipe_commands`` (reproduce, demo, compare);
``common`` holds the runner seam and exit codes. A flag is named as the config field it sets (an older spelling
stays as an alias), and every default is read from its owner: the config that holds it, or else the
signature of the library call that does (``common.default_of``).
"""

from __future__ import annotations

import argparse
import os
import sys

from deepclust.cli import recipe_commands, separate_commands, stage_commands, training_commands
from deepclust.cli.common import EXIT_CIRCUIT_OPEN, EXIT_TEMPFAIL, Runners
from deepclust.cli.recipe_commands import reproduce_config_from_args
from deepclust.faults.errors import RunFaultError
from deepclust.storage.manifests import ManifestSchemaError

__all__ = [
    "main",
    "build_parser",
    "START_HERE",
    "Runners",
    "reproduce_config_from_args",
    "EXIT_CIRCUIT_OPEN",
    "EXIT_TEMPFAIL",
]

# The commands in the order ``deepclust --help`` lists them.
BUILDERS = (
    stage_commands.add_corpus,
    stage_commands.add_mixtures,
    stage_commands.add_features,
    training_commands.add_train,
    training_commands.add_train_dynamic,
    training_commands.add_export_model,
    separate_commands.add_separate,
    separate_commands.add_separate_archive,
    stage_commands.add_evaluate,
    stage_commands.add_listen,
    recipe_commands.add_reproduce,
    recipe_commands.add_demo,
    recipe_commands.add_compare,
)


# What `deepclust --help` says first: what the tool is for and the three commands most users start with (the
# module docstring above is for readers of the code).
DESCRIPTION = (
    "Separate the voices in recordings of several people talking at once (deep clustering with a mask head),\n"
    "and reproduce the method's recipe end to end."
)
START_HERE = """start here:
  deepclust separate --input recordings/ --out separated/    the shipped model on a file, folder or s3:// prefix
  deepclust demo                                             the whole recipe on the embedded demo corpus
  deepclust reproduce --corpus wsj0 --wsj0-root /data/wsj0 --mix-lists /data/create-speaker-mixtures --out runs/wsj0
                                                             the paper's recipe on WSJ0 (--print-config: the plan)

deepclust COMMAND --help for each command; README.md and docs/usage.md for more."""


# Commands renamed so that command, stage, module and manifest kind share one name (issue 28); the old names
# still work, with a note on stderr, for one release.
OLD_COMMAND_NAMES = {"mix": "mixtures"}


def build_parser() -> argparse.ArgumentParser:
    """The ``deepclust`` argument parser, one sub-command per library call."""
    parser = argparse.ArgumentParser(
        prog="deepclust",
        description=DESCRIPTION,
        epilog=START_HERE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add_command in BUILDERS:
        add_command(sub)
    return parser


# Where the user has not chosen: the ephemeral Prefect server a command may start would send analytics (and
# log an ERROR on an offline machine); and it gets 20 s to start, which a busy machine overran (a training run
# and a test suite on 2 cores: "Timed out while attempting to connect to ephemeral Prefect API server").
PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}


def prefect_defaults() -> None:
    """``PREFECT_DEFAULTS`` into the environment, each unless the user set it."""
    for name, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(name, value)


def main(argv=None, runners: Runners | None = None) -> None:
    """The library's command line (``python -m deepclust``); the ``deepclust`` console script is
    ``deepclust.flows.cli.main``,
    which calls this with the Prefect ``runners``. Exits (``SystemExit``) with the command's code."""
    import logging

    args = build_parser().parse_args(argv)
    if args.command in OLD_COMMAND_NAMES:
        new = OLD_COMMAND_NAMES[args.command]
        note = f"deepclust {args.command} is now deepclust {new}; the old name goes in the next release"
        print(note, file=sys.stderr)
        args.command = new
    prefect_defaults()
    # The library reports progress (training epochs, loss, time left) through logging: show it on the
    # console, so a person watching a long stage sees it move.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
    handler.deepclust_console = True
    library_log = logging.getLogger("deepclust")
    if not library_log.handlers:
        library_log.addHandler(handler)
        library_log.setLevel(logging.INFO)
    try:
        if getattr(args, "needs_runners", False):  # the two commands with a Prefect path
            args.func(args, runners)
        else:
            args.func(args)
    except RunFaultError as error:
        # A fault of the run (a setting, the model, a full disk, a damaged manifest), never of an input: one
        # plain line, no traceback; 2 for a setting refused before any input, 4 for a run that stopped.
        print(f"deepclust {args.command}: stopped: {error}", file=sys.stderr)
        raise SystemExit(error.exit_status) from None
    except ManifestSchemaError as error:
        # A manifest given to a stage that is not of its kind (another stage's, not Parquet): a setting, one line.
        print(f"deepclust {args.command}: stopped: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except FileNotFoundError as error:
        # A path the command was given that is not there (an input folder, a manifest, a corpus): a setting of the
        # run, in one line naming it, exit 2. (An input that vanishes mid-run is that input's failed row, not this.)
        missing = f"no such file or folder: {error.filename}" if error.filename else str(error)
        print(f"deepclust {args.command}: stopped: {missing}", file=sys.stderr)
        raise SystemExit(2) from None
