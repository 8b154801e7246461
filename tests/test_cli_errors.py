"""Bad input on the command line: one `error: ...` line naming the key or file, exit 2, no traceback,
before the work asked for (most before any data or model is loaded). Each case is (arguments, what the
line must say)."""

import argparse
import fcntl
import json
import multiprocessing
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO
from rdd import cli, io, methods
from rdd.cli import main as rdd_main
from rdd.report import __main__ as report_cli

TEACHER = ("train-teacher", "--out", "{tmp}/t.pt", "--resume-dir", "{tmp}/r")
CLASSIFIER = ("train-classifier", "--out", "{tmp}/c.pt", "--resume-dir", "{tmp}/r")
DISTILL = ("distill", "--teacher", "{tmp}/missing_teacher.pt", "--out", "{tmp}/s.pt", "--resume-dir", "{tmp}/r")
SAMPLE = ("sample", "--model", "{tmp}/missing.pt", "--steps", "1", "--seeds", "0-3", "--out", "{tmp}/s.npz")
EVALUATE = ("evaluate", "--samples", "{tmp}/s.npz", "--ref-stats", "{tmp}/r.json", "--out", "{tmp}/m.json")


# A PD round's settings as the workflow exports them: every loss weight given.
PD_ROUND = "method: pd\nweights: {pd: 1.0, cfd: 0.0, is_p2p: 0.0, m_p2p: 0.0, entropy: 0.0, diversity: 0.0}\n"


def setting(command, *assignments):
    return (*command, *(arg for a in assignments for arg in ("--set", a)))


CASES = [
    # every training command: lengths, rates, intervals, seeds, devices, keys, kinds
    (setting(TEACHER, "train.iters=-5"), "'train.iters' must be an integer >= 1, got -5"),
    (setting(TEACHER, "train.iters=0"), "'train.iters' must be an integer >= 1, got 0"),
    (setting(TEACHER, "train.batch_size=0"), "'train.batch_size' must be an integer >= 1, got 0"),
    (setting(TEACHER, "train.lr=0"), "'train.lr' must be a number > 0"),
    (setting(TEACHER, "train.lr=abc"), "'train.lr' must be a number, got 'abc'"),
    (setting(TEACHER, "train.lr=.inf"), "'train.lr' must be a number, got inf"),  # YAML reads .inf as a float
    (setting(TEACHER, "train.ema_decay=1.0"), "'train.ema_decay' must be a number in [0, 1)"),
    (setting(TEACHER, "train.warmup_iters=-1"), "'train.warmup_iters' must be an integer >= 0"),
    (setting(TEACHER, "T_base=1000"), "'T_base' must be a power of two"),
    (setting(TEACHER, "seed=-1"), "'seed' must be an integer in [0, 4294967295], got -1"),
    (setting(TEACHER, f"seed={2**32}"), f"'seed' must be an integer in [0, {2**32 - 1}], got {2**32}"),
    (setting(TEACHER, "train.grad_clip=-1"), "'train.grad_clip' must be a number >= 0"),
    (setting(TEACHER, "train.checkpoint_every=0"), "'train.checkpoint_every' must be an integer >= 1"),
    (setting(TEACHER, "train.log_every=0"), "'train.log_every' must be an integer >= 1"),
    (setting(TEACHER, "speed.num_workers=-2"), "'speed.num_workers' must be an integer >= 0"),
    (setting(TEACHER, "speed.compile=maybe"), "'speed.compile' must be true or false, got 'maybe'"),
    (setting(TEACHER, "train.num_workers=2"), "unknown setting 'train.num_workers'"),
    (setting(TEACHER, "device.device=gpu"), "'device.device' must be auto, cpu, cuda or cuda:N"),
    (setting(TEACHER, "device.device=cuda:a"), "'device.device' must be auto, cpu, cuda or cuda:N, got 'cuda:a'"),
    (setting(TEACHER, "foo=1"), "unknown setting 'foo'"),
    (setting(TEACHER, "train=5"), "setting 'train' must be a mapping"),
    (setting(TEACHER, "train.iters.x=1"), "'train.iters' must be an integer, got {{'x': 1}}"),
    (setting(TEACHER, "train.iters=4", "train.iters.x=1"), "'iters' is not a mapping of settings"),
    (setting(TEACHER, "noequals"), "--set takes key=value"),
    (setting(TEACHER, "tau=["), "the value is not valid YAML"),
    ((*TEACHER, "--settings", "{tmp}/absent.yaml"), "settings file not found: {tmp}/absent.yaml"),
    ((*TEACHER, "--settings", "{tmp}/folder"), "settings file is a directory: {tmp}/folder"),
    ((*TEACHER, "--settings", "{tmp}/fifo.yaml"), "settings file is not a regular file: {tmp}/fifo.yaml"),
    ((*TEACHER, "--settings", "{tmp}/broken.yaml"), "settings file {tmp}/broken.yaml is not valid YAML"),
    ((*TEACHER, "--settings", "{tmp}/list.yaml"), "settings file {tmp}/list.yaml must hold a mapping"),
    ((*TEACHER, "--settings", "{tmp}/twice.yaml"), 'settings file {tmp}/twice.yaml is not valid YAML: while '
     'constructing a mapping in "{tmp}/twice.yaml", line 2, column 3 found the key \'iters\' a second time in '
     '"{tmp}/twice.yaml", line 3, column 3'),  # PyYAML alone keeps the last value without a word
    ((*TEACHER, "--settings", "{tmp}/colon.yaml"), "unknown setting 'train.iters:5' (YAML reads 'iters:5' as one "
     "key: write a space after the colon, 'iters: ...') (allowed here: batch_size,"),
    ((*TEACHER, "--settings", "{tmp}/colon_block.yaml"), "setting 'train' must be a mapping, got 'iters:5' (YAML "
     "reads 'iters:5' as text: write a space after the colon, 'iters: ...')"),
    # the classifier's recipe
    (setting(CLASSIFIER, "train.momentum=1.5"), "'train.momentum' must be a number in [0, 1)"),
    (setting(CLASSIFIER, "train.weight_decay=-1"), "'train.weight_decay' must be a number >= 0"),
    (setting(CLASSIFIER, "train.lr_schedule=step"), "'train.lr_schedule' must be one of multistep, cosine"),
    (setting(CLASSIFIER, "train.select=best"), "'train.select' must be one of best_test, final"),
    (setting(CLASSIFIER, "train.input_norm=imagenet"), "'train.input_norm' must be one of mean_std, minus1_1"),
    (setting(CLASSIFIER, "train.epochs=0"), "'train.epochs' must be an integer >= 1 or null"),
    (setting(CLASSIFIER, "train.cutout_length=0"), "'train.cutout_length' must be an integer >= 1"),
    (setting(CLASSIFIER, "train.eval_every_epochs=0"), "'train.eval_every_epochs' must be an integer >= 1"),
    (setting(CLASSIFIER, "train.lr_gamma=0"), "'train.lr_gamma' must be a number > 0"),
    # distillation: the first error is the one reported, not the missing classifier behind it
    (setting(DISTILL, "tau=-1"), "'tau' must be a number > 0, got -1"),
    (setting(DISTILL, "method=foo"), "'method' must be one of pd, rcfd, rdd"),
    (setting(DISTILL, "weights.cfd=-1"), "'weights.cfd' must be a number >= 0 or null"),
    (setting(DISTILL, "dropout=1.0"), "'dropout' must be a number in [0, 1) or null"),
    (setting(DISTILL, "feature_map=relu"), "'feature_map' must be one of post_relu, pre_relu"),
    (setting(DISTILL, "is_p2p_group_size=0"), "'is_p2p_group_size' must be an integer >= 1 or null"),
    (setting(DISTILL, "num_anchors=30000"), "'num_anchors' (30000) must be at most 'memory_size' (20000)"),
    (setting(DISTILL, "train.noise_group_size=0"), "'train.noise_group_size' must be an integer >= 1 or null"),
    (setting(DISTILL, "train.noise_group_size=48"),
     "'train.noise_group_size' (48) must divide 'train.batch_size' (64)"),
    (setting(DISTILL, "enqueue_per_step=0"), "'enqueue_per_step' must be an integer >= 1"),
    (setting(DISTILL, "contrast_temperature=0"), "'contrast_temperature' must be a number > 0"),
    (setting(DISTILL, "kd_temperature=-1"), "'kd_temperature' must be a number > 0"),
    (setting(DISTILL, "is_p2p_temperature=0"), "'is_p2p_temperature' must be a number > 0"),
    (setting(DISTILL, "m_p2p_enqueue=rows"), "'m_p2p_enqueue' must be one of columns, pixels"),
    (setting(DISTILL, "classifier_input=normalised"), "'classifier_input' must be one of raw, as_trained"),
    (setting(DISTILL, "m_p2p_head_bias=maybe"), "'m_p2p_head_bias' must be true or false, got 'maybe'"),
    (setting(TEACHER, "net.ch=48"), "setting 'net': ch must be a positive multiple of 32"),
    (setting(TEACHER, "net.dropout=null"), "setting 'net': dropout must be a number, got None"),
    (setting(TEACHER, "net.class_conditional=maybe"), "setting 'net.class_conditional' must be true or false, got "
                                                      "'maybe'"),
    (setting(CLASSIFIER, "net.name=resnet18"), "setting 'net': unknown classifier 'resnet18'"),
    (setting(CLASSIFIER, "train.augment=[crop, crop]"), "'train.augment' must be a list naming each of crop"),
    # what needs labels, given an unlabelled folder of images
    (setting(TEACHER, "data.name=folder", "data.root={tmp}/images", "net.class_conditional=true"),
     "setting 'net.class_conditional': a class-conditional teacher needs labelled images; the data settings give "
     "unlabelled ones (dataset 'folder', labels: none)"),
    (setting(CLASSIFIER, "data.name=folder", "data.root={tmp}/images"),
     "setting 'data': the classifier needs labelled images; the data settings give unlabelled ones"),
    # ... and a test split, before any training (in the workflow: before the teacher starts)
    (setting(CLASSIFIER, "data.name=folder", "data.root={tmp}/classes", "data.labels=subfolders"),
     "setting 'data': the classifier measures its accuracy on the test split (and `train.select: best_test` keeps "
     "the best epoch's weights by it), which dataset 'folder' does not have (splits: train)"),
    # ... that holds images: a held-out fraction too small for a folder of two images
    (setting(CLASSIFIER, "data.name=folder", "data.root={tmp}/classes", "data.labels=subfolders",
             "data.test_fraction=0.01", "train.input_norm=minus1_1"),
     "test_fraction: 0.01 leaves the test split of {tmp}/classes empty (it holds 2 images); choose another fraction"),
    (setting(DISTILL, "train.iters=0", "tau=-1", "memory_size=0"),
     "'train.iters' must be an integer >= 1, got 0; setting 'tau' must be a number > 0, got -1; "
     "setting 'memory_size' must be an integer >= 1, got 0"),
    ((*DISTILL[:-4], "--out", "{tmp}/s.pt"), "the following arguments are required: --resume-dir"),
    # a classifier file exactly when a loss term reads its features
    (DISTILL, "the loss terms cfd, is_p2p, m_p2p of method rdd need a classifier (--classifier)"),
    ((*setting(DISTILL, "method=pd"), "--classifier", "{tmp}/c.pt"),
     "--classifier {tmp}/c.pt: the loss terms of method pd (pd) read no classifier; leave it out"),
    # another method over settings giving every weight (a round's exported settings) would only rename the run
    (setting((*DISTILL, "--settings", "{tmp}/pd_round.yaml"), "method=rdd"),
     "--set method=rdd: the settings give every loss weight (pd 1, cfd 0, is_p2p 0, m_p2p 0, entropy 0, "
     "diversity 0), not rdd's, so the method would only rename the run; set the weights too"),
    ((*DISTILL, "--settings", "{tmp}/pd_round.yaml", "--settings", "{tmp}/rcfd.yaml"),
     "--settings {tmp}/rcfd.yaml: the settings give every loss weight (pd 1, cfd 0, is_p2p 0, m_p2p 0, "
     "entropy 0, diversity 0), not rcfd's"),
    # sampling: counts, seeds, model files
    (("sample", "--model", "m.pt", "--steps", "0", "--seeds", "0", "--out", "s.npz"),
     "argument --steps: must be a positive integer, got '0'"),
    (("sample", "--model", "m.pt", "--steps", "two", "--seeds", "0", "--out", "s.npz"),
     "argument --steps: must be a positive integer, got 'two'"),
    ((*SAMPLE[:-4], "--seeds", "abc", "--out", "s.npz"), "--seeds: 'abc' is not a list of seeds"),
    ((*SAMPLE[:-4], "--seeds", "5-2", "--out", "s.npz"), "--seeds: '5-2' is not a list of seeds"),
    ((*SAMPLE[:-4], "--seeds", "-3", "--out", "s.npz"), "--seeds: '-3' is not a list of seeds"),
    ((*SAMPLE[:-4], "--seeds", "0,1,1", "--out", "s.npz"), "--seeds: '0,1,1' names a seed more than once"),
    ((*SAMPLE[:-4], "--seeds", "\u00b2", "--out", "s.npz"), "--seeds: '\u00b2' is not a list of seeds"),
    ((*SAMPLE[:-4], "--seeds", "0-99999999999999", "--out", "s.npz"),
     "names 100,000,000,000,000 seeds; one command samples at most 10,000,000"),
    ((*SAMPLE[:-4], "--seeds", str(2**63), "--out", "s.npz"), f"names a seed above {2**63 - 1} (2**63 - 1)"),
    # argparse reads '-1-3' as an option (and '-3' as a value): the line says how to pass it as a value
    ((*SAMPLE[:-4], "--seeds", "-1-3", "--out", "s.npz"),
     "argument --seeds: expected one argument ('-1-3' reads as an option: write --seeds=-1-3)"),
    ((*SAMPLE[:-4], "--seeds=-1-3", "--out", "s.npz"), "--seeds: '-1-3' is not a list of seeds"),
    ((*SAMPLE, "--batch-size", "0"), "argument --batch-size: must be a positive integer"),
    (("sample", "@{tmp}/missing.args", *SAMPLE[1:]), "No such file or directory: '{tmp}/missing.args'"),
    ((*SAMPLE, "--net-batch", "-1"), "argument --net-batch: must be a positive integer"),
    ((*SAMPLE, "--shard-size", "0"), "argument --shard-size: must be a positive integer"),
    ((*SAMPLE, "--device", "tpu"), "argument --device: must be auto, cpu, cuda or cuda:N, got 'tpu'"),
    ((*EVALUATE, "--device", "cuda:x"), "argument --device: must be auto, cpu, cuda or cuda:N, got 'cuda:x'"),
    ((*EVALUATE, "--label", "variant=["), "--label 'variant=[': the value is not valid YAML"),
    ((*EVALUATE, "--label", "variant"), "--label takes key=value, got 'variant'"),
    ((*EVALUATE, "--label", "=rdd"), "--label '=rdd': the key before '=' is empty"),
    ((*EVALUATE, "--label", "method=pd", "--label", "method=rdd"),
     "--label 'method' is given twice ('method=pd' and 'method=rdd')"),
    # an authors' network: a JSON object of the UNet's arguments, checked before any file is read
    ((*SAMPLE, "--authors-net", "net.yaml"),
     "argument --authors-net: not JSON (Expecting value: line 1 column 1 (char 0)): 'net.yaml' (the UNet's "
     "arguments as a JSON object, e.g."),
    ((*SAMPLE, "--authors-net", "[32, 3]"),
     "argument --authors-net: must be a mapping of the UNet's arguments, got [32, 3] (the UNet's arguments as a "
     "JSON object, e.g."),
    ((*DISTILL, "--authors-net", '{{"ch": 64}}'), "argument --authors-net: bad UNet config: missing keys "
                                                "['img_resolution', 'in_channels']; allowed: ['img_resolution',"),
    ((*SAMPLE, "--authors-net", '{{"img_resolution": 32, "in_channels": 3, "ch": 48}}'),
     "argument --authors-net: ch must be a positive multiple of 32 (GroupNorm with 32 groups), got 48"),
    (("sample", "--model", "{tmp}/no_net.pt", "--steps", "1", "--seeds", "0", "--out", "{tmp}/s.npz",
      "--authors-net", '{{"img_resolution": 8, "in_channels": 1}}'),
     "{tmp}/no_net.pt is an exported rdd model, which records its own network: the authors' network arguments "
     "(--authors-net) are for an authors' checkpoint only"),
    (SAMPLE, "checkpoint not found: {tmp}/missing.pt"),
    # outputs that cannot be written, refused before the work rather than at its end
    ((*SAMPLE[:-1], "{tmp}/folder"), "argument --out: {tmp}/folder is a directory; give a file path"),
    ((*EVALUATE[:-1], "{tmp}/text.pt/m.json"), "argument --out: {tmp}/text.pt/m.json cannot be created: "
                                               "{tmp}/text.pt is not a folder"),
    ((*TEACHER[:-1], "{tmp}/text.pt"), "argument --resume-dir: {tmp}/text.pt is a file; give a folder path"),
    # /proc: its permission bits let root write, yet it refuses new files ("is not writable" for others)
    ((*SAMPLE[:-1], "/proc/rdd-absent/s.npz"), "argument --out: /proc/rdd-absent/s.npz cannot be written: the "
                                               "folder /proc "),
    ((*EVALUATE, "--cache-dir", "{tmp}/text.pt"), "argument --cache-dir: {tmp}/text.pt is a file; give a folder path"),
    (("export-images", "--samples", "{tmp}/s.npz", "--out", "{tmp}/text.pt/png"),
     "argument --out: {tmp}/text.pt/png cannot be created: {tmp}/text.pt is not a folder"),
    # an output named for its format (its companions are named from it), and never on an input
    ((*TEACHER[:2], "{tmp}/t.json", *TEACHER[3:]), "argument --out: {tmp}/t.json must end in .pt"),
    ((*SAMPLE[:-1], "{tmp}/s.txt"), "argument --out: {tmp}/s.txt must end in .npz"),
    ((*SAMPLE[:-1], "{tmp}/s.json"), "argument --out: {tmp}/s.json must end in .npz"),
    ((*SAMPLE, "--grid", "{tmp}/s.npz"), "argument --grid: {tmp}/s.npz must end in .png"),
    (("real-samples", "--data-settings", "d.yaml", "--seeds", "0-9", "--out", "r.json"),
     "argument --out: r.json must end in .npz"),
    (("ref-stats", "--data-settings", "d.yaml", "--out", "r.npz"), "argument --out: r.npz must end in .json"),
    ((*EVALUATE[:-1], "{tmp}/s.json"),
     "--out would overwrite --samples's record, {tmp}/s.json; write elsewhere"),
    ((*EVALUATE[:-1], "{tmp}/link.json"),  # a link to the samples record
     "--out would overwrite --samples's record, {tmp}/s.json"),
    (("evaluate", "--samples", "{tmp}/s.npz", "--ref-stats", "{tmp}/ref16.json", "--out",
      "{tmp}/../{tmp.name}/ref16.json"),
     "--out would overwrite --ref-stats, {tmp}/ref16.json"),
    ((*TEACHER[:2], "{tmp}/twice.pt", *TEACHER[3:], "--settings", "{tmp}/twice.json"),
     "--out's record would overwrite --settings, {tmp}/twice.json"),
    (("sample", "--model", "{tmp}/m.pt", "--steps", "1", "--seeds", "0", "--out", "{tmp}/m.npz"),
     "--out's record would overwrite --model's record, {tmp}/m.json; write elsewhere"),
    (("distill", "--teacher", "{tmp}/text.pt", "--out", "{tmp}/text.pt", "--resume-dir", "{tmp}/r"),
     "--out would overwrite --teacher, {tmp}/text.pt"),
    (("real-samples", "--data-settings", "{tmp}/r.json", "--seeds", "0-9", "--out", "{tmp}/r.npz"),
     "--out's record would overwrite --data-settings, {tmp}/r.json"),
    (("sample", "--model", "{tmp}/folder", "--steps", "1", "--seeds", "0", "--out", "{tmp}/s.npz"),
     "checkpoint is a directory: {tmp}/folder"),
    (("sample", "--model", "{tmp}/text.pt", "--steps", "1", "--seeds", "0", "--out", "{tmp}/s.npz"),
     "cannot read checkpoint {tmp}/text.pt"),
    (("sample", "--model", "{tmp}/truncated.pt", "--steps", "1", "--seeds", "0", "--out", "{tmp}/s.npz"),
     "cannot read checkpoint {tmp}/truncated.pt"),
    (("sample", "--model", "{tmp}/object.pt", "--steps", "1", "--seeds", "0", "--out", "{tmp}/s.npz"),
     "cannot read checkpoint {tmp}/object.pt (a weights-only load refuses it: Unsupported global: "
     "GLOBAL argparse.Namespace"),
    (("sample", "--model", "{tmp}/no_net.pt", "--steps", "1", "--seeds", "0", "--out", "{tmp}/s.npz"),
     "{tmp}/no_net.pt is an exported rdd model whose contents do not load (KeyError: 'net')"),
    (("sample", "--model", "{tmp}/classifier_tag.pt", "--steps", "1", "--seeds", "0", "--out", "{tmp}/s.npz"),
     "{tmp}/classifier_tag.pt is an exported rdd classifier, not a diffusion model"),
    (("sample", "--model", "{tmp}/list.pt", "--steps", "1", "--seeds", "0", "--out", "{tmp}/s.npz"),
     "{tmp}/list.pt does not hold a model dict"),
    # evaluation: the samples file, its record, the reference statistics (each named)
    ((*EVALUATE[:2], "{tmp}/absent.npz", *EVALUATE[3:]), "samples file not found: {tmp}/absent.npz"),
    ((*EVALUATE[:2], "{tmp}/folder", *EVALUATE[3:]), "samples file is a directory: {tmp}/folder"),
    ((*EVALUATE[:2], "{tmp}/text.pt", *EVALUATE[3:]), "samples file {tmp}/text.pt is not an .npz archive"),
    (("evaluate", "--samples", "{tmp}/s.npz", "--ref-stats", "{tmp}/ref16.json", "--out", "{tmp}/m.json"),
     "{tmp}/s.npz: the images are 8x8 with 1 channel(s), but the reference statistics were computed from 16x16 "
     "images with 1 (fashion_mnist)"),
    ((*EVALUATE[:2], "{tmp}/cut.npz", *EVALUATE[3:]), "samples file {tmp}/cut.npz is not an .npz archive"),
    ((*EVALUATE[:2], "{tmp}/no_seeds.npz", *EVALUATE[3:]), "samples file {tmp}/no_seeds.npz lacks 'seeds' (it "
                                                           "holds 'images')"),
    ((*EVALUATE[:2], "{tmp}/float.npz", *EVALUATE[3:]), "samples file {tmp}/float.npz: images must be numpy uint8"),
    ((*EVALUATE[:2], "{tmp}/no_record.npz", *EVALUATE[3:]), "samples record not found: {tmp}/no_record.json"),
    ((*EVALUATE[:4], "{tmp}/absent.json", *EVALUATE[5:]), "reference statistics record not found: {tmp}/absent.json"),
    ((*EVALUATE[:4], "{tmp}/folder", *EVALUATE[5:]), "reference statistics record is a directory: {tmp}/folder"),
    ((*EVALUATE[:4], "{tmp}/s.json", *EVALUATE[5:]),
     "{tmp}/s.json is not a reference statistics record written by `python -m rdd ref-stats` (it lacks path"),
    ((*EVALUATE[:4], "{tmp}/cut.npz", *EVALUATE[5:]), "statistics file {tmp}/cut.npz is not an .npz archive"),
    (("evaluate", "--samples", "{tmp}/s.npz", "--ref-stats", "{tmp}/no_record.npz", "--out", "{tmp}/m.json"),
     "statistics file {tmp}/no_record.npz lacks 'mu' and 'sigma' (it holds 'images', 'seeds')"),
    # reference statistics, evaluation, the defaults record
    (("ref-stats", "--data-settings", "{tmp}/absent.yaml", "--out", "r.json"),
     "data settings file not found: {tmp}/absent.yaml"),
    (("speed-benchmark", "--cases", "{tmp}/list.yaml", "--out", "{tmp}/sb.json"),
     "cases file {tmp}/list.yaml must hold a mapping"),
    # a cases file: each case a model's path at a positive step count, once, with plain labels
    (("speed-benchmark", "--cases", "{tmp}/cases_steps.yaml", "--out", "{tmp}/sb.json"),
     "{tmp}/cases_steps.yaml: cases[1]: 'steps' must be a positive integer, got 'two'"),
    (("speed-benchmark", "--cases", "{tmp}/cases_twice.yaml", "--out", "{tmp}/sb.json"),
     "{tmp}/cases_twice.yaml: cases[1] times m.pt at 2 steps again (cases[0] does)"),
    (("speed-benchmark", "--cases", "{tmp}/cases_label.yaml", "--out", "{tmp}/sb.json"),
     "{tmp}/cases_label.yaml: cases[0]: the label 'method' must be text, a number, true/false or null, got ['pd']"),
    (("speed-benchmark", "--cases", "{tmp}/cases_net.yaml", "--out", "{tmp}/sb.json"),
     "{tmp}/cases_net.yaml: cases[0]: 'authors_net': bad UNet config: missing keys ['img_resolution', "
     "'in_channels']"),
    (("speed-benchmark", "--cases", "c.yaml", "--out", "sb.json", "--min-seconds", "-1"),
     "argument --min-seconds: must be a number >= 0, got '-1'"),
    (("speed-benchmark", "--cases", "c.yaml", "--out", "sb.json", "--min-seconds", "nan"),
     "argument --min-seconds: must be a number >= 0, got 'nan'"),
    (("ref-stats", "--data-settings", "{tmp}/list.yaml", "--out", "r.json"), "must hold a mapping"),
    (("ref-stats", "--data-settings", "x.yaml", "--limit", "0", "--out", "r.json"),
     "argument --limit: must be a positive integer"),
    (("ref-stats", "--data-settings", "{tmp}/fmnist.yaml", "--split", "test", "--limit", "10001", "--out",
      "{tmp}/r.json"), "limit: 10,001 images asked of the test split of fashion_mnist, which holds 10,000"),
    (("real-samples", "--data-settings", "{tmp}/list.yaml", "--seeds", "0-9", "--out", "r.npz"),
     "must hold a mapping"),
    (("real-samples", "--data-settings", "{tmp}/fmnist.yaml", "--split", "val", "--seeds", "0-9", "--out", "r.npz"),
     "split: 'val' is not a split of fashion_mnist; allowed: train, test"),
    # image folders for other tools
    (("export-images", "--out", "{tmp}/png"), "one of the arguments --samples --data-settings is required"),
    (("export-images", "--samples", "{tmp}/absent.npz", "--out", "{tmp}/png"), "{tmp}/absent.npz"),
    (("export-images", "--samples", "{tmp}/cut.npz", "--out", "{tmp}/png"),
     "samples file {tmp}/cut.npz is not an .npz archive (truncated, or another kind of file); write it again with"),
    (("export-images", "--samples", "s.npz", "--limit", "5", "--out", "{tmp}/png"),
     "--split and --limit choose images of --data-settings, not of --samples"),
    (("export-images", "--data-settings", "{tmp}/fmnist.yaml", "--split", "val", "--out", "{tmp}/png"),
     "split: 'val' is not a split of fashion_mnist"),
    (("export-images", "--data-settings", "{tmp}/fmnist.yaml", "--out", "{tmp}"), "{tmp} exists; remove it"),
    (("export-images", "--data-settings", "{tmp}/fmnist.yaml", "--limit", "60001", "--out", "{tmp}/png"),
     "limit: 60,001 images asked of the train split of fashion_mnist, which holds 60,000"),
    (("show-defaults", "sampler"), "argument command: invalid choice: 'sampler'"),
    (("prune-resume", "--root", "{tmp}/no-resume"), "no resume folder {tmp}/no-resume: training jobs keep"),
    (("frobnicate",), "argument command: invalid choice: 'frobnicate'"),
]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_inputs")
    (folder / "broken.yaml").write_text("train: {iters: [1, 2\n")
    (folder / "list.yaml").write_text("- 1\n- 2\n")
    (folder / "twice.yaml").write_text("train:\n  iters: 5\n  iters: 10\n")
    (folder / "colon.yaml").write_text("train: {iters:5}\n")  # no space: one key 'iters:5' of value null
    (folder / "colon_block.yaml").write_text("train:\n  iters:5\n")  # in block style: 'train' is the text 'iters:5'
    (folder / "fmnist.yaml").write_text("data: {name: fashion_mnist}\n")
    (folder / "pd_round.yaml").write_text(PD_ROUND)
    (folder / "rcfd.yaml").write_text("method: rcfd\n")
    (folder / "cases_steps.yaml").write_text("cases: [{model: m.pt, steps: 2}, {model: m.pt, steps: two}]\n")
    (folder / "cases_twice.yaml").write_text("cases: [{model: m.pt, steps: 2}, {model: m.pt, steps: 2}]\n")
    (folder / "cases_label.yaml").write_text("cases: [{model: m.pt, steps: 2, method: [pd]}]\n")
    (folder / "cases_net.yaml").write_text("cases: [{model: m.pt, steps: 2, authors_net: {ch: 64}}]\n")
    (folder / "text.pt").write_text("not a checkpoint\n")
    (folder / "folder").mkdir()  # a directory where a file belongs
    os.mkfifo(folder / "fifo.yaml")  # reading it would block: it must be refused unread
    (folder / "images").mkdir()  # an unlabelled image folder
    Image.new("RGB", (8, 8)).save(folder / "images" / "0.png")
    for label in ("a", "b"):  # a labelled one: a class per sub-folder
        (folder / "classes" / label).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(folder / "classes" / label / "0.png")
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, folder / "whole.pt")
    data = (folder / "whole.pt").read_bytes()
    (folder / "truncated.pt").write_bytes(data[:len(data) // 2])
    torch.save([1, 2, 3], folder / "list.pt")
    torch.save({"args": argparse.Namespace(lr=1e-4)}, folder / "object.pt")  # a pickled object
    torch.save({"format": "rdd/denoiser-v1", "state_dict": {}}, folder / "no_net.pt")  # our tag, no network
    torch.save({"format": "rdd/classifier-v1", "state_dict": {}}, folder / "classifier_tag.pt")
    # Samples files: a good one with its record, then one damaged part each.
    images, seeds = np.zeros((4, 8, 8, 1), np.uint8), np.arange(4)
    for name, arrays in {"s": dict(images=images, seeds=seeds), "no_record": dict(images=images, seeds=seeds),
                         "no_seeds": dict(images=images), "float": dict(images=images / 255.0, seeds=seeds)}.items():
        np.savez(folder / f"{name}.npz", **arrays)
        if name != "no_record":
            (folder / f"{name}.json").write_text("{}")
    (folder / "ref16.json").write_text(json.dumps({  # a reference record of 16x16 images, read before scoring
        "path": "unread.npz", "sha256": "0" * 64, "record": {}, "inception": {},
        "dataset": {"name": "fashion_mnist", "image_size": 16, "channels": 1, "resize": "resize"}}))
    (folder / "link.json").symlink_to(folder / "s.json")
    whole = (folder / "s.npz").read_bytes()
    (folder / "cut.npz").write_bytes(whole[:len(whole) // 2])
    return folder


@pytest.mark.parametrize("args,expected", CASES, ids=[f"{i:02d}-{c[0][0]}" for i, c in enumerate(CASES)])
def test_bad_input_is_one_line_and_exit_2(args, expected, bad_files, capsys):
    args = [a.format(tmp=bad_files) for a in args]
    try:
        code = rdd_main(args)
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected.format(tmp=bad_files) in lines[0]
    assert "Traceback" not in err
    assert "weights_only" not in err  # torch's advice to load unsafely is not passed on


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
@pytest.mark.parametrize("args", [(*SAMPLE, "--device", "cuda"), setting(TEACHER, "device.device=cuda:0")])
def test_a_gpu_this_machine_lacks_is_one_line_and_exit_2(args, bad_files, capsys):
    assert rdd_main([a.format(tmp=bad_files) for a in args]) == 2
    device = args[-1].removeprefix("device.device=")
    assert capsys.readouterr().err == f"error: device '{device}' was asked for, but torch sees no CUDA GPU\n"


def _as_another_user(fn):
    """`fn()` in a forked child; as root, the child first becomes `nobody` (root may write anywhere).
    Returns the child's exit code and the text `fn` returned."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no imports here (as nobody it may not read the interpreter's folders)
        code = 1
        try:
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            os.write(write, fn().encode())
            code = 0
        except BaseException as exc:  # reported to the parent, which fails the test
            os.write(write, repr(exc).encode())
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        text = pipe.read()
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), text


def test_an_output_in_a_read_only_folder_is_refused_before_the_work(bad_files):
    import contextlib
    import io as text_io
    import tempfile

    base = Path(tempfile.mkdtemp())
    try:
        base.chmod(0o755)  # the other user reaches the folder, and may not write in it
        locked = base / "locked"
        locked.mkdir(mode=0o555)
        args = [a.format(tmp=bad_files) for a in (*SAMPLE[:-1], str(locked / "new" / "s.npz"))]
        with pytest.raises(SystemExit):  # an output error once here, so that the child imports nothing
            rdd_main([*args[:-1], str(bad_files / "text.pt" / "s.npz")])

        def parse():
            stderr = text_io.StringIO()
            with contextlib.redirect_stderr(stderr):
                try:
                    rdd_main(args)
                except SystemExit as exit_:  # an argparse type's error
                    return f"{exit_.code}|{stderr.getvalue()}"
            return f"no exit|{stderr.getvalue()}"

        code, text = _as_another_user(parse)
        assert code == 0, text
        assert text == f"2|error: python -m rdd sample: argument --out: {locked / 'new' / 's.npz'} cannot be written: " \
                       f"the folder {locked} is not writable\n"
    finally:
        shutil.rmtree(base)


def test_the_write_check_leaves_nothing_behind(tmp_path):
    assert io.output_problem(tmp_path / "new" / "s.npz") is None
    assert io.output_problem(tmp_path / "out", kind="folder") is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("files,assignments,method", [
    (["pd_round.yaml"], ["method=rdd", "weights={pd: 0, cfd: 1, is_p2p: 1, m_p2p: 0.1, entropy: 0, diversity: 0}"],
     "rdd"),
    (["pd_round.yaml"], ["method=rcfd", *(f"weights.{term}=null" for term in methods.TERMS)], "rcfd"),
    (["pd_round.yaml"], ["method=rdd", "method=pd"], "pd"),  # back to what the weights are
    (["pd_round.yaml", "fmnist.yaml"], [], "pd"),  # the workflow's layering: a later file without a method
    (["rcfd.yaml", "pd_round.yaml"], [], "pd"),  # a later file giving its method with every weight
])
def test_another_method_with_its_weights_is_taken(files, assignments, method, bad_files):
    args = argparse.Namespace(settings=[bad_files / name for name in files], set=assignments)
    record = cli.user_settings(args, "distill")
    assert record["method"] == method
    assert methods.loss_weights(record) == methods.loss_weights({"method": method, "weights": {}})


@pytest.mark.parametrize("follower", ["--out", "--ou", "-h"])
def test_a_missing_value_before_an_option_gets_no_advice_to_take_the_option_as_the_value(follower, capsys):
    """`--seeds --out s.npz` forgot the seeds: '--out' (or its abbreviation) is an option, not a value."""
    with pytest.raises(SystemExit) as exit_info:
        rdd_main(["sample", "--model", "m.pt", "--steps", "1", "--seeds", follower, "s.npz"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: python -m rdd sample: argument --seeds: expected one argument\n"


def test_enough_bad_inputs_are_counted():
    assert len(CASES) >= 40


def test_debug_shows_the_traceback_of_an_input_error(bad_files):
    with pytest.raises(Exception, match="train.iters"):
        rdd_main(["--debug", *(a.format(tmp=bad_files) for a in setting(TEACHER, "train.iters=0"))])


def test_two_samplers_of_one_output_cannot_interleave(bad_files, tmp_path, capsys):
    out = tmp_path / "s.npz"
    with io.exclusive(out):  # as if another `sample` were writing this file right now
        code = rdd_main(["sample", "--model", str(bad_files / "text.pt"), "--steps", "1", "--seeds", "0",
                         "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and f"another process is writing {out}" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s.npz.lock").exists()  # released and removed by its holder
    # Once free, the same command proceeds (and here finds the file is no checkpoint).
    assert rdd_main(["sample", "--model", str(bad_files / "text.pt"), "--steps", "1", "--seeds", "0",
                     "--out", str(out)]) == 2
    assert "cannot read checkpoint" in capsys.readouterr().err


def test_a_lock_taken_on_a_lock_file_its_holder_removed_is_told_apart(tmp_path):
    """A holder removes its lock file as it leaves, so a writer that opened that file just before could lock
    a file on no path while a newcomer locks the new one: `exclusive` takes a lock only on the file the path
    names (rdd.io.names_open_file), else opens the path again."""
    lock = tmp_path / "s.npz.lock"
    with open(lock, "a") as early:  # opened by a second writer just before the holder left
        assert io.names_open_file(lock, early)
        lock.unlink()  # the holder leaves
        assert not io.names_open_file(lock, early)
        with io.exclusive(tmp_path / "s.npz"):  # a newcomer
            assert not io.names_open_file(lock, early)
            fcntl.flock(early, fcntl.LOCK_EX | fcntl.LOCK_NB)  # granted: such a lock would guard nothing
            with open(lock, "a") as current, pytest.raises(BlockingIOError):
                fcntl.flock(current, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the path's file is the one held
    assert not lock.exists()


def _take_and_leave(out, inside, times, results):
    """Take and leave `out`'s lock `times` times, counting the takes and those another process shared."""
    taken = shared = 0
    for _ in range(times):
        try:
            with io.exclusive(out):
                taken += 1
                try:
                    os.close(os.open(inside, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:  # another process holds the lock too
                    shared += 1
                    continue
                os.unlink(inside)
        except io.OutputBusyError:
            pass
    results.put((taken, shared))


def test_writers_racing_for_one_output_never_hold_it_together(tmp_path):
    """Four processes take and leave one output's lock as fast as they can, each holder removing the lock
    file as it leaves: no take is ever shared. (Before the lock checked that its path names the file it
    locked, 466 to 886 of about 3,000 takes were shared in four runs of this test on 2 cores.)"""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    args = (tmp_path / "s.npz", tmp_path / "inside", 2000, results)
    workers = [context.Process(target=_take_and_leave, args=args) for _ in range(4)]
    for worker in workers:
        worker.start()
    taken, shared = map(sum, zip(*(results.get(timeout=120) for _ in workers)))
    for worker in workers:
        worker.join()
    assert taken > 0 and shared == 0, (taken, shared)


def test_a_lock_removes_the_folders_it_made_when_they_stay_empty(tmp_path):
    (tmp_path / "found").mkdir()
    with io.exclusive(tmp_path / "found" / "made" / "deeper" / "x.pt"):  # as a command refused at once
        assert (tmp_path / "found" / "made" / "deeper" / "x.pt.lock").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["found"] and not any((tmp_path / "found").iterdir())
    with io.exclusive(tmp_path / "a" / "b" / "x.pt"):
        (tmp_path / "a" / "work.txt").write_text("what the work wrote")
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["work.txt"]  # b was empty; a holds the work


def test_two_trainings_of_one_resume_folder_cannot_interleave(tiny, tmp_path, capsys):
    resume = tmp_path / "resume"
    with io.exclusive(resume / "resume.pt"):  # as if another training were using this folder right now
        code = rdd_main(["train-teacher", "--settings", str(tiny["teacher"]), "--out", str(tmp_path / "t.pt"),
                         "--resume-dir", str(resume)])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().splitlines() == [
        f"error: another process is writing {resume / 'resume.pt'} (it holds {resume / 'resume.pt.lock'}); "
        "wait for it to finish, or write to another path"]
    assert not (tmp_path / "t.pt").exists()


def test_the_readme_states_these_counts():
    from test_workflow_config import CASES as BAD_CONFIGS

    readme = " ".join((REPO / "README.md").read_text().split())
    assert set(re.findall(r"(\d+) bad command lines", readme)) == {str(len(CASES))}
    assert set(re.findall(r"(\d+) bad configs", readme)) == {str(len(BAD_CONFIGS))}


def test_each_kind_of_model_file_is_refused_where_the_other_belongs(bad_files):
    from rdd.checkpoints import CheckpointError, load_classifier

    with pytest.raises(CheckpointError, match="no_net.pt is an exported rdd diffusion model, not a classifier"):
        load_classifier(bad_files / "no_net.pt")


@pytest.mark.parametrize("net,problem", [
    ({"img_resolution": 8, "in_channels": 1},
     "takes 1-channel 8x8 images; the data settings give 1-channel 16x16 images"),
    ({"img_resolution": 16, "in_channels": 1, "num_classes": 3},
     "is conditioned on 3 classes; the data settings give 10 classes"),
], ids=["size", "classes"])
def test_a_teacher_of_other_data_is_refused_before_training(net, problem, tiny, tmp_path, capsys):
    from rdd.checkpoints import denoiser_payload, save_torch
    from rdd.diffusion import TimeGrid
    from rdd.nets import build_unet

    net_kwargs = {**net, "ch": 32, "ch_mult": [1], "attn": [], "num_res_blocks": 1}
    teacher = tmp_path / "teacher.pt"
    save_torch(denoiser_payload(build_unet(**net_kwargs), net_kwargs, TimeGrid(16, 16)), teacher)
    code = rdd_main(["distill", "--settings", str(tiny["distill"]), "--set", "method=pd", "--teacher", str(teacher),
                     "--out", str(tmp_path / "s.pt"), "--resume-dir", str(tmp_path / "r")])
    assert code == 2
    assert capsys.readouterr().err == f"error: {teacher} {problem}\n"
    assert not (tmp_path / "r").exists()  # no step was taken, no folder left behind


def test_a_step_count_the_model_cannot_sample_leaves_nothing_behind(tmp_path, capsys):
    from rdd.checkpoints import denoiser_payload, save_torch
    from rdd.diffusion import TimeGrid
    from rdd.nets import build_unet

    net_kwargs = {"img_resolution": 8, "in_channels": 1, "ch": 32, "ch_mult": [1], "attn": [], "num_res_blocks": 1}
    model = tmp_path / "model_4.pt"
    save_torch(denoiser_payload(build_unet(**net_kwargs), net_kwargs, TimeGrid(4, 16)), model)
    out = tmp_path / "samples" / "s.npz"
    assert rdd_main(["sample", "--model", str(model), "--steps", "3", "--seeds", "0-3", "--out", str(out)]) == 2
    assert capsys.readouterr().err == ("error: 3 steps: a model of T=4 samples with a number of steps that divides T "
                                       "(allowed: 1, 2, 4)\n")
    assert not out.parent.exists()  # no shard folder, no lock, not even the folder made for them


@pytest.mark.parametrize("build_parser", [cli.build_parser, report_cli.build_parser], ids=["rdd", "rdd.report"])
def test_every_option_says_what_it_is_for(build_parser):
    """`--help` of each command explains every argument (a bare `--batch-size BATCH_SIZE` does not)."""
    bare = [f"{command} {action.option_strings or action.dest}"
            for command, parser in _subcommands(build_parser())
            for action in parser._actions if not action.help]
    assert not bare


def _subcommands(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()
