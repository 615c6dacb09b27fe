"""Bad input: skipped with a reason, or refused with a clear message; never a crash."""

import csv

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from emotion.core import h5io
from emotion.stages import preprocess_audio as preprocessing_audio
from emotion.stages import preprocess_images
from emotion.stages.preprocess_audio import manifest_path
from emotion.stages.sample_data import draw_face, speech_like


@pytest.fixture
def messy_images(tmp_path, rng):
    root = tmp_path / "images"
    good = root / "train" / "4"
    good.mkdir(parents=True)
    face = draw_face("happy", size=80, rng=rng)
    Image.fromarray(face).save(good / "ok.png")
    Image.fromarray(face[:, :, 0]).save(good / "gray.png")
    Image.fromarray(face).convert("P", palette=Image.Palette.ADAPTIVE).save(good / "pal.png")
    Image.fromarray(face).convert("CMYK").save(good / "cmyk.jpg")
    Image.fromarray(face[:, :, 0].astype(np.uint16) * 257).save(good / "deep.png")
    exif = Image.Exif()
    exif[0x0112] = 8  # "turn 90 degrees counter-clockwise to view": stored turned clockwise,
    Image.fromarray(np.rot90(face, -1)).save(good / "rotated.JPG", exif=exif)  # upright on load
    Image.fromarray(face).save(good / "photo.webp")
    Image.fromarray(face).save(good / "photo.bmp")
    (good / "empty.jpg").write_bytes(b"")
    (good / "text.jpg").write_text("not a picture")
    full = (good / "ok.png").read_bytes()
    (good / "truncated.png").write_bytes(full[: len(full) // 3])
    Image.new("1", (30000, 30000)).save(good / "bomb.png", optimize=True)
    (good / "notes.txt").write_text("hello")
    (root / "train" / "bored").mkdir()
    Image.fromarray(face).save(root / "train" / "bored" / "x.png")
    return root


def test_image_stage_skips_and_records_every_bad_file(messy_images, tmp_path):
    out = tmp_path / "o.h5"
    assert preprocess_images.main(["--src", str(messy_images), "--out", str(out),
                                   "--size", "48", "--workers", "1"]) == 0
    with h5io.open_checked(out, h5io.PREPROCESSED_IMAGES) as f:
        kept = sorted(p.rsplit("/", 1)[-1] for p in h5io.read_strings(f["train/paths"]))
        skipped = {p.rsplit("/", 1)[-1]: r for p, r in h5io.read_skipped(f)}
    assert kept == ["cmyk.jpg", "deep.png", "gray.png", "ok.png", "pal.png", "photo.bmp",
                    "photo.webp", "rotated.JPG"]
    assert "empty" in skipped["empty.jpg"]
    assert "not an image" in skipped["text.jpg"]
    assert "truncated" in skipped["truncated.png"] or "corrupt" in skipped["truncated.png"]
    assert "limit" in skipped["bomb.png"] or "bomb" in skipped["bomb.png"]
    assert "extension" in skipped["notes.txt"]
    assert "unknown class folder" in skipped["x.png"]


def test_image_stage_refuses_a_tree_without_splits(tmp_path, capsys):
    (tmp_path / "happy").mkdir()
    rc = preprocess_images.main(["--src", str(tmp_path), "--out", str(tmp_path / "o.h5")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "no split folder" in err and "Traceback" not in err
    assert not (tmp_path / "o.h5").exists()


def test_image_stage_all_skipped_is_an_error_without_output(tmp_path, capsys):
    d = tmp_path / "src" / "train" / "happy"
    d.mkdir(parents=True)
    (d / "a.jpg").write_bytes(b"junk")
    rc = preprocess_images.main(["--src", str(tmp_path / "src"), "--out", str(tmp_path / "o.h5"),
                                 "--workers", "1"])
    assert rc == 2 and "skipped" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_bad_flags_are_clear(tmp_path, capsys):
    rc = preprocess_images.main(["--src", str(tmp_path), "--class_map", "nonsense"])
    assert rc == 2 and "preset" in capsys.readouterr().err


@pytest.fixture
def messy_audio(tmp_path):
    d = tmp_path / "audio"
    d.mkdir()
    rng = np.random.default_rng(0)
    for actor in (1001, 1002, 1003):
        sf.write(d / f"{actor}_DFA_HAP_XX.wav", speech_like("happy", rng=rng), 16000)
    y = speech_like("sad", rng=rng)
    sf.write(d / "1001_IEO_SAD_HI.wav", np.stack([y, y], 1), 44100, subtype="PCM_24")
    sf.write(d / "1002_IEO_SAD_HI.wav", y, 22050, subtype="PCM_U8")
    sf.write(d / "1003_IEO_SAD_HI.wav", y, 16000, subtype="FLOAT")
    (d / "1001_TIE_ANG_XX.wav").write_bytes(b"")
    (d / "1002_TIE_ANG_XX.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    sf.write(d / "1003_TIE_ANG_XX.wav", np.zeros(16000, np.float32), 16000)
    sf.write(d / "1003_TIE_FEA_XX.wav", np.zeros(0, np.float32), 16000)
    sf.write(d / "recording.wav", y, 16000)
    return d


def test_audio_stage_skips_and_records_every_bad_file(messy_audio, tmp_path):
    out = tmp_path / "a.h5"
    assert preprocessing_audio.main(["--audio_dir", str(messy_audio), "--out_h5", str(out),
                                     "--workers", "1"]) == 0
    with open(manifest_path(out)) as fh:
        rows = {r["path"].rsplit("/", 1)[-1]: r for r in csv.DictReader(fh)}
    assert len(rows) == 11
    ok = sorted(k for k, r in rows.items() if r["status"] == "ok")
    assert ok == ["1001_DFA_HAP_XX.wav", "1001_IEO_SAD_HI.wav", "1002_DFA_HAP_XX.wav",
                  "1002_IEO_SAD_HI.wav", "1003_DFA_HAP_XX.wav", "1003_IEO_SAD_HI.wav"]
    assert "empty" in rows["1001_TIE_ANG_XX.wav"]["reason"]
    assert "unreadable" in rows["1002_TIE_ANG_XX.wav"]["reason"]
    assert "silence" in rows["1003_TIE_ANG_XX.wav"]["reason"]
    assert "zero-length" in rows["1003_TIE_FEA_XX.wav"]["reason"] or \
        "unreadable" in rows["1003_TIE_FEA_XX.wav"]["reason"]
    assert "cannot read a label" in rows["recording.wav"]["reason"]
    with h5io.open_checked(out, h5io.PREPROCESSED_AUDIO) as f:
        assert len(f["labels"]) == 6 and len(h5io.read_skipped(f)) == 5


def test_audio_stage_needs_three_speakers_for_auto_split(tmp_path, capsys):
    d = tmp_path / "audio"
    d.mkdir()
    sf.write(d / "1001_DFA_HAP_XX.wav", speech_like("happy"), 16000)
    rc = preprocessing_audio.main(["--audio_dir", str(d), "--out_h5", str(tmp_path / "a.h5")])
    err = capsys.readouterr().err
    assert rc == 2 and "at least 3 speakers" in err and "--split" in err
    assert not (tmp_path / "a.h5").exists()


def test_audio_stage_missing_folder(tmp_path, capsys):
    rc = preprocessing_audio.main(["--audio_dir", str(tmp_path / "nope")])
    assert rc == 2 and "not a folder" in capsys.readouterr().err
