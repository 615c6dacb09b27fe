"""extract_embeddings.py, the embedder artifact, and train/serve equivalence."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
import torch

from emotion.core import h5io
from emotion.core.errors import EmotionError
from emotion.media.audio import load_audio
from emotion.media.images import load_image
from emotion.models.embedder import Embedder
from emotion.models.image_backbone import (
    BF16_MIN_COSINE,
    ImageEmbedder,
    cpu_supports_bf16,
    imagenet_state,
    load_state,
    make_backbone,
)
from emotion.models.voice import N_LOGITS
from emotion.stages import extract as extract_embeddings


def test_embedding_files_have_the_contracted_shapes(embedded, preprocessed):
    with h5io.open_checked(embedded["images"], h5io.EMBEDDINGS_IMAGES) as f, \
            h5io.open_checked(preprocessed[0], h5io.PREPROCESSED_IMAGES) as src:
        for split in ("train", "val", "test"):
            assert f[f"{split}/embeddings"].shape == (len(src[f"{split}/labels"]), 512)
            assert np.array_equal(f[f"{split}/labels"][()], src[f"{split}/labels"][()])
            assert np.isfinite(f[f"{split}/embeddings"][()]).all()
    with h5io.open_checked(embedded["audio"], h5io.EMBEDDINGS_AUDIO) as f:
        assert f["all/embeddings"].shape[1] == 128
        assert f["all/out_of_fold"][()].all()  # every clip's logits from a fold without it


def test_no_speaker_in_two_splits(embedded):
    with h5io.open_checked(embedded["audio"], h5io.EMBEDDINGS_AUDIO) as f:
        speakers = h5io.read_strings(f["all/speakers"])
        splits = h5io.read_strings(f["all/splits"])
    seen: dict[str, set] = {}
    for s, sp in zip(speakers, splits, strict=True):
        seen.setdefault(s, set()).add(sp)
    assert all(len(v) == 1 for v in seen.values()), seen
    assert {"train", "val", "test"} <= {next(iter(v)) for v in seen.values()}


def test_embedder_round_trip_and_weights_only(embedded):
    raw = torch.load(embedded["embedder"], weights_only=True)
    assert raw["image"]["backbone"] == "resnet18" and raw["audio"]["dim"] == 128
    a, b = Embedder.load(embedded["embedder"]), Embedder.load(embedded["embedder"])
    assert a.embedder_id == b.embedder_id
    with h5io.open_checked(embedded["images"], h5io.EMBEDDINGS_IMAGES) as f:
        assert f.attrs["embedder_id"] == a.embedder_id


def test_train_serve_equivalence_images(embedded):
    """An original training photo, embedded through embedder.pt, gives its stored row."""
    emb = Embedder.load(embedded["embedder"])
    with h5io.open_checked(embedded["images"], h5io.EMBEDDINGS_IMAGES) as f:
        for split in ("train", "test"):
            paths = h5io.read_strings(f[f"{split}/paths"])
            for i in (0, len(paths) - 1):
                crop = emb.face(load_image(paths[i])).image
                mine = emb.embed_images(crop[None].astype(np.float32) / 255.0)[0]
                stored = f[f"{split}/embeddings"][i]
                cos = mine @ stored / (np.linalg.norm(mine) * np.linalg.norm(stored))
                assert cos > 0.999, (split, i, cos)
                np.testing.assert_allclose(mine, stored, rtol=0.05, atol=0.05)


def test_train_serve_equivalence_audio(embedded):
    """A clip's file, embedded through embedder.pt as serving embeds a window, gives the
    stored row's principal components; its stored logits are out of fold (from a head that
    never heard its speaker), so they differ from the final head's."""
    emb = Embedder.load(embedded["embedder"])
    with h5io.open_checked(embedded["audio"], h5io.EMBEDDINGS_AUDIO) as f:
        paths = h5io.read_strings(f["all/paths"])
        stored = f["all/embeddings"][()]
    rows = [0, len(paths) // 2, len(paths) - 1]
    mine = np.stack([emb.audio_embedding(*load_audio(paths[i])) for i in rows])
    np.testing.assert_allclose(mine[:, N_LOGITS:], stored[rows, N_LOGITS:], rtol=1e-4,
                               atol=1e-3)
    assert not np.allclose(mine[:, :N_LOGITS], stored[rows, :N_LOGITS], atol=1e-3)


def test_reusing_the_embedder_embeds_an_external_set_identically(embedded, preprocessed,
                                                                   tmp_path):
    img_h5, aud_h5 = preprocessed
    out_i, out_a = tmp_path / "ei.h5", tmp_path / "ea.h5"
    assert extract_embeddings.main([
        "--image_h5", str(img_h5), "--audio_h5", str(aud_h5), "--out_image_h5", str(out_i),
        "--out_audio_h5", str(out_a), "--embedder", str(embedded["embedder"]),
        "--device", "cpu"]) == 0
    with h5py.File(out_a) as new, h5py.File(embedded["audio"]) as old:
        # the same components; the final head's logits, not the out-of-fold ones
        np.testing.assert_allclose(new["all/embeddings"][()][:, N_LOGITS:],
                                   old["all/embeddings"][()][:, N_LOGITS:], atol=1e-3)
        assert not new["all/out_of_fold"][()].any()
        assert new.attrs["embedder_id"] == old.attrs["embedder_id"]
    with h5py.File(out_i) as new, h5py.File(embedded["images"]) as old:
        np.testing.assert_allclose(new["test/embeddings"][()], old["test/embeddings"][()],
                                   atol=1e-5)


@pytest.mark.skipif(not cpu_supports_bf16(), reason="this CPU has no bf16")
def test_bf16_agrees_with_fp32(preprocessed):
    """bf16 autocast is used only because its embeddings match fp32's this closely."""
    state, _ = load_state("none", seed=0)
    embedder = ImageEmbedder(make_backbone(state))
    with h5io.open_checked(preprocessed[0], h5io.PREPROCESSED_IMAGES) as f:
        x = h5io.read_images(f["test/images"], slice(0, 8))
    embedder.precision = "fp32"
    a = embedder(x)
    embedder.precision = "bf16"
    b = embedder(x)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cos.min() >= BF16_MIN_COSINE
    assert embedder.choose_precision(x, "auto") == "bf16"
    assert embedder.choose_precision(x, "fp32") == "fp32"


def test_imagenet_weights_missing_gives_a_clear_message(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(EmotionError, match=r"resnet18-f37072fd\.pth.*--image_weights"):
        imagenet_state()


def test_image_weights_from_a_file(tmp_path):
    state, _ = load_state("none", seed=3)
    torch.save({"state_dict": state}, tmp_path / "face.pt")
    loaded, desc = load_state(str(tmp_path / "face.pt"))
    assert desc == "file:face.pt"
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(EmotionError, match="not a readable"):
        load_state(str(tmp_path / "junk.pt"))


def _run(argv, capsys):
    rc = extract_embeddings.main(argv)
    return rc, capsys.readouterr().err


def test_wrong_schema_is_a_clear_error(preprocessed, tmp_path, capsys):
    img_h5, aud_h5 = preprocessed
    rc, err = _run(["--image_h5", str(aud_h5), "--audio_h5", str(aud_h5),
                    "--out_image_h5", str(tmp_path / "i.h5"),
                    "--out_audio_h5", str(tmp_path / "a.h5"), "--image_weights", "none"], capsys)
    assert rc == 2 and "holds preprocessed_audio, not preprocessed_images" in err
    assert "Traceback" not in err and not (tmp_path / "i.h5").exists()


def test_wrong_label_names_are_a_clear_error(preprocessed, tmp_path, capsys):
    img_h5, aud_h5 = preprocessed
    bad = tmp_path / "bad_audio.h5"
    shutil.copy(aud_h5, bad)
    with h5py.File(bad, "a") as f:
        f.attrs["label_names"] = '["happy", "sad"]'
    rc, err = _run(["--image_h5", str(img_h5), "--audio_h5", str(bad),
                    "--out_image_h5", str(tmp_path / "i.h5"),
                    "--out_audio_h5", str(tmp_path / "a.h5"), "--image_weights", "none"], capsys)
    assert rc == 2 and "label" in err and "Traceback" not in err


def test_no_train_clips_needs_an_embedder(preprocessed, tmp_path, capsys):
    img_h5, aud_h5 = preprocessed
    bad = tmp_path / "test_only.h5"
    shutil.copy(aud_h5, bad)
    with h5py.File(bad, "a") as f:
        n = len(f["splits"])
        del f["splits"]
        h5io.write_strings(f, "splits", ["test"] * n)
    rc, err = _run(["--image_h5", str(img_h5), "--audio_h5", str(bad),
                    "--out_image_h5", str(tmp_path / "i.h5"),
                    "--out_audio_h5", str(tmp_path / "a.h5"), "--image_weights", "none"], capsys)
    assert rc == 2 and "--embedder" in err and "no train clips" in err
