r"""The Longformer's training recipes: ``python -m models train longformer --task T``, one of genre,
speaker-qa, speaks, first-line, lm, mlm.

One recipe per task (:data:`TASKS`), each with its head, its defaults and its figures:

* ``genre`` (:class:`GenreRecipe`): whole scenes -> the play's genre, the CLS token global; each step
  ``B`` scenes drawn at random (:class:`GenreExamples`), scored by accuracy beside the majority class.
* ``speaker-qa`` (:class:`SpeakerQARecipe`): the span of the speaker's name, the question tokens
  global (:class:`SpanExamples`), scored by exact match beside two baselines (most frequent and first
  speaker of the scene).
* ``speaks`` (:class:`SpeaksRecipe`) and ``first-line`` (:class:`FirstLineRecipe`): a character's NAME asked
  of a scene (:mod:`models.longformer.cast_tasks`): does NAME speak in it (answered as SQuAD 2.0: NAME's
  first line, or "no answer" on CLS; :class:`SpeaksExamples`), the span of NAME's first line (the name
  global); training questions drawn with their speakers renamed at random; scored beside the cast prior
  and the first / most frequent speaker's line.
* ``lm`` (:class:`LMRecipe`): a character language model with a causal band, read in random windows
  as GPT's (:class:`models.gpt.recipe.RandomWindows`), scored in bits per character; ``--full-attention``
  makes the band cover the whole past (the baseline).
* ``mlm`` (:class:`MLMRecipe`): the encoder's masked-LM pretraining (:mod:`models.longformer.mlm`), from which
  ``--init CKPT`` starts the tasks with a head; ``--no-global`` turns their global tokens off (the ablation).

Task examples are drawn without replacement (a generator seeded by ``cfg.seed``, saved for resume)
and right-padded to the batch's longest (banded attention takes any length: no rounding to the
window). After the loop every recipe scores the validation and test splits (and, for the tasks,
"held-out": both together, one play per genre) and writes them to ``results.json``.
"""
from __future__ import annotations

import os

import numpy as np

from minitensor.backend import to_numpy

from .. import data
from ..evaluate import eval_mode, evaluate_bpc
from ..gpt.recipe import RandomWindows
from ..recipe import Kind, Recipe
from . import cast_tasks, longdoc, mlm
from .heads import (LongformerForCausalLM, LongformerForMaskedLM, LongformerForQuestionAnswering,
                    LongformerForSequenceClassification)
from .model import LongformerConfig

__all__ = ["DEFAULTS", "RECIPE", "TASKS", "GenreExamples", "LongformerRecipe", "SpanExamples", "SpeaksExamples",
           "evaluate_task"]

#: ``train longformer --preset tiny --task T``'s settings when no option is given. seq_len is the model's
#: max_len for the tasks (whole scenes up to that many characters) and the window length for lm; warmup is
#: at most steps/5; eval_batches None: the whole validation split. Seconds per step on 2 CPU cores are in
#: the README. AdamW's settings, the seed and the final figure's scope are TrainConfig's defaults. speaks'
#: 1,000 steps are for a start from the first-line run (``--init``, README); from nothing it needs far more.
DEFAULTS = {
    "genre": {"steps": 400, "batch_size": 8, "seq_len": 2048, "lr": 1e-3, "eval_every": 100, "eval_batches": None,
              "ckpt_every": 100, "warmup": 100},
    "speaks": {"steps": 1000, "batch_size": 8, "seq_len": 512, "lr": 2e-3, "eval_every": 250, "eval_batches": None,
               "ckpt_every": 250, "warmup": 100},
    "first-line": {"steps": 4000, "batch_size": 8, "seq_len": 512, "lr": 2e-3, "eval_every": 500,
                   "eval_batches": None, "ckpt_every": 500, "warmup": 100},
    "speaker-qa": {"steps": 1500, "batch_size": 8, "seq_len": 1024, "lr": 1e-3, "eval_every": 250,
                   "eval_batches": None, "ckpt_every": 250, "warmup": 100},
    "lm": {"steps": 1000, "batch_size": 8, "seq_len": 512, "lr": 2e-3, "eval_every": 250, "eval_batches": 10,
           "ckpt_every": 250, "warmup": 100},
    "mlm": {"steps": 800, "batch_size": 8, "seq_len": 512, "lr": 2e-3, "eval_every": 200, "eval_batches": 10,
            "ckpt_every": 200, "warmup": 100},
}
# The model per task, on top of the tiny preset: the windows (w, w/2 keys each side) of each layer. The
# encoder tasks share one shape, so that each can start from the masked-LM pretraining (--init): four
# layers with windows growing with depth, the paper's layout, a reach of 16+32+64+128 = 240 characters on
# each side. speaker-qa needs it: the answer (a speaker line) is a median 80 characters before the quoted
# line (p75 220). genre: CLS is global and reads every token, the band builds the features it reads.
# lm: a causal band of 32 keys to the left (64 wide), and GPT's five-minute recipe for a character model
# (models.gpt.recipe.MODEL): no dropout, N(0, 0.05) initial weights; mlm and the speaker tasks the same
# settings for their encoder (genre and speaker-qa keep the preset's dropout 0.1 when fine-tuning it).
ENCODER = {"n_layer": 4, "attention_window": [32, 64, 128, 256]}
# The speaker tasks and the pretraining: the five-minute recipe's model settings (no dropout, N(0, 0.05)).
SPEAKER_TASKS = {**ENCODER, "hidden_dropout": 0.0, "attention_dropout": 0.0, "init_std": 0.05}
TINY_MODELS = {
    "genre": ENCODER,
    "speaker-qa": ENCODER,
    "speaks": SPEAKER_TASKS,
    "first-line": SPEAKER_TASKS,
    "mlm": SPEAKER_TASKS,
    "lm": {"attention_window": 64, "hidden_dropout": 0.0, "attention_dropout": 0.0, "init_std": 0.05},
}


# ------------------------------------------------------------------ batches + loss of the tasks

class Examples:
    """Each step ``B`` examples drawn without replacement from the training set, right-padded to the
    batch's longest, ``loss`` from the task head (the subclass's :meth:`loss`)."""

    score = ""  # the name of the validation figure
    shard = slice(None)  # this rank's rows of each batch (models.train.train sets it)

    def __init__(self, train_examples: longdoc.Encoded, cfg, device):
        self.examples, self.cfg, self.device = train_examples, cfg, device
        self.rng = np.random.default_rng(cfg.seed)

    def loss(self, model, b: dict):
        raise NotImplementedError

    def step_loss(self, model):
        index = self.rng.choice(len(self.examples), size=min(self.cfg.batch_size, len(self.examples)), replace=False)
        b = self.examples.draw(index, self.rng)  # (B, T) ids, padding_mask ...
        b = {k: v[self.shard] for k, v in b.items()}
        return self.loss(model, b), int(b["padding_mask"].sum())  # tokens read this step

    def checkpoint_fields(self) -> dict:
        return {"batch_rng": self.rng}

    def restore(self, state, meta) -> None:
        self.rng.bit_generator.state = meta["batch_rng_state"]

    def validate(self, model, val_examples: longdoc.Encoded, max_batches) -> dict:
        """The task's score, and the baselines stored with the examples."""
        score = evaluate_task(model, val_examples, self.cfg.batch_size, max_batches)
        return {f"val_{self.score}": score, **{f"val_{k}": v for k, v in val_examples.baselines.items()}}


class GenreExamples(Examples):
    """Classification (genre): cross-entropy of the CLS logits. (Drawing every genre equally often was
    tried and measured worse: README.)"""

    score = "accuracy"

    def loss(self, model, b):
        return model.loss(b["ids"], b["labels"], global_mask=b.get("question_mask"), padding_mask=b["padding_mask"])


class SpanExamples(Examples):
    """Span extraction (speaker-qa, first-line): cross-entropy of the span's start and end."""

    score = "exact_match"

    def loss(self, model, b):
        return model.loss(b["ids"], b["question_mask"], b["starts"], b["ends"], padding_mask=b["padding_mask"])


class SpeaksExamples(SpanExamples):
    """speaks: the span loss, "no" on CLS (0, 0); scored by accuracy, whether the model answered at all."""

    score = "accuracy"


def _class_hits(model, b, examples) -> int:
    logits = to_numpy(model(b["ids"], global_mask=b.get("question_mask"), padding_mask=b["padding_mask"]).data)
    return int((logits.argmax(axis=-1) == b["labels"]).sum())  # logits (B, C)


def _span_hits(model, b, examples) -> int:
    hits = 0
    spans = np.asarray(model.predict_spans(b["ids"], b["question_mask"], padding_mask=b["padding_mask"],
                                           max_answer_len=examples.max_answer_len))
    for row, (s, e), gs, ge in zip(b["ids"], spans, b["starts"], b["ends"]):  # spans (B, 2), inclusive
        hits += s >= 0 and np.array_equal(row[s:e + 1], row[gs:ge + 1])  # the same text
    return hits


def _answered_hits(model, b, examples) -> int:
    """speaks: the predicted class is "no" where the model marks CLS, the span (0, 0), and "yes" elsewhere."""
    spans = np.asarray(model.predict_spans(b["ids"], b["question_mask"], padding_mask=b["padding_mask"],
                                           max_answer_len=examples.max_answer_len))
    return int(((spans[:, 0] != 0) == (b["labels"] == 1)).sum())


#: ``Encoded.kind`` -> the number of right answers in a batch.
_HITS = {"classification": _class_hits, "span": _span_hits, "span-or-none": _answered_hits}


def evaluate_task(model, examples: longdoc.Encoded, batch_size: int, max_batches: int | None = None) -> float:
    """Accuracy (classification: the argmax label; span-or-none: whether the model answered, against the
    label) or exact match (span: the predicted span's TEXT equals the answer's, as SQuAD scores it — for
    speaker-qa any header of the right speaker counts, which is also how the baselines are scored) on
    ``examples``, in batches of ``batch_size`` in order; dropout off, mode restored."""
    hits, count = 0, 0
    with eval_mode(model):
        for i, lo in enumerate(range(0, len(examples), batch_size)):
            if max_batches is not None and i >= max_batches:
                break
            index = np.arange(lo, min(lo + batch_size, len(examples)))
            hits += _HITS[examples.kind](model, examples.batch(index), examples)
            count += len(index)
    if count == 0:
        raise ValueError("evaluate_task: no examples to evaluate")
    return hits / count


# ------------------------------------------------------------------ the recipes

class LongformerRecipe(Recipe):
    """``train longformer``: picks the task's recipe (:data:`TASKS`), from ``--task`` or, for
    ``--resume`` without it, from the checkpoint in ``--out``."""

    name = "longformer"

    @property
    def kinds(self):
        """Every task's checkpoint kind -> its :class:`~models.recipe.Kind`."""
        return {kind: k for recipe in TASKS.values() for kind, k in recipe.own_kinds.items()}

    def for_options(self, opts):
        if opts.mem_len is not None or opts.positions is not None:
            raise ValueError("--mem-len and --positions are for txl only")
        if opts.resume and opts.task is None:
            from ..checkpoint import CHECKPOINT_NAME, read_checkpoint  # which reads the recipes' table

            if opts.out is None:
                raise ValueError("train longformer --resume needs --out DIR (or --task, for the default "
                                 "runs/longformer-TASK-PRESET)")
            _, meta = read_checkpoint(os.path.join(opts.out, CHECKPOINT_NAME))  # the checkpoint knows its task
            tasks = {kind: task for task, recipe in TASKS.items() for kind in recipe.own_kinds}
            if meta["model"] not in tasks:
                raise ValueError(f"{opts.out!r} holds a {meta['model']} checkpoint, not a Longformer task's")
            opts.task = tasks[meta["model"]]
            opts.full_attention = opts.full_attention or bool((meta.get("run") or {}).get("full_attention"))
        if opts.task is None:
            raise ValueError(f"train longformer needs --task {', '.join(TASKS)}")
        if opts.full_attention and opts.task != "lm":
            raise ValueError("--full-attention is for --task lm only (the full causal baseline)")
        if (opts.init is not None or opts.no_global) and opts.task not in HEAD_TASKS:
            raise ValueError(f"--init and --no-global are for --task {', '.join(HEAD_TASKS)} (the tasks with a head)")
        if opts.init is not None:
            if opts.resume:
                raise ValueError("--init starts a fresh run; a resumed run already holds its weights (leave it out)")
            mlm.read_init(opts.init)  # fail before the corpus loads
        if opts.no_global and opts.resume:
            raise ValueError("--no-global is part of the model: a resumed run keeps the checkpoint's (leave it out)")
        return TASKS[opts.task]


class _TaskRecipe(Recipe):
    """What the four tasks share: the vocabulary with the special tokens, the model line, results.json."""

    name = "longformer"
    task = ""
    own_kinds: dict = {}  # this task's checkpoint kind

    @property
    def kinds(self):
        """This task's checkpoint kind -> its :class:`~models.recipe.Kind`."""
        return self.own_kinds

    def check_preset(self, preset):
        LongformerConfig.preset(preset, vocab_size=2, pad_id=0)  # an unknown preset raises ValueError naming the choices

    def default_out(self, opts, preset):
        suffix = ("-full" if opts.full_attention else "") + ("-init" if opts.init else "") + \
            ("-noglobal" if opts.no_global else "")
        return os.path.join("runs", f"longformer-{self.task}{suffix}-{preset}")

    def defaults(self, opts):
        return DEFAULTS[self.task]

    def tokenizer(self, corpus, opts):
        return longdoc.LongdocTokenizer.from_corpus(corpus)

    def model_overrides(self, opts, settings) -> dict:
        return {}

    def configure(self, opts, preset, tokenizer, settings, given):
        overrides = {"max_len": settings["seq_len"], "pad_id": tokenizer.pad_id}
        if preset == "tiny":
            overrides.update(TINY_MODELS[self.task])
        overrides.update(self.model_overrides(opts, settings))
        if opts.no_global:
            overrides["global_tokens"] = False
        return LongformerConfig.preset(preset, tokenizer.vocab_size, **overrides)

    def run_info(self, opts, preset):
        return {"preset": preset, "task": self.task, "full_attention": bool(opts.full_attention)}

    def initialise(self, model, opts, tokenizer) -> dict:
        """``--init CKPT``: the encoder from the masked-LM pretraining or another task's run
        (models.longformer.mlm); what to record."""
        return mlm.init_encoder(model, opts.init, tokenizer.to_dict())

    def check_resume(self, opts, config, run):
        if run.get("full_attention") is not None and bool(run["full_attention"]) != bool(opts.full_attention):
            raise ValueError(f"--full-attention differs from the checkpoint's run (full_attention="
                             f"{run['full_attention']}); a resumed run keeps its model")

    def check_seq_len(self, seq_len, config):
        if seq_len > config.max_len:
            raise ValueError(f"--seq-len {seq_len} is longer than the model's max_len={config.max_len}")

    def describe(self, opts, preset, config, kind):
        band = "full causal attention" if opts.full_attention else f"windows {config.attention_window}"
        extra = "" if config.global_tokens else ", no global token"
        return f"Longformer {preset} ({kind}, {band}{extra}, max_len {config.max_len})"

    def scores(self, model, split_data, cfg) -> dict:
        raise NotImplementedError

    def report(self, model, splits, cfg, result, opts, preset, config, checkpoint_path):
        results = {"task": self.task, "model": self.kind(opts), "preset": preset,
                   "attention_window": config.attention_window, "full_attention": bool(opts.full_attention),
                   "global_tokens": config.global_tokens, "init": result.get("run", {}).get("init"),
                   "step": result["step"], "max_len": config.max_len}
        for split in ("validation", "test", "held-out"):
            if split not in splits:
                continue
            results[split] = self.scores(model, splits[split], cfg)
            shown = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in results[split].items())
            print(f"step {result['step']}: {split} {shown}")
        return results


class _ExamplesRecipe(_TaskRecipe):
    """genre and speaker-qa: encoded examples of every split, plus "held-out" = validation + test (one
    play per genre, so every genre is scored there; the test split alone holds three genres, none of
    them the training majority)."""

    unit = ""  # what the model line counts

    def build(self, corpus, config) -> dict:
        raise NotImplementedError

    def encode(self, split, examples, all_examples, tokenizer, config):
        raise NotImplementedError

    def prepare(self, corpus, tokenizer, config):
        examples = self.build(corpus, config)
        examples["held-out"] = examples["validation"] + examples["test"]
        encoded = {split: self.encode(split, exs, examples, tokenizer, config) for split, exs in examples.items()}
        sizes = ", ".join(f"{k} {len(v)} {self.unit}" for k, v in examples.items() if k != "held-out")
        return encoded, sizes

    def scores(self, model, split_data, cfg):
        final = cfg.final_eval_batches
        score = self.own_kinds[self.kind(None)].batches.score
        return {score: evaluate_task(model, split_data, cfg.batch_size, final), **split_data.baselines,
                "examples": len(split_data) if final is None else min(len(split_data), final * cfg.batch_size)}


def step_shape(model, seq_len, logits=False):
    """(layers, width, inner width, heads, keys per query, vocabulary) of a step (models.step_memory): a
    query sees its band (the narrowest layer's: still a lower bound); a task head has no vocabulary logits."""
    c = model.config
    windows = c.attention_window if isinstance(c.attention_window, list) else [c.attention_window]
    return c.n_layer, c.d_model, c.d_ff, c.n_head, min(min(windows) + 1, seq_len), c.vocab_size if logits else 0


def lm_step_shape(model, seq_len):
    """:func:`step_shape` of the language model, with its logits over the vocabulary."""
    return step_shape(model, seq_len, logits=True)


class GenreRecipe(_ExamplesRecipe):
    task, unit = "genre", "scenes"
    own_kinds = {"longformer-genre": Kind(LongformerForSequenceClassification, LongformerConfig,
                                          longdoc.LongdocTokenizer, GenreExamples, step_shape,
                                          (len(data.GENRES),))}

    def build(self, corpus, config):
        return longdoc.build_genre(corpus)

    def encode(self, split, examples, all_examples, tokenizer, config):
        encoded, n_cut = longdoc.encode_genre(examples, tokenizer, config.max_len)
        encoded.baselines = {"majority": longdoc.majority_baseline(all_examples["train"], examples)}
        if split != "held-out":
            print(f"{split}: {len(examples)} scenes, {n_cut} longer than {config.max_len - 1} characters given "
                  f"as their first {config.max_len - 1}")
        return encoded


class SpeakerQARecipe(_ExamplesRecipe):
    task, unit = "speaker-qa", "questions"
    own_kinds = {"longformer-qa": Kind(LongformerForQuestionAnswering, LongformerConfig, longdoc.LongdocTokenizer,
                                       SpanExamples, step_shape)}

    def build(self, corpus, config):
        return longdoc.build_speaker_qa(corpus, max_len=config.max_len)

    def encode(self, split, examples, all_examples, tokenizer, config):
        encoded = longdoc.encode_qa(examples, tokenizer)
        encoded.baselines = longdoc.qa_baselines(examples)
        return encoded


class SpeaksRecipe(_ExamplesRecipe):
    """``--task speaks``: does the character the question names speak in the scene (models.longformer.cast_tasks)."""

    task, unit = "speaks", "questions"
    own_kinds = {"longformer-speaks": Kind(cast_tasks.LongformerSpeaks, LongformerConfig,
                                           longdoc.LongdocTokenizer, SpeaksExamples, step_shape)}

    def build(self, corpus, config):
        return cast_tasks.build_speaks(corpus, max_len=config.max_len)

    def encode(self, split, examples, all_examples, tokenizer, config):
        encoded = cast_tasks.encode_speaks(examples, tokenizer)
        if split == "train":
            encoded.redraw = cast_tasks.Renamer(examples, cast_tasks.training_cast(examples),
                                                lambda exs: cast_tasks.encode_speaks(exs, tokenizer), config.max_len)
        encoded.baselines = {"majority": longdoc.majority_baseline(all_examples["train"], examples),
                             "cast_prior": cast_tasks.cast_prior(all_examples["train"], examples)}
        return encoded

    def scores(self, model, split_data, cfg):
        """Accuracy and its baselines, and how often a "yes" is answered with NAME's first line exactly
        (``yes_exact_match``, over the "yes" questions scored)."""
        out = super().scores(model, split_data, cfg)
        yes = np.flatnonzero(split_data.labels == 1)
        if cfg.final_eval_batches is not None:
            yes = yes[yes < cfg.final_eval_batches * cfg.batch_size]
        hits = 0
        with eval_mode(model):
            for lo in range(0, len(yes), cfg.batch_size):
                hits += _span_hits(model, split_data.batch(yes[lo:lo + cfg.batch_size]), split_data)
        out["yes_exact_match"] = hits / max(len(yes), 1)
        return out


class FirstLineRecipe(_ExamplesRecipe):
    """``--task first-line``: the span of the first line the question's character speaks (models.longformer.cast_tasks)."""

    task, unit = "first-line", "questions"
    own_kinds = {"longformer-first-line": Kind(cast_tasks.LongformerFirstLine, LongformerConfig,
                                               longdoc.LongdocTokenizer, SpanExamples, step_shape)}

    def build(self, corpus, config):
        return cast_tasks.build_first_line(corpus, max_len=config.max_len)

    def encode(self, split, examples, all_examples, tokenizer, config):
        encoded = longdoc.encode_qa(examples, tokenizer, max_answer_len=cast_tasks.LONGEST_LINE)
        if split == "train":
            encoded.redraw = cast_tasks.Renamer(examples, cast_tasks.training_cast(examples),
                                                lambda exs: longdoc.encode_qa(exs, tokenizer, cast_tasks.LONGEST_LINE),
                                                config.max_len)
        encoded.baselines = cast_tasks.first_line_baselines(examples)
        return encoded


class LMRecipe(_TaskRecipe):
    task = "lm"
    own_kinds = {"longformer-lm": Kind(LongformerForCausalLM, LongformerConfig, longdoc.LongdocTokenizer,
                                       RandomWindows, lm_step_shape)}

    def model_overrides(self, opts, settings):
        overrides = {"causal": True}
        if opts.full_attention:  # causal keeps the w/2 keys to the left: 2 x seq_len covers the whole past
            overrides["attention_window"] = 2 * settings["seq_len"]
        return overrides

    def prepare(self, corpus, tokenizer, config):
        splits = {split: tokenizer.encode(getattr(corpus, split)) for split in data.SPLITS}
        return splits, f"train {len(splits['train']):,} chars, validation {len(splits['validation']):,} chars"

    def scores(self, model, split_data, cfg):
        return {"bpc": evaluate_bpc(model, split_data, cfg.batch_size, cfg.seq_len, cfg.final_eval_batches)}


class MLMRecipe(_TaskRecipe):
    """``--task mlm``: the encoder's masked-LM pretraining (models.longformer.mlm), the tasks' ``--init``."""

    task = "mlm"
    own_kinds = {"longformer-mlm": Kind(LongformerForMaskedLM, LongformerConfig, longdoc.LongdocTokenizer,
                                        mlm.MaskedWindows, lm_step_shape)}

    def prepare(self, corpus, tokenizer, config):
        splits = {split: mlm.MaskedText(tokenizer.encode(getattr(corpus, split)), tokenizer.start_id,
                                        tokenizer.mask_id, tokenizer.chars.vocab_size) for split in data.SPLITS}
        return splits, f"train {len(splits['train']):,} chars, validation {len(splits['validation']):,} chars, " \
                       f"{mlm.MASK_RATE:.0%} masked"

    def scores(self, model, split_data, cfg):
        return {"mlm_bpc": mlm.masked_bpc(model, split_data, cfg.batch_size, cfg.seq_len, cfg.final_eval_batches)}


#: ``--task`` -> its recipe.
TASKS = {"genre": GenreRecipe(), "speaker-qa": SpeakerQARecipe(), "speaks": SpeaksRecipe(),
         "first-line": FirstLineRecipe(), "lm": LMRecipe(), "mlm": MLMRecipe()}
HEAD_TASKS = ("genre", "speaker-qa", "speaks", "first-line")  # the tasks with a head: --init, --no-global
RECIPE = LongformerRecipe()
