"""The two preprocessing stages, run through their scripts' main()."""

import csv

import h5py
import numpy as np
import pytest
from PIL import Image

from emotion.core import h5io
from emotion.core.labels import ALL_LABELS, EMOTIONS
from emotion.stages import preprocess_audio as preprocessing_audio
from emotion.stages import preprocess_images
from emotion.stages.preprocess_audio import manifest_path
from emotion.stages.sample_data import draw_face


def test_image_stage_output_validates(preprocessed):
    img_h5, _ = preprocessed
    with h5io.open_checked(img_h5, h5io.PREPROCESSED_IMAGES) as f:
        assert h5io.splits_of(f, h5io.PREPROCESSED_IMAGES) == ["train", "val", "test"]
        train = f["train"]
        assert train["images"].shape == (6 * 6 + 2, 64, 64, 3)
        assert train["images"].dtype == np.uint8
        assert f["val/images"].shape[0] == f["test/images"].shape[0] == 18
        labels = train["labels"][()]
        assert np.bincount(labels, minlength=len(ALL_LABELS))[ALL_LABELS.index("surprise")] == 2
        assert set(labels) - {ALL_LABELS.index("surprise")} == set(range(6))
        paths = h5io.read_strings(train["paths"])
        assert all(p.endswith(".png") for p in paths)
        # Each image is stored under the label of its folder.
        for p, y in zip(paths, labels, strict=True):
            assert p.split("/")[-1].startswith(ALL_LABELS[y])
        assert f.attrs["value_scale"] == pytest.approx(1 / 255)
        assert h5io.read_skipped(f) == []


def test_audio_stage_output_validates(preprocessed):
    _, aud_h5 = preprocessed
    with h5io.open_checked(aud_h5, h5io.PREPROCESSED_AUDIO) as f:
        assert f["features/fixed"].shape == (6 * 6 * 2, 64, 301)
        speakers = h5io.read_strings(f["speakers"])
        splits = h5io.read_strings(f["splits"])
        labels = f["labels"][()]
        assert set(labels) == set(range(len(EMOTIONS)))
        assert np.isfinite(f["features/fixed"][()]).all()
    by_speaker = {}
    for s, sp in zip(speakers, splits, strict=True):
        by_speaker.setdefault(s, set()).add(sp)
    assert all(len(v) == 1 for v in by_speaker.values()), "a speaker is in two splits"
    assert set(splits) == {"train", "val", "test"}
    with open(manifest_path(aud_h5)) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 72 and {r["status"] for r in rows} == {"ok"}
    assert set(rows[0]) == {"path", "label", "speaker", "corpus", "duration", "split", "status",
                            "reason"}


def _run_audio(audio_dir, out, *extra):
    return preprocessing_audio.main(["--audio_dir", str(audio_dir), "--out_h5", str(out),
                                     "--workers", "1", *extra])


def test_speaker_split_is_seeded(sample_set, tmp_path):
    audio_dir, _ = sample_set

    def splits(seed):
        out = tmp_path / f"a{seed}.h5"
        assert _run_audio(audio_dir, out, "--seed", str(seed)) == 0
        with h5py.File(out) as f:
            return h5io.attr_json(f, "speaker_splits")

    assert splits(3) == splits(3)
    assert any(splits(s) != splits(3) for s in (4, 5, 6))


def test_split_option_puts_every_clip_in_one_split(sample_set, tmp_path):
    audio_dir, _ = sample_set
    assert _run_audio(audio_dir, tmp_path / "t.h5", "--split", "test") == 0
    with h5py.File(tmp_path / "t.h5") as f:
        assert set(h5io.read_strings(f["splits"])) == {"test"}


def test_labels_csv_convention(tmp_path):
    import soundfile as sf

    from emotion.stages.sample_data import speech_like

    folder = tmp_path / "corpus"
    folder.mkdir()
    rows = ["path,label,speaker"]
    for i, (emo, spk) in enumerate([("happy", "a"), ("sad", "b"), ("angry", "c"),
                                    ("neutral", "a")]):
        sf.write(folder / f"take{i}.wav", speech_like(emo, rng=np.random.default_rng(i)), 16000)
        rows.append(f"take{i}.wav,{emo},{spk}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    assert _run_audio(folder, tmp_path / "o.h5") == 0
    with h5py.File(tmp_path / "o.h5") as f:
        got = dict(zip(h5io.read_strings(f["paths"]), f["labels"][()], strict=True))
        spk = dict(zip(h5io.read_strings(f["paths"]), h5io.read_strings(f["speakers"]),
                       strict=True))
    assert ALL_LABELS[got[str((folder / "take1.wav").resolve())]] == "sad"
    assert spk[str((folder / "take3.wav").resolve())] == "corpus_a"


def test_affectnet_class_map_and_float32(tmp_path, rng):
    for split in ("train", "test"):
        for cid in ("0", "6", "7"):
            d = tmp_path / "src" / split / cid
            d.mkdir(parents=True)
            # a tight face crop (as data sets hold faces): the centre-square check takes it
            Image.fromarray(draw_face("neutral", size=128, rng=rng)[24:104, 24:104]).save(
                d / "x.jpg")
    out = tmp_path / "o.h5"
    assert preprocess_images.main(["--src", str(tmp_path / "src"), "--out", str(out),
                                   "--size", "32", "--class_map", "affectnet", "--dtype",
                                   "float32", "--face_crop", "0", "--workers", "1"]) == 0
    with h5io.open_checked(out, h5io.PREPROCESSED_IMAGES) as f:
        names = sorted(ALL_LABELS[i] for i in f["train/labels"][()])
        assert names == ["angry", "contempt", "neutral"]
        x = f["test/images"][()]
        assert x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1
        assert h5io.read_images(f["test/images"], slice(0, 1)).shape == (1, 32, 32, 3)
        # --face_crop 0: no detector, so every face is the centre-square check's
        assert not f["train/face_detected"][()].any()


def test_parallel_workers_write_the_same_file(sample_set, preprocessed, tmp_path):
    _, images_dir = sample_set
    img_h5, _ = preprocessed
    out = tmp_path / "par.h5"
    assert preprocess_images.main(["--src", str(images_dir), "--out", str(out), "--size", "64",
                                   "--workers", "2"]) == 0
    with h5py.File(img_h5) as a, h5py.File(out) as b:
        for split in ("train", "val", "test"):
            np.testing.assert_array_equal(a[f"{split}/images"][()], b[f"{split}/images"][()])
            assert h5io.read_strings(a[f"{split}/paths"]) == h5io.read_strings(b[f"{split}/paths"])


def test_interrupted_run_leaves_no_output(sample_set, tmp_path, monkeypatch, capsys):
    from emotion.stages import preprocess_images as image_prep

    _, images_dir = sample_set
    real, calls = image_prep._process, []

    def interrupted(item, **kw):
        calls.append(item)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(item, **kw)

    monkeypatch.setattr(image_prep, "_process", interrupted)
    out = tmp_path / "out" / "preprocessed_images.h5"
    rc = preprocess_images.main(["--src", str(images_dir), "--out", str(out), "--workers", "1"])
    assert rc == 130 and "interrupted" in capsys.readouterr().err
    assert list(out.parent.iterdir()) == []


def test_audio_interrupted_run_keeps_the_previous_file(sample_set, preprocessed, tmp_path,
                                                       monkeypatch):
    from emotion.stages import preprocess_audio as audio_prep

    audio_dir, _ = sample_set
    out = tmp_path / "a.h5"
    out.write_bytes(preprocessed[1].read_bytes())
    before = out.read_bytes()

    def boom(clip, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(audio_prep, "_featurise", boom)
    assert _run_audio(audio_dir, out) == 130
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5"]


def _corpus(folder, names, rng):
    import soundfile as sf

    from emotion.stages.sample_data import speech_like

    folder.mkdir()
    for name, emotion in names:
        sf.write(folder / name, speech_like(emotion, duration=1.5, rng=rng), 16000)
    return folder


def test_several_corpora_in_one_file(tmp_path):
    """RAVDESS, EMOVO and a labels.csv folder, each read with its own naming: every
    clip's corpus is stored, its speaker id carries it, and each corpus is split by
    speaker on its own, so that no person is on two sides, and speaker "07" of one
    corpus is not actor 07 of RAVDESS."""
    rng = np.random.default_rng(0)
    codes = {"angry": "05", "sad": "04", "happy": "03"}
    rav = _corpus(tmp_path / "rav", [(f"03-01-{codes[e]}-01-01-01-{a:02d}.wav", e)
                                     for a in (1, 2, 7) for e in codes], rng)
    emo = _corpus(tmp_path / "emo", [(f"{c}-{s}-b1.wav", e) for s in ("f1", "m1", "f2")
                                     for c, e in (("rab", "angry"), ("tri", "sad"))], rng)
    other = _corpus(tmp_path / "Other", [(f"t{i}.wav", "happy") for i in range(3)], rng)
    (other / "labels.csv").write_text("path,label,speaker\nt0.wav,happy,07\n"
                                      "t1.wav,happy,08\nt2.wav,happy,09\n")
    out = tmp_path / "all.h5"
    assert preprocessing_audio.main(["--audio_dir", str(rav), "--audio_dir", str(emo),
                                     "--audio_dir", str(other), "--out_h5", str(out),
                                     "--workers", "1"]) == 0
    with h5io.open_checked(out, h5io.PREPROCESSED_AUDIO) as f:
        speakers, splits = h5io.read_strings(f["speakers"]), h5io.read_strings(f["splits"])
        corpora = h5io.corpora_of(f)
        assert h5io.read_strings(f["corpora"]) == corpora
    assert sorted(set(corpora)) == ["emovo", "other", "ravdess"]
    assert {"ravdess_07", "other_07", "emovo_f1"} <= set(speakers)
    assert all(s.startswith(c + "_") for s, c in zip(speakers, corpora, strict=True))
    sides = {}
    for s, sp in zip(speakers, splits, strict=True):
        sides.setdefault(s, set()).add(sp)
    assert all(len(v) == 1 for v in sides.values()), "a speaker is in two splits"
    for corpus in ("emovo", "other", "ravdess"):  # three speakers each: one per split
        assert {sp for sp, c in zip(splits, corpora, strict=True) if c == corpus} == \
            {"train", "val", "test"}
    with open(manifest_path(out)) as fh:
        assert {r["corpus"] for r in csv.DictReader(fh)} == {"emovo", "other", "ravdess"}


def test_labels_csv_option_names_one_folder(sample_set, tmp_path):
    audio_dir, _ = sample_set
    assert preprocessing_audio.main(["--audio_dir", str(audio_dir), "--audio_dir",
                                     str(audio_dir), "--labels_csv", "x.csv", "--out_h5",
                                     str(tmp_path / "o.h5")]) != 0
