"""The voice branch judged as it will be used: on corpora and speakers it never heard.

    python bench/voice_cache.py --audio ../shared/data/ravdess_16k \
        --audio ../shared/data/emovo_16k --out results/voice_cache        # once, minutes
    python bench/voice_cache.py ... --part classic                        # the floor's
    python bench/voice_cv.py --audio ../shared/data/ravdess_16k \
        --audio ../shared/data/emovo_16k --cache results/voice_cache --out results/voice_cv

Splits (speakers are corpus-prefixed, so no split shares a person across corpora):

- leave one corpus out: train on the other corpora, test on every clip of the one left
  out (a language and a studio never heard);
- speaker folds within each corpus: k folds of whole speakers, balanced by sex where the
  corpus names it (RAVDESS: odd actors are men; EMOVO: f1-f3, m1-m3); a method that
  trains on everything trains on the other folds and on every other corpus.

Choosing without flattering: in each corpus the speakers of fold 0 are held out. Recipes
are compared on the other ("dev") speakers only (leave-one-corpus-out among dev
speakers), and the chosen recipe's figures on held-out speakers are the ones to quote;
figures over all speakers are given beside them, marked.

Methods: ``today`` (the branch before issue 24: Whisper blocks 2+3, C = 0.03, clips,
speech windows and speed/noise copies, RAVDESS-era recipe), ``new`` (the recipe of
emotion.models.voice.VoiceConfig(): speaker norm, each test speaker read against their
other clips), ``new-N`` (the same, against N earlier clips of the speaker; new-0: the
window alone, as serving reads a window without a context; leave one corpus out only),
the classic floor (bench/voice_floor.py, per clip: its speech-window features cost pYIN
on every window), and with --explore every candidate recipe on dev speakers. Scored
per clip and per speech window (windows the speech gate hears), accuracy and macro-F1,
per corpus and class, and the expected calibration error of the head's probabilities
(15 bins), before and after the temperature chosen on dev speakers. Writes
{out}/voice_cv.json and voice_cv.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from emotion.core import cli
from emotion.core.atomic import write_json, write_text_atomic
from emotion.core.labels import EMOTIONS
from emotion.core.metrics import classification_metrics
from emotion.models.voice import balanced_weights, instance_norm

sys.path.insert(0, str(Path(__file__).parent))
import voice_cache  # noqa: E402  (bench/, beside this script)

log = logging.getLogger("voice_cv")
MIN_SPEECH_S = 0.25
WIDTH = 768  # pooled values per Whisper block (mean and std of 384)


@dataclass(frozen=True)
class Recipe:
    blocks: tuple[int, ...] = (2, 3)
    c: float = 0.03
    kinds: tuple[str, ...] = ("clip", "window", "speed0.9", "speed1.1", "noise20")
    norm: str = "none"          # none | instance (each example's values standardised) |
    #                             speaker (each speaker's mean clip removed: needs the
    #                             speaker's other clips, which serving does not have)
    balance: bool = False       # each corpus weighs the same in the head's loss
    context: int = -1           # speaker norm at test: the mean of the window and of this
    #                             many other clips of its speaker (-1: all of them)
    shrink: float = 1.0         # ...pulled toward the training speakers' mean, as this
    #                             many clips would
    temperature: bool = False   # a temperature chosen on held-in predictions


TODAY = Recipe()


# ----------------------------------------------------------------- data
class Examples:
    def __init__(self, meta: dict, arrays: dict):
        ex = meta["examples"]
        self.clip = np.array([e["clip"] for e in ex])
        self.kind = np.array([e["kind"] for e in ex])
        self.ok = np.array([e["ok"] for e in ex])
        self.speech = np.array([e["speech_s"] >= MIN_SPEECH_S for e in ex])
        self.whisper = arrays["whisper"]
        self.classic = arrays.get("classic")
        self.labels = arrays["labels"]
        self.speakers = np.array(meta["speakers"])
        self.corpora = np.array(meta["corpora"])
        # the classic floor's rows are the clip and window examples, in order (or the
        # clips only, when the cache was made with --part classic_clips)
        self.classic_windows = bool(arrays.get("windows", True))
        floor_kinds = ("clip", "window") if self.classic_windows else ("clip",)
        self.classic_row = np.cumsum(np.isin(self.kind, floor_kinds)) - 1
        if self.classic is not None and len(self.classic) != self.classic_row[-1] + 1:
            raise SystemExit("classic.npz and examples.json differ: rebuild the cache")

    def features(self, recipe: Recipe, rows: np.ndarray, *, prior: np.ndarray | None = None
                 ) -> np.ndarray:
        """Features of `rows`; with speaker norm, less their speaker's mean clip: at
        training (prior None) over all the speaker's clips, at test over the window and
        `recipe.context` other clips of its speaker, pulled toward `prior` (the training
        speakers' mean) as `recipe.shrink` clips would (what a meeting's earlier windows
        of one participant give)."""
        cols = np.concatenate([np.arange((b - 1) * WIDTH, b * WIDTH) for b in recipe.blocks])
        x = self.whisper[rows][:, cols].astype(np.float32)
        if recipe.norm == "speaker":
            spk = self.speakers[self.clip[rows]]
            clip_rows = np.flatnonzero(self.kind == "clip")
            clip_spk = self.speakers[self.clip[clip_rows]]
            if prior is None or recipe.context < 0:
                for s in set(spk.tolist()):
                    mean = self.whisper[clip_rows[clip_spk == s]][:, cols].astype(np.float32)
                    x[spk == s] -= mean.mean(0)
            else:
                x = self._context_norm(recipe, rows, x, spk, cols, prior)
        if recipe.norm == "instance":
            x = instance_norm(x)  # as emotion.models.voice.VoiceFeatures does
        return x


    def _context_norm(self, recipe: Recipe, rows, x, spk, cols, prior) -> np.ndarray:
        """Each row less the mean of itself, `recipe.context` other clips of its speaker
        (seeded draws) and `recipe.shrink` times the prior."""
        k, n = recipe.shrink, recipe.context
        total, count = x + k * prior, np.zeros(len(rows))
        if n > 0:
            rng = np.random.default_rng(0)
            clip_rows = np.flatnonzero(self.kind == "clip")
            for s in set(spk.tolist()):
                mine = clip_rows[self.speakers[self.clip[clip_rows]] == s]
                feats = self.whisper[mine][:, cols].astype(np.float32)
                for i in np.flatnonzero(spk == s):
                    pick = np.flatnonzero(self.clip[mine] != self.clip[rows[i]])
                    take = rng.choice(pick, min(n, len(pick)), replace=False)
                    total[i] += feats[take].sum(0)
                    count[i] = len(take)
        return x - total / (count + 1 + k)[:, None]


def sex_of(speaker: str) -> str | None:
    """m or f where the corpus names it: RAVDESS odd actors are men; EMOVO f1, m1."""
    corpus, _, rest = speaker.partition("_")
    if corpus == "ravdess" and rest.isdigit():
        return "m" if int(rest) % 2 else "f"
    if corpus == "emovo" and rest[:1] in ("f", "m"):
        return rest[0]
    return None


def speaker_folds(speakers: list[str], k: int, seed: int) -> list[list[str]]:
    """k folds of whole speakers, each sex dealt evenly when known; seeded."""
    unique = sorted(set(speakers))
    rng = np.random.default_rng(seed)
    folds: list[list[str]] = [[] for _ in range(k)]
    groups: dict[str | None, list[str]] = {}
    for s in unique:
        groups.setdefault(sex_of(s), []).append(s)
    offset = 0
    for _, group in sorted(groups.items(), key=lambda g: str(g[0])):
        order = [group[i] for i in rng.permutation(len(group))]
        for i, s in enumerate(order):
            folds[(i + offset) % k].append(s)
        offset += len(order)
    return [sorted(f) for f in folds]


# ----------------------------------------------------------------- heads
def fit_whisper(ex: Examples, recipe: Recipe, train: np.ndarray):
    """The head on the training clips' examples; returns probabilities(rows)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rows = np.flatnonzero(train[ex.clip] & np.isin(ex.kind, recipe.kinds) & ex.ok
                          & ((ex.kind != "window") | ex.speech))
    x, y = ex.features(recipe, rows), ex.labels[ex.clip[rows]]
    # classes weigh the same (and with balance, corpora and classes within each), as
    # emotion.models.voice.VoiceHead.fit weighs them
    groups = ex.corpora[ex.clip[rows]] if recipe.balance else np.zeros(len(rows), int)
    weight = balanced_weights(y, groups)
    scaler = StandardScaler().fit(x)
    lr = LogisticRegression(C=recipe.c, max_iter=3000).fit(scaler.transform(x), y,
                                                           sample_weight=weight)
    prior = None
    if recipe.norm == "speaker":  # the training speakers' mean clip, raw
        plain = replace(recipe, norm="none")
        clip_rows = np.flatnonzero((ex.kind == "clip") & train[ex.clip])
        prior = ex.features(plain, clip_rows).mean(0)

    def logits(rows: np.ndarray) -> np.ndarray:
        out = np.full((len(rows), len(EMOTIONS)), -10.0)
        z = ex.features(recipe, rows, prior=prior if prior is not None else None)
        out[:, lr.classes_] = lr.decision_function(scaler.transform(z))
        return out
    return logits


def fit_classic(ex: Examples, train: np.ndarray, seed: int):
    from voice_floor import ClassicFloor

    clip_rows = np.flatnonzero(ex.kind == "clip")
    tr = clip_rows[train[ex.clip[clip_rows]]]
    floor = ClassicFloor(seed=seed)
    x = ex.classic[ex.classic_row[tr]]
    predict = floor.fit(x, ex.labels[ex.clip[tr]], ex.speakers[ex.clip[tr]])

    def logits(rows: np.ndarray) -> np.ndarray:
        pred = predict(ex.classic[ex.classic_row[rows]])
        return np.eye(len(EMOTIONS))[pred] * 10.0  # a hard vote (no probabilities scored)
    return logits


# ----------------------------------------------------------------- scoring
def softmax(z: np.ndarray, t: float = 1.0) -> np.ndarray:
    z = z / t
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def ece(prob: np.ndarray, truth: np.ndarray, bins: int = 15) -> float:
    conf, pred = prob.max(1), prob.argmax(1)
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            total += m.mean() * abs(float((pred[m] == truth[m]).mean()) - float(conf[m].mean()))
    return float(total)


def choose_temperature(z: np.ndarray, truth: np.ndarray) -> float:
    """The temperature that minimises the log-loss of softmax(z / t)."""
    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 61))
    loss = [-np.mean(np.log(softmax(z, t)[np.arange(len(truth)), truth] + 1e-12)) for t in grid]
    return float(grid[int(np.argmin(loss))])


def score(truth: np.ndarray, pred: np.ndarray) -> dict:
    m = classification_metrics(truth, pred)
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "n": m["n"],
            "per_class_f1": m.get("per_class_f1")}


@dataclass
class Predictions:
    """Logits of the test clips (clip examples), their speech windows and meeting copies."""

    rows: dict[str, np.ndarray]
    logits: dict[str, np.ndarray]


def predict_split(ex: Examples, fit, test: np.ndarray,
                  kinds: tuple[str, ...] = ("clip", "speech_window", "meeting")) -> Predictions:
    sel = {"clip": (ex.kind == "clip"),
           "speech_window": (ex.kind == "window") & ex.speech & ex.ok,
           "meeting": (ex.kind == "meeting0") & ex.ok}
    sel = {k: v for k, v in sel.items() if k in kinds}
    rows = {k: np.flatnonzero(m & test[ex.clip]) for k, m in sel.items()}
    return Predictions(rows, {k: fit(r) if len(r) else np.zeros((0, 6)) for k, r in rows.items()})


def report(ex: Examples, p: Predictions, subset: np.ndarray, t: float = 1.0) -> dict:
    """Scores of the predictions whose clip is in `subset` (a clip mask)."""
    out = {}
    for kind, rows in p.rows.items():
        keep = subset[ex.clip[rows]]
        if not keep.any():
            continue
        z, truth = p.logits[kind][keep], ex.labels[ex.clip[rows[keep]]]
        out[kind] = score(truth, z.argmax(1)) | {"ece": ece(softmax(z), truth),
                                                 "ece_calibrated": ece(softmax(z, t), truth)}
    return out


# ----------------------------------------------------------------- protocol
def splits(ex: Examples, k_by_corpus: dict[str, int], seed: int) -> dict:
    """Held-out speakers (fold 0 of each corpus) and every corpus's speaker folds."""
    folds = {}
    for corpus, k in k_by_corpus.items():
        spk = [s for s, c in zip(ex.speakers, ex.corpora, strict=True) if c == corpus]
        folds[corpus] = speaker_folds(spk, k, seed)
    held = np.isin(ex.speakers, [s for f in folds.values() for s in f[0]])
    return {"folds": folds, "held": held}


def evaluate(ex: Examples, make_fit, sp: dict, *, within_only: bool, t: float = 1.0,
             kinds: tuple[str, ...] = ("clip", "speech_window", "meeting"),
             loco_only: bool = False) -> dict:
    """Leave-one-corpus-out and speaker folds within each corpus, for one method.

    make_fit(train clip mask) -> logits(rows). `within_only`: the speaker folds train on
    their own corpus only (today's recipe, the floor); else on every other corpus too."""
    out: dict = {"loco": {}, "folds": {}}
    corpora = sorted(sp["folds"])
    for corpus in corpora:
        test = ex.corpora == corpus
        p = predict_split(ex, make_fit(~test), test, kinds)
        out["loco"][corpus] = {"held_out_speakers": report(ex, p, sp["held"], t),
                               "all_speakers": report(ex, p, np.ones_like(test), t)}
    for corpus in corpora if not loco_only else ():
        per_fold = []
        for fold in sp["folds"][corpus]:
            test = np.isin(ex.speakers, fold)
            train = ~test & ((ex.corpora == corpus) if within_only else True)
            p = predict_split(ex, make_fit(train), test, kinds)
            per_fold.append(report(ex, p, test, t))
        out["folds"][corpus] = {"held_out_fold": per_fold[0],
                                "mean": _mean_folds(per_fold), "per_fold": per_fold}
    return out


def evaluate_within(ex: Examples, recipe: Recipe, sp: dict, *, t: float) -> dict:
    """Speaker folds of each corpus trained on that corpus only (as today's recipe is),
    for comparing the recipes on the same training data."""
    out = {}
    for corpus in sorted(sp["folds"]):
        per_fold = []
        for fold in sp["folds"][corpus]:
            test = np.isin(ex.speakers, fold)
            p = predict_split(ex, fit_whisper(ex, recipe, ~test & (ex.corpora == corpus)), test)
            per_fold.append(report(ex, p, test, t))
        out[corpus] = {"held_out_fold": per_fold[0], "mean": _mean_folds(per_fold)}
    return out


def _mean_folds(per_fold: list[dict]) -> dict:
    out = {}
    for kind in per_fold[0]:
        vals = [f[kind] for f in per_fold if kind in f]
        out[kind] = {m: float(np.mean([v[m] for v in vals]))
                     for m in ("accuracy", "macro_f1", "ece", "ece_calibrated")}
        out[kind]["accuracy_min"] = float(min(v["accuracy"] for v in vals))
        out[kind]["accuracy_max"] = float(max(v["accuracy"] for v in vals))
    return out


def dev_score(ex: Examples, recipe: Recipe, sp: dict) -> dict:
    """A recipe on dev speakers only: leave one corpus out among them; mean clip
    accuracy over the corpora left out (the choosing criterion), and the temperature
    that calibrates those predictions."""
    dev = ~sp["held"]
    accs, f1s, zs, ys = {}, {}, [], []
    for corpus in sorted(sp["folds"]):
        test = (ex.corpora == corpus) & dev
        fit = fit_whisper(ex, recipe, (ex.corpora != corpus) & dev)
        p = predict_split(ex, fit, test)
        r = report(ex, p, test)
        accs[corpus], f1s[corpus] = r["clip"]["accuracy"], r["clip"]["macro_f1"]
        zs.append(p.logits["clip"])
        ys.append(ex.labels[ex.clip[p.rows["clip"]]])
    z, y = np.concatenate(zs), np.concatenate(ys)
    return {"accuracy": accs, "macro_f1": f1s, "mean_accuracy": float(np.mean(list(
        accs.values()))), "temperature": choose_temperature(z, y), "ece": ece(softmax(z), y)}


def candidates() -> dict[str, Recipe]:
    """What was tried (issue 24): one change at a time from today's, then together."""
    meeting = TODAY.kinds + ("meeting0", "meeting1")
    out = {"today": TODAY,
           "blocks 1+2": replace(TODAY, blocks=(1, 2)),
           "blocks 2+3+4": replace(TODAY, blocks=(2, 3, 4)),
           "blocks 1-4": replace(TODAY, blocks=(1, 2, 3, 4)),
           "block 2": replace(TODAY, blocks=(2,)),
           "C 0.01": replace(TODAY, c=0.01),
           "C 0.003": replace(TODAY, c=0.003),
           "instance norm": replace(TODAY, norm="instance"),
           "speaker norm (needs the speaker's clips)": replace(TODAY, norm="speaker"),
           "speaker norm, 10 earlier clips": replace(TODAY, norm="speaker", context=10),
           "speaker norm, 3 earlier clips": replace(TODAY, norm="speaker", context=3),
           "speaker norm, the window alone": replace(TODAY, norm="speaker", context=0),
           "speaker norm + meeting copies": replace(TODAY, norm="speaker", kinds=meeting),
           "speaker norm + meeting copies, 10 earlier clips": replace(
               TODAY, norm="speaker", kinds=meeting, context=10),
           "speaker norm + meeting copies, the window alone": replace(
               TODAY, norm="speaker", kinds=meeting, context=0),
           "speaker norm + meeting copies, the window alone, shrink 3": replace(
               TODAY, norm="speaker", kinds=meeting, context=0, shrink=3.0),
           "speaker norm + blocks 1-4": replace(TODAY, norm="speaker", blocks=(1, 2, 3, 4)),
           "speaker norm + C 0.01": replace(TODAY, norm="speaker", c=0.01),
           "speaker norm + C 0.1": replace(TODAY, norm="speaker", c=0.1),
           "meeting copies": replace(TODAY, kinds=meeting),
           "corpus-balanced": replace(TODAY, balance=True)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--audio", action="append", required=True, help="repeat for each corpus")
    p.add_argument("--cache", default="results/voice_cache", type=Path)
    p.add_argument("--out", default="results/voice_cv", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--folds", default="ravdess=4,emovo=3",
                   help="speaker folds per corpus (corpus=k,...); others get 3")
    p.add_argument("--explore", action="store_true", help="score every candidate on dev")
    p.add_argument("--only", default="", help="with --explore: the candidates whose name "
                   "holds this")
    p.add_argument("--methods", default="today,new,new-10,new-0,classic")
    args = p.parse_args(argv)
    cli.setup_logging()
    meta, arrays = voice_cache.load(args.cache, args.audio)
    ex = Examples(meta, arrays)
    k = dict(kv.split("=") for kv in args.folds.split(",") if kv)
    sp = splits(ex, {c: int(k.get(c, 3)) for c in sorted(set(ex.corpora))}, args.seed)
    log.info("%d clips, %d examples; folds %s", len(ex.labels), len(ex.kind), sp["folds"])
    result: dict = {"folds": sp["folds"], "held_out": sorted(set(ex.speakers[sp["held"]])),
                    "dev": {}, "methods": {}}
    if args.explore:
        for name, recipe in candidates().items():
            if args.only not in name:
                continue
            t = time.perf_counter()
            result["dev"][name] = dev_score(ex, recipe, sp) | {"recipe": asdict(recipe)}
            log.info("dev %-20s %s (%.0f s)", name, result["dev"][name]["accuracy"],
                     time.perf_counter() - t)
    from emotion.models.voice import VoiceConfig
    new = recipe_of(VoiceConfig())
    for method in filter(None, args.methods.split(",")):
        t = time.perf_counter()
        if method == "classic":
            r = evaluate(ex, lambda train: fit_classic(ex, train, args.seed), sp,
                         within_only=True, kinds=("clip", "speech_window")
                         if ex.classic_windows else ("clip",))
        else:
            # new-N: the new recipe with N earlier clips of the speaker as its context at
            # test (serving's per-participant context; new-0: the window alone)
            recipe = TODAY if method == "today" else new if method == "new" else replace(
                new, context=int(method.split("-")[1]))
            temp = dev_score(ex, recipe, sp)["temperature"] if recipe.temperature else 1.0
            r = evaluate(ex, lambda train, recipe=recipe: fit_whisper(ex, recipe, train), sp,
                         within_only=method == "today", t=temp,
                         loco_only=method.startswith("new-"))
            r["within_rav_only"] = evaluate_within(ex, recipe, sp, t=temp) \
                if method == "new" else None
            r["recipe"], r["temperature"] = asdict(recipe), temp
        r["seconds"] = round(time.perf_counter() - t, 1)
        result["methods"][method] = r
        log.info("%s done in %.0f s", method, r["seconds"])
    text = tables(result)
    print(text)
    write_text_atomic(text + "\n", args.out / "voice_cv.md")
    write_json(args.out / "voice_cv.json", result)
    return 0


def recipe_of(cfg) -> Recipe:
    """The bench's recipe for a VoiceConfig (emotion.models.voice)."""
    kinds = ["clip"] + (["window"] if cfg.windows else [])
    kinds += [f"speed{s}" for s in cfg.speeds]
    kinds += ["noise20"] if cfg.noise_snr_db is not None else []
    kinds += [f"meeting{i}" for i in range(getattr(cfg, "meeting_copies", 0))]
    return Recipe(blocks=tuple(cfg.blocks), c=cfg.c, kinds=tuple(kinds), norm=cfg.norm,
                  balance=cfg.balance, temperature=cfg.calibrate, shrink=cfg.shrink)


def _cell(r: dict | None) -> str:
    return "-" if not r else f"{r['accuracy']:.3f} / {r['macro_f1']:.3f}"


def tables(result: dict) -> str:
    lines = []
    if result["dev"]:
        lines += ["Recipes on dev speakers (leave one corpus out among them; clip accuracy):",
                  "", "| recipe | " + " | ".join(sorted(next(iter(result["dev"].values()))
                                                        ["accuracy"])) + " | mean | ECE |",
                  "|---|---|---|---|---|"]
        for name, d in result["dev"].items():
            lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for _, v in sorted(
                d["accuracy"].items())) + f" | {d['mean_accuracy']:.3f} | {d['ece']:.3f} |")
        lines.append("")
    lines += ["Leave one corpus out (accuracy / macro-F1; held-out speakers, [all speakers]):",
              "", "| method | corpus | clip | speech window | meeting copy "
              "| clip ECE (T = 1 -> chosen T) |",
              "|---|---|---|---|---|---|"]
    for name, r in result["methods"].items():
        for corpus, v in r["loco"].items():
            h, a = v["held_out_speakers"], v["all_speakers"]
            lines.append(f"| {name} | {corpus} | {_cell(h.get('clip'))} [{_cell(a.get('clip'))}]"
                         f" | {_cell(h.get('speech_window'))} [{_cell(a.get('speech_window'))}]"
                         f" | {_cell(h.get('meeting'))} | {_ece(h['clip'])} |")
    lines += ["", "Speaker folds within each corpus (accuracy / macro-F1; the held-out fold, "
              "[mean of all folds, accuracy min-max]):", "",
              "| method | corpus | clip | speech window | clip ECE (T = 1 -> chosen T) |",
              "|---|---|---|---|---|"]
    for name, r in result["methods"].items():
        rows = [(name, r["folds"])]
        if r.get("within_rav_only"):
            rows.append((f"{name}, trained on its corpus only", r["within_rav_only"]))
        for label, folds in rows:
            for corpus, v in folds.items():
                h, m = v["held_out_fold"], v["mean"]
                lines.append(
                    f"| {label} | {corpus} | {_cell(h.get('clip'))} [{_cell(m['clip'])}, "
                    f"{m['clip']['accuracy_min']:.2f}-{m['clip']['accuracy_max']:.2f}] | "
                    f"{_cell(h.get('speech_window'))} [{_cell(m.get('speech_window'))}] | "
                    f"{_ece(h['clip'])} |")
    return "\n".join(lines)


def _ece(r: dict) -> str:
    return f"{r['ece']:.3f} -> {r['ece_calibrated']:.3f}"


if __name__ == "__main__":
    raise SystemExit(main())
