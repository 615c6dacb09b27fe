import json

import pytest

from emotion.core.errors import LabelError
from emotion.core.labels import (
    ALL_LABELS,
    EMOTIONS,
    check_label_names,
    folder_label,
    load_class_map,
    parse_clip_name,
    read_labels_csv,
)


def test_six_emotions_come_first_in_every_label_list():
    assert EMOTIONS == ("angry", "disgust", "fear", "happy", "neutral", "sad")
    assert ALL_LABELS[:6] == EMOTIONS


@pytest.mark.parametrize("name, label, speaker", [
    ("1001_DFA_ANG_XX.wav", "angry", "1001"),
    ("1091_TSI_DIS_HI.wav", "disgust", "1091"),
    ("1012_IEO_FEA_LO.wav", "fear", "1012"),
    ("1040_ITH_HAP_MD.wav", "happy", "1040"),
    ("1001_DFA_NEU_XX.wav", "neutral", "1001"),
    ("1002_WSI_SAD_XX.wav", "sad", "1002"),
    ("03-01-05-02-01-01-07.wav", "angry", "ravdess_07"),
    ("03-01-01-01-01-01-16.wav", "neutral", "ravdess_16"),
    ("03-01-02-01-01-01-03.wav", "calm", "ravdess_03"),
    ("03-01-06-01-02-02-12.wav", "fear", "ravdess_12"),
    ("03-01-07-01-02-02-12.wav", "disgust", "ravdess_12"),
    ("03-01-08-01-02-02-12.wav", "surprise", "ravdess_12"),
])
def test_clip_names(name, label, speaker):
    found = parse_clip_name(name)
    assert (found.label, found.speaker) == (label, speaker)


@pytest.mark.parametrize("name", ["clip.wav", "1001_DFA_XXX_XX.wav", "03-01-09-01-01-01-01.wav",
                                  "1001-DFA-ANG-XX.wav"])
def test_unparseable_clip_names_say_what_is_expected(name):
    with pytest.raises(LabelError, match="labels.csv"):
        parse_clip_name(name)


def test_labels_csv(tmp_path):
    (tmp_path / "a.wav").touch()
    (tmp_path / "labels.csv").write_text("path,label,speaker\na.wav,Happiness,spk1\n")
    table = read_labels_csv(tmp_path / "labels.csv")
    (entry,) = table.values()
    assert (entry.label, entry.speaker) == ("happy", "spk1")
    assert next(iter(table)) == str((tmp_path / "a.wav").resolve())


@pytest.mark.parametrize("text, match", [
    ("path,label\na.wav,happy\n", "speaker"),
    ("path,label,speaker\na.wav,bored,s1\n", "labels.csv:2"),
    ("path,label,speaker\na.wav,happy,\n", "empty speaker"),
])
def test_bad_labels_csv(tmp_path, text, match):
    (tmp_path / "labels.csv").write_text(text)
    with pytest.raises(LabelError, match=match):
        read_labels_csv(tmp_path / "labels.csv")


def test_class_map_presets():
    seed = load_class_map("seed")
    assert seed[0] == "angry" and seed[7] == "surprise" and seed[1] == "contempt"
    official = load_class_map("affectnet")
    assert official[0] == "neutral" and official[6] == "angry" and official[7] == "contempt"
    assert load_class_map(None) == seed


def test_class_map_json_inline_and_file(tmp_path):
    inline = load_class_map('{"0": "Neutral", "1": "anger"}')
    assert inline == {0: "neutral", 1: "angry"}
    f = tmp_path / "map.json"
    f.write_text(json.dumps({"3": "sad"}))
    assert load_class_map(str(f)) == {3: "sad"}


@pytest.mark.parametrize("spec", ["nope", '{"0": "bored"}', "[1, 2]", '{"x": "sad"}'])
def test_bad_class_maps(spec):
    with pytest.raises(LabelError):
        load_class_map(spec)


def test_folder_labels():
    seed = load_class_map("seed")
    assert folder_label("0", seed) == "angry"
    assert folder_label("Happy", seed) == "happy"
    assert folder_label("surprise", seed) == "surprise"
    with pytest.raises(LabelError, match="--class_map"):
        folder_label("9", seed)
    with pytest.raises(LabelError):
        folder_label("bored", seed)


def test_check_label_names():
    check_label_names(list(ALL_LABELS))
    with pytest.raises(LabelError, match="re-run"):
        check_label_names(["happy", "sad"])
