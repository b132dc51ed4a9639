"""Tests for the language-modelling data: corpora, BPTT windows, LM streams."""

import logging
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import tensorflow as tf

from data_tf import (
    STREAM_ARCH,
    STREAM_EVAL,
    STREAM_TRAIN,
    DatasetNotFoundError,
    LMStream,
    TextCorpus,
    batchify,
    bptt_windows,
    load_text_corpus,
    make_lm_search_inputs,
    make_lm_train_inputs,
)
from data_tf import lm_inputs, text_corpora



def _write(directory, files):
    os.makedirs(directory, exist_ok=True)
    for name, text in files.items():
        with open(os.path.join(directory, name), "w", encoding="utf-8") as handle:
            handle.write(text)
    return str(directory)


def _reference_encode(paths):
    """AWD-LSTM's data.py: ``line.split() + ['<eos>']``, vocabulary from train."""
    vocab, streams = {}, []
    for split, path in enumerate(paths):
        ids, unknown = [], 0
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                for word in line.split() + ["<eos>"]:
                    if split == 0:
                        vocab.setdefault(word, len(vocab))
                    elif word not in vocab:
                        unknown += 1
                        word = "<unk>"
                    ids.append(vocab.setdefault(word, len(vocab)))
        streams.append((ids, unknown))
    return list(vocab), streams


def _fake_context(pipelines, pipeline_id, replicas):
    return types.SimpleNamespace(num_input_pipelines=pipelines, input_pipeline_id=pipeline_id,
                                 num_replicas_in_sync=replicas)


def _elements(dataset):
    return [{k: v.numpy() for k, v in element.items()} for element in dataset]


# ---------------------------------------------------------------------------
# Corpora
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ptb(ptb_dir):
    return load_text_corpus("ptb", ptb_dir)


def test_real_ptb_matches_awd_lstm_tokenisation(ptb, ptb_dir):
    vocab, streams = _reference_encode(
        [os.path.join(ptb_dir, f) for f in ("train.txt", "valid.txt", "test.txt")])
    assert ptb.vocab == tuple(vocab)           # train only, first-occurrence order
    assert ptb.source == ptb_dir
    for split, (ids, unknown) in zip(("train", "valid", "test"), streams):
        array = getattr(ptb, split)
        assert array.dtype == np.int32 and array.ndim == 1
        np.testing.assert_array_equal(array, ids)
        assert ptb.unknown_counts[split] == unknown
    assert ptb.unknown_counts["valid"] > 0 and ptb.unknown_counts["test"] > 0
    with open(os.path.join(ptb_dir, "train.txt"), encoding="utf-8") as handle:
        num_lines = sum(1 for _ in handle)
    assert int((ptb.train == ptb.eos_id).sum()) == num_lines
    # PTB's own text holds <unk>: it keeps its first-occurrence id, nothing appended.
    assert ptb.vocab.index("<unk>") < ptb.vocab_size - 1
    assert ptb.sizes() == {"train": len(streams[0][0]), "valid": len(streams[1][0]),
                           "test": len(streams[2][0]), "vocab": len(vocab)}
    assert ptb.words(ptb.word_ids("the stock market")) == ["the", "stock", "market"]


def test_hand_written_corpus_unknown_words_and_blank_lines(tmp_path, caplog):
    directory = _write(tmp_path, {"ptb.train.txt": "a b a\nc\n",
                                  "ptb.valid.txt": "a d\n\nb e e\n",
                                  "ptb.test.txt": " c  a \n"})
    with caplog.at_level(logging.INFO, logger="absl"):
        corpus = load_text_corpus("ptb", directory)
    assert corpus.vocab == ("a", "b", "<eos>", "c", "<unk>")   # <unk> appended
    assert corpus.train.tolist() == [0, 1, 0, 2, 3, 2]
    assert corpus.valid.tolist() == [0, 4, 2, 2, 1, 4, 4, 2]    # blank line -> <eos>
    assert corpus.test.tolist() == [3, 0, 2]
    assert corpus.unknown_counts == {"train": 0, "valid": 3, "test": 0}
    messages = [r.getMessage() for r in caplog.records]
    assert "ptb valid: 3 words not in the training vocabulary mapped to <unk>" in messages
    assert not any("ptb test" in m for m in messages)


WT2_TRAIN = (" \n = Valkyria Chronicles III = \n \n Senjō no Valkyria 3 : Unrecorded "
             "Chronicles is a tactical role @-@ playing video game . \n \n"
             " = = Gameplay = = \n \n The game began development in 2010 . \n")
WT2_VALID = " \n = Homarus gammarus = \n \n Homarus gammarus is a lobster . \n"
WT2_TEST = " \n = Robert Boulter = \n \n Robert Boulter is an English film actor . \n"


def test_wikitext2_layout_and_subfolder(tmp_path):
    _write(tmp_path / "wikitext-2", {"wiki.train.tokens": WT2_TRAIN,
                                     "wiki.valid.tokens": WT2_VALID,
                                     "wiki.test.tokens": WT2_TEST})
    corpus = load_text_corpus("wt2", str(tmp_path))
    assert corpus.source == str(tmp_path / "wikitext-2")
    assert corpus.vocab[:3] == ("<eos>", "=", "Valkyria")
    words = corpus.words(corpus.train)
    assert words[:6] == ["<eos>", "=", "Valkyria", "Chronicles", "III", "="]
    assert "@-@" in corpus.vocab and "Senjō" in corpus.vocab
    assert words.count("<eos>") == WT2_TRAIN.count("\n")        # blank lines count too
    assert corpus.vocab[-1] == "<unk>"
    # "Homarus", "gammarus" x2 each, "lobster"; "Robert", "Boulter" x2 each, ...
    assert corpus.unknown_counts["valid"] == 5
    assert corpus.unknown_counts["test"] == 8


def test_missing_places_and_files_are_named(tmp_path, monkeypatch):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(DatasetNotFoundError) as info:
        load_text_corpus("ptb", missing)
    message = str(info.value)
    assert "\n" not in message
    assert f"{missing} (no such directory)" in message
    assert "ptb.train.txt, ptb.valid.txt, ptb.test.txt" in message
    assert "train.txt, valid.txt, test.txt" in message

    partial = _write(tmp_path / "partial", {"ptb.train.txt": "a\n", "ptb.valid.txt": "a\n"})
    with pytest.raises(DatasetNotFoundError, match=r"partial \(missing ptb\.test\.txt\)"):
        load_text_corpus("ptb", partial)

    empty = _write(tmp_path / "empty", {"wiki.train.tokens": "a\n", "wiki.valid.tokens": " \n",
                                        "wiki.test.tokens": "a\n"})
    with pytest.raises(DatasetNotFoundError, match=r"wiki\.valid\.tokens is empty"):
        load_text_corpus("wt2", empty)

    # No data_dir: $DATANAS_DATA_DIR/<name>, then ~/datasets/<dir>; every place named.
    monkeypatch.setenv("DATANAS_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setattr(text_corpora, "DEFAULT_DATASETS_DIR", str(tmp_path / "home"))
    with pytest.raises(DatasetNotFoundError) as info:
        load_text_corpus("wt2")
    message = str(info.value)
    for place in (tmp_path / "env" / "wt2", tmp_path / "home" / "wikitext-2"):
        assert str(place) in message
    assert "wiki.train.tokens" in message and "DATANAS_DATA_DIR" in message
    _write(tmp_path / "env" / "wt2", {"train.txt": "x y\n", "valid.txt": "y\n",
                                      "test.txt": "x\n"})
    assert load_text_corpus("wt2").source == str(tmp_path / "env" / "wt2")

    with pytest.raises(ValueError, match="'ptb2'.*ptb, wt2"):
        load_text_corpus("ptb2", str(tmp_path))


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    directory = _write(tmp_path, {"train.txt": "a b\n", "test.txt": "a\n"})
    with open(os.path.join(directory, "valid.txt"), "wb") as handle:
        handle.write("a b\nc\xe9\n".encode("latin-1"))   # 'cé' in Latin-1
    with pytest.raises(ValueError) as info:
        load_text_corpus("ptb", directory)
    assert str(info.value) == (f"{os.path.join(directory, 'valid.txt')} is not UTF-8 text "
                               "(invalid continuation byte: byte 0xe9 at offset 5); corpus "
                               "files must be UTF-8 encoded.")


def test_importing_data_tf_stays_light():
    code = ("import sys, data_tf, data_tf.text_corpora, data_tf.lm_inputs; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'; "
            "assert data_tf.SUPPORTED_TEXT_DATASETS == ('ptb', 'wt2')")
    subprocess.run([sys.executable, "-c", code], check=True,
                   cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ---------------------------------------------------------------------------
# batchify and windows
# ---------------------------------------------------------------------------


def test_batchify_is_row_major_contiguous():
    matrix = batchify(np.arange(23), 4)
    assert matrix.dtype == np.int32 and matrix.shape == (4, 5)
    np.testing.assert_array_equal(matrix, np.arange(20).reshape(4, 5))
    with pytest.raises(ValueError, match="1 per row for 4 rows"):
        batchify(np.arange(7), 4)


def _check_consecutive(windows, length):
    assert windows[0][0] == 0
    for (start, size), (next_start, _) in zip(windows, windows[1:]):
        assert next_start == start + size
    assert all(size >= 1 for _, size in windows)
    assert windows[-1][0] + windows[-1][1] <= length - 1


def test_bptt_windows_cover_the_row_once():
    length = 5001
    fixed = bptt_windows(length, 35, seed=0, epoch=0, variable=False)
    _check_consecutive(fixed, length)
    assert sum(n for _, n in fixed) == length - 1
    assert [n for _, n in fixed[:-1]] == [35] * (len(fixed) - 1) and fixed[-1][1] == 30

    sizes = []
    for epoch in range(5):
        windows = bptt_windows(length, 35, seed=7, epoch=epoch)
        _check_consecutive(windows, length)
        assert sum(n for _, n in windows) == length - 1
        assert windows == bptt_windows(length, 35, seed=7, epoch=epoch)   # pure function
        body = [n for _, n in windows[:-1]]
        assert min(body) >= 5 and max(n for _, n in windows) <= 55
        sizes += body
    assert bptt_windows(length, 35, seed=7, epoch=0) != bptt_windows(length, 35, seed=7,
                                                                       epoch=1)
    assert bptt_windows(length, 35, seed=7, epoch=0) != bptt_windows(length, 35, seed=8,
                                                                       epoch=0)
    assert 17 in sizes or 18 in sizes or min(sizes) < 25     # half-length draws happen
    mean, std = lm_inputs.window_length_moments(35)
    assert abs(np.mean(sizes) - mean) < 0.8 and abs(np.std(sizes) - std) < 1.0

    tight = bptt_windows(2000, 10, seed=1, epoch=0, min_len=8, max_delta=2, jitter_std=20.0)
    assert {n for _, n in tight[:-1]} <= set(range(8, 13))


def test_fixed_window_count_truncates_or_splits():
    length = 1001
    count = lm_inputs.epoch_window_count(length, 35)
    seen = set()
    for epoch in range(40):
        natural = bptt_windows(length, 35, seed=0, epoch=epoch)
        windows = bptt_windows(length, 35, seed=0, epoch=epoch, num_windows=count)
        assert len(windows) == count
        _check_consecutive(windows, length)
        if len(natural) >= count:     # the first `count` DARTS windows, the rest unread
            assert windows == natural[:count]
            seen.add("truncated")
        else:                         # the row covered, longest windows halved
            assert sum(n for _, n in windows) == length - 1
            seen.add("split")
    assert seen == {"truncated", "split"}
    assert lm_inputs.epoch_window_count(length, 35, variable=False) == 29


# ---------------------------------------------------------------------------
# LMStream datasets
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stream():
    return LMStream(batchify(np.arange(4 * 300), 4), bptt=12, variable=True, seed=5)


def test_dataset_windows_are_contiguous_shifted_streams(stream):
    assert stream.steps_per_epoch == lm_inputs.epoch_window_count(300, 12)
    dataset = stream.dataset(2)
    spec = dataset.element_spec
    assert spec["tokens"].shape.as_list() == [4, None] and spec["tokens"].dtype == tf.int32
    assert spec["seed"].shape.as_list() == [2] and spec["seed"].dtype == tf.int64
    elements = _elements(dataset)
    windows = stream.windows(2)
    assert len(elements) == len(windows) == stream.steps_per_epoch
    for k, (element, (start, size)) in enumerate(zip(elements, windows)):
        assert element["length"] == size and element["tokens"].shape == (4, size)
        assert element["reset"] == (k == 0)
        assert element["stream"] == STREAM_TRAIN
        assert element["seed"].tolist() == [5, 2 * 1_000_000 + k]
    tokens = np.concatenate([e["tokens"] for e in elements], axis=1)
    targets = np.concatenate([e["targets"] for e in elements], axis=1)
    end = windows[-1][0] + windows[-1][1]
    np.testing.assert_array_equal(tokens, stream.tokens[:, :end])
    np.testing.assert_array_equal(targets, stream.tokens[:, 1:end + 1])
    assert _elements(stream.dataset(2))[3]["tokens"].tolist() == elements[3]["tokens"].tolist()


def test_replicas_get_consecutive_elements_of_their_rows(stream):
    whole = _elements(stream.dataset(1))
    split = _elements(stream.dataset(1, _fake_context(1, 0, 2)))
    assert len(split) == 2 * len(whole)
    for k, element in enumerate(whole):
        first, second = split[2 * k], split[2 * k + 1]
        np.testing.assert_array_equal(first["tokens"], element["tokens"][:2])
        np.testing.assert_array_equal(second["tokens"], element["tokens"][2:])
        np.testing.assert_array_equal(
            np.concatenate([first["targets"], second["targets"]]), element["targets"])
        assert first["seed"].tolist() == second["seed"].tolist() == element["seed"].tolist()
        assert first["length"] == second["length"] == element["length"]
    # Two pipelines of two replicas each: pipeline 1 serves replicas 2 and 3.
    second_pipeline = _elements(stream.dataset(1, _fake_context(2, 1, 4)))
    assert len(second_pipeline) == 2 * len(whole)
    np.testing.assert_array_equal(second_pipeline[0]["tokens"], whole[0]["tokens"][2:3])
    np.testing.assert_array_equal(second_pipeline[1]["tokens"], whole[0]["tokens"][3:4])
    with pytest.raises(ValueError, match="--batch_size=4 is not divisible by the 3 replicas"):
        stream.dataset(1, _fake_context(1, 0, 3))


def test_skipping_resumes_exactly(stream):
    full = _elements(stream.dataset(3, _fake_context(1, 0, 2)))
    skipped = _elements(stream.dataset(3, _fake_context(1, 0, 2)).skip(5 * 2))
    by_argument = _elements(stream.dataset(3, _fake_context(1, 0, 2), skip_windows=5))
    assert len(skipped) == len(by_argument) == len(full) - 10
    for a, b, c in zip(full[10:], skipped, by_argument):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
            np.testing.assert_array_equal(a[key], c[key])
    assert not skipped[0]["reset"]


# ---------------------------------------------------------------------------
# Search and training inputs
# ---------------------------------------------------------------------------


def _distinct_corpus(n_train=2000):
    """Every training position has its own id; valid/test ids never occur in train."""
    vocab = ["<eos>", "<unk>"] + [f"w{i}" for i in range(n_train + 400)]
    train = np.arange(2, 2 + n_train)
    valid = np.arange(2 + n_train, 2 + n_train + 200)
    test = np.arange(2 + n_train + 200, 2 + n_train + 400)
    return TextCorpus(name="ptb", source="memory", vocab=tuple(vocab), train=train,
                      valid=valid, test=test, unknown_counts={})


def _stream_ids(dataset):
    return {int(i) for e in dataset for i in np.ravel(e["tokens"].numpy())} | \
           {int(i) for e in dataset for i in np.ravel(e["targets"].numpy())}


def test_search_validation_is_the_end_of_train_and_never_test():
    corpus = _distinct_corpus()
    inputs = make_lm_search_inputs(corpus, batch_size=4, eval_batch_size=2, bptt=10, seed=1)
    train_ids = set(corpus.train.tolist())
    valid_ids = _stream_ids(inputs.validation())
    weight_ids = _stream_ids(inputs.train(0))
    assert valid_ids == set(corpus.train[-200:].tolist())        # last 10%, all of it
    assert weight_ids <= set(corpus.train[:1800].tolist())
    assert not valid_ids & weight_ids
    assert (valid_ids | weight_ids) <= train_ids                  # no valid/test token
    valid = _elements(inputs.validation())
    assert [e["reset"] for e in valid] == [True] + [False] * (len(valid) - 1)
    assert {int(e["stream"]) for e in valid} == {STREAM_EVAL}
    assert {int(e["length"]) for e in valid[:-1]} == {10}
    assert inputs.arch(0) is None
    assert inputs.sizes() == {"train": 1800, "arch": 0, "validation": 200,
                              "vocab": corpus.vocab_size}
    assert inputs.distributed_steps_per_epoch(1, 2) == inputs.steps_per_epoch
    with pytest.raises(ValueError, match="--eval_batch_size=2 is not divisible by the 4"):
        inputs.distributed_steps_per_epoch(1, 4)
    with pytest.raises(ValueError, match="--batch_size=4 is not divisible by the 3"):
        inputs.distributed_steps_per_epoch(1, 3)


def test_separate_arch_split_halves_with_shared_windows():
    corpus = _distinct_corpus()
    inputs = make_lm_search_inputs(corpus, batch_size=4, bptt=10, separate_arch_split=True,
                                   train_tokens=1000, validation_fraction=0.2)
    weights, arch = _elements(inputs.train(1)), _elements(inputs.arch(1))
    assert {int(e["stream"]) for e in arch} == {STREAM_ARCH}
    assert [e["length"] for e in weights] == [e["length"] for e in arch]
    weight_ids = {int(i) for e in weights for i in e["tokens"].ravel()}
    arch_ids = {int(i) for e in arch for i in e["tokens"].ravel()}
    assert weight_ids <= set(corpus.train[:400].tolist())
    assert arch_ids <= set(corpus.train[400:800].tolist())
    assert _stream_ids(inputs.validation()) == set(corpus.train[800:1000].tolist())
    assert inputs.sizes()["train"] == inputs.sizes()["arch"] == 400


def test_train_inputs_use_valid_and_test_splits():
    corpus = _distinct_corpus()
    inputs = make_lm_train_inputs(corpus, batch_size=4, eval_batch_size=2, bptt=10)
    assert _stream_ids(inputs.test()) == set(corpus.test.tolist())
    assert _stream_ids(inputs.validation()) == set(corpus.valid.tolist())
    assert inputs.steps_per_epoch == inputs.train_stream.steps_per_epoch
    assert inputs.sizes() == {"train": 2000, "valid": 200, "test": 200,
                              "vocab": corpus.vocab_size}
    with pytest.raises(ValueError, match="set --test_batch_size to a multiple of 2"):
        inputs.distributed_steps_per_epoch(1, 2)
    with pytest.raises(ValueError, match="--test_batch_size=1 is not divisible by the 2"):
        inputs.test(_fake_context(1, 0, 2))
    with pytest.raises(ValueError, match="--batch_size=8.*raise --train_tokens"):
        make_lm_train_inputs(corpus, batch_size=8, train_tokens=12)
