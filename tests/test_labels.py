import json

import pytest

from emotion.core.errors import LabelError
from emotion.core.labels import (
    ALL_LABELS,
    EMOTIONS,
    check_label_names,
    corpus_of_speaker,
    corpus_speaker,
    folder_label,
    load_class_map,
    parse_clip_name,
    read_labels_csv,
)


def test_six_emotions_come_first_in_every_label_list():
    assert EMOTIONS == ("angry", "disgust", "fear", "happy", "neutral", "sad")
    assert ALL_LABELS[:6] == EMOTIONS


@pytest.mark.parametrize("name, label, speaker", [
    ("1001_DFA_ANG_XX.wav", "angry", "crema_1001"),
    ("1091_TSI_DIS_HI.wav", "disgust", "crema_1091"),
    ("1012_IEO_FEA_LO.wav", "fear", "crema_1012"),
    ("1040_ITH_HAP_MD.wav", "happy", "crema_1040"),
    ("1001_DFA_NEU_XX.wav", "neutral", "crema_1001"),
    ("1002_WSI_SAD_XX.wav", "sad", "crema_1002"),
    ("03-01-05-02-01-01-07.wav", "angry", "ravdess_07"),
    ("03-01-01-01-01-01-16.wav", "neutral", "ravdess_16"),
    ("03-01-02-01-01-01-03.wav", "calm", "ravdess_03"),
    ("03-01-06-01-02-02-12.wav", "fear", "ravdess_12"),
    ("03-01-07-01-02-02-12.wav", "disgust", "ravdess_12"),
    ("03-01-08-01-02-02-12.wav", "surprise", "ravdess_12"),
    ("dis-f1-b1.wav", "disgust", "emovo_f1"),
    ("gio-m3-l4.wav", "happy", "emovo_m3"),
    ("neu-f2-n5.wav", "neutral", "emovo_f2"),
    ("pau-m1-d2.wav", "fear", "emovo_m1"),
    ("rab-f3-b3.wav", "angry", "emovo_f3"),
    ("tri-m2-n1.wav", "sad", "emovo_m2"),
    ("sor-m2-n1.wav", "surprise", "emovo_m2"),
    ("RAB-F1-B1.wav", "angry", "emovo_f1"),
])
def test_clip_names(name, label, speaker):
    """Each naming convention gives the label and a speaker id that starts with its corpus."""
    found = parse_clip_name(name)
    assert (found.label, found.speaker) == (label, speaker)
    assert found.speaker.startswith(found.corpus + "_")
    assert corpus_of_speaker(found.speaker) == found.corpus


@pytest.mark.parametrize("name", ["clip.wav", "1001_DFA_XXX_XX.wav", "03-01-09-01-01-01-01.wav",
                                  "1001-DFA-ANG-XX.wav", "xyz-f1-b1.wav", "rab-x1-b1.wav",
                                  "rab-f1-b1-extra.wav"])
def test_unparseable_clip_names_say_what_is_expected(name):
    with pytest.raises(LabelError, match="labels.csv"):
        parse_clip_name(name)


def test_labels_csv(tmp_path):
    (tmp_path / "a.wav").touch()
    (tmp_path / "labels.csv").write_text("path,label,speaker\na.wav,Happiness,spk1\n")
    table = read_labels_csv(tmp_path / "labels.csv", corpus="mine")
    (entry,) = table.values()
    assert (entry.label, entry.speaker, entry.corpus) == ("happy", "mine_spk1", "mine")
    assert next(iter(table)) == str((tmp_path / "a.wav").resolve())


def test_labels_csv_corpus(tmp_path):
    """A manifest's corpus: its column, else the naming its files all follow, else the
    folder's name; the same speaker name in two corpora is two speakers."""
    folder = tmp_path / "My Corpus_16k"
    folder.mkdir()
    (folder / "labels.csv").write_text("path,label,speaker\na.wav,happy,s1\nb.wav,sad,s1\n")
    assert {c.speaker for c in read_labels_csv(folder / "labels.csv").values()} == \
        {"my-corpus-16k_s1"}
    (folder / "labels.csv").write_text("path,label,speaker\nrab-f1-b1.wav,angry,f1\n"
                                       "tri-m2-n1.wav,sad,m2\n")
    found = read_labels_csv(folder / "labels.csv")
    assert {(c.corpus, c.speaker) for c in found.values()} == {("emovo", "emovo_f1"),
                                                               ("emovo", "emovo_m2")}
    (folder / "labels.csv").write_text("path,label,speaker,corpus\na.wav,happy,s1,X\n"
                                       "b.wav,happy,s1,Y\n")
    assert sorted(c.speaker for c in read_labels_csv(folder / "labels.csv").values()) == \
        ["x_s1", "y_s1"]
    assert corpus_speaker("x", "x_s1") == "x_s1" and corpus_speaker("x", "s1") == "x_s1"


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
