"""Word-level language-modelling corpora (Penn Treebank, WikiText-2).

Nothing here ever downloads: a corpus is read from a directory that already
holds its three pre-tokenised split files.  Accepted layouts:

* ``ptb``: ``ptb.train.txt``, ``ptb.valid.txt``, ``ptb.test.txt`` (Mikolov's
  ``simple-examples/data``) or ``train.txt``, ``valid.txt``, ``test.txt`` (the
  ``data/penn`` folder of AWD-LSTM / DARTS).
* ``wt2``: ``wiki.train.tokens``, ``wiki.valid.tokens``, ``wiki.test.tokens``
  (the ``wikitext-2`` archive) or ``train.txt``, ``valid.txt``, ``test.txt``.

Tokenisation follows AWD-LSTM's ``data.py``: every line (blank lines
included) is split on whitespace and followed by ``<eos>``.  The vocabulary is
built from the training split only, in first-occurrence order, and gets
``<unk>`` if the training text lacks it; validation/test words missing from
it become ``<unk>`` (PTB's text already uses ``<unk>``, so it has none).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from data_tf.image_datasets import DatasetNotFoundError

__all__ = [
    "SUPPORTED_TEXT_DATASETS",
    "TextCorpus",
    "load_text_corpus",
    "EOS",
    "UNK",
    "DATA_DIR_ENV",
]

SUPPORTED_TEXT_DATASETS = ("ptb", "wt2")

EOS = "<eos>"
UNK = "<unk>"

# Environment variable naming a directory whose ``<name>`` subfolder holds a
# corpus (used only when ``load_text_corpus`` gets no ``data_dir``).
DATA_DIR_ENV = "DATANAS_DATA_DIR"

# Default location, ``~/datasets/<dirname>``, tried last.
DEFAULT_DATASETS_DIR = os.path.join(os.path.expanduser("~"), "datasets")

_SPLITS = ("train", "valid", "test")

# Accepted file names of (train, valid, test), first layout preferred.
_LAYOUTS = {
    "ptb": (("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"),
            ("train.txt", "valid.txt", "test.txt")),
    "wt2": (("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"),
            ("train.txt", "valid.txt", "test.txt")),
}
# Folder names the corpora usually come in, looked for under every root.
_SUBDIRS = {"ptb": ("penn", os.path.join("simple-examples", "data")),
            "wt2": ("wikitext-2",)}
_HOME_DIRNAMES = {"ptb": "ptb", "wt2": "wikitext-2"}
_FULL_NAMES = {"ptb": "Penn Treebank", "wt2": "WikiText-2"}


@dataclasses.dataclass(eq=False)
class TextCorpus:
    """A tokenised corpus: a vocabulary and three token-id streams.

    Attributes:
      name: corpus name (one of ``SUPPORTED_TEXT_DATASETS``).
      source: the directory the split files were read from.
      vocab: tuple of words; a word's index is its token id.  Built from the
        training split in first-occurrence order; holds ``<eos>`` and
        ``<unk>``.
      train, valid, test: ``int32`` 1-D token-id streams (one ``<eos>`` after
        every line).
      unknown_counts: ``{split: n}``, the number of word occurrences of that
        split absent from the training vocabulary (mapped to ``<unk>``);
        always 0 for ``train``.

    Equality and hashing are by identity (the fields hold numpy arrays).
    """

    name: str
    source: str
    vocab: tuple = dataclasses.field(repr=False)
    train: np.ndarray = dataclasses.field(repr=False)
    valid: np.ndarray = dataclasses.field(repr=False)
    test: np.ndarray = dataclasses.field(repr=False)
    unknown_counts: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.vocab = tuple(str(w) for w in self.vocab)
        if len(set(self.vocab)) != len(self.vocab):
            raise ValueError(f"{self.name}: vocabulary has duplicate words")
        for word in (EOS, UNK):
            if word not in self.vocab:
                raise ValueError(f"{self.name}: vocabulary lacks {word}")
        for split in _SPLITS:
            ids = np.asarray(getattr(self, split))
            if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
                raise ValueError(f"{self.name}: {split} must be a 1-D integer array, got "
                                 f"{ids.dtype} {ids.shape}")
            if ids.size and (ids.min() < 0 or ids.max() >= len(self.vocab)):
                raise ValueError(f"{self.name}: {split} holds ids outside [0, "
                                 f"{len(self.vocab)})")
            setattr(self, split, np.ascontiguousarray(ids, dtype=np.int32))
        self._index = None

    @property
    def vocab_size(self) -> int:
        """Number of words in the vocabulary."""
        return len(self.vocab)

    @property
    def eos_id(self) -> int:
        return self.word_to_id[EOS]

    @property
    def unk_id(self) -> int:
        return self.word_to_id[UNK]

    @property
    def word_to_id(self) -> dict:
        """``{word: id}`` (built on first use)."""
        if self._index is None:
            self._index = {w: i for i, w in enumerate(self.vocab)}
        return self._index

    def word_ids(self, words) -> np.ndarray:
        """``int32`` ids of ``words`` (a string is split on whitespace);
        unknown words get the ``<unk>`` id."""
        if isinstance(words, str):
            words = words.split()
        index, unk = self.word_to_id, self.unk_id
        return np.asarray([index.get(w, unk) for w in words], dtype=np.int32)

    def words(self, ids) -> list:
        """The words of token ids ``ids``."""
        return [self.vocab[int(i)] for i in np.asarray(ids).reshape(-1)]

    def sizes(self) -> dict:
        """``{"train": n, "valid": n, "test": n}`` token counts and ``"vocab"``."""
        return {"train": int(self.train.size), "valid": int(self.valid.size),
                "test": int(self.test.size), "vocab": self.vocab_size}


# --------------------------------------------------------------------------
# Tokenisation
# --------------------------------------------------------------------------


def _lines(text: str) -> list:
    """Lines as Python's ``for line in file`` yields them (no trailing empty one)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _tokenize(text: str):
    """Flat ``tf.string`` tensor: every line's words followed by ``<eos>``.

    The whole file is tokenised in one batched WhitespaceTokenizer call.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    import tensorflow_text as tf_text  # pylint: disable=import-outside-toplevel

    lines = tf.constant(_lines(text), dtype=tf.string)
    words = tf_text.WhitespaceTokenizer().tokenize(lines)
    eos = tf.RaggedTensor.from_tensor(tf.fill([tf.shape(lines)[0], 1], EOS))
    return tf.concat([words, eos], axis=1).flat_values


def _encode(texts: dict):
    """Vocabulary from ``texts["train"]``, id streams and unknown counts."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    train_words = _tokenize(texts["train"])
    vocab_t, train_ids = tf.unique(train_words, out_idx=tf.int32)   # first-occurrence order
    vocab = [w.decode("utf-8") for w in vocab_t.numpy()]
    if UNK not in vocab:
        vocab.append(UNK)
        vocab_t = tf.constant(vocab, dtype=tf.string)
    unk_id = vocab.index(UNK)
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(vocab_t, tf.range(len(vocab), dtype=tf.int32)),
        default_value=-1)
    ids = {"train": train_ids.numpy().astype(np.int32)}
    unknown = {"train": 0}
    for split in ("valid", "test"):
        found = table.lookup(_tokenize(texts[split])).numpy()
        missing = found < 0
        unknown[split] = int(missing.sum())
        found[missing] = unk_id
        ids[split] = found.astype(np.int32)
    return tuple(vocab), ids, unknown


# --------------------------------------------------------------------------
# Locating the files
# --------------------------------------------------------------------------


def _candidate_dirs(name: str, data_dir: str | None) -> list:
    if data_dir is not None:   # given explicitly: used or refused, no fallback
        roots = [data_dir]
    else:
        roots = []
        env = os.environ.get(DATA_DIR_ENV)
        if env:
            roots.append(os.path.join(env, name))
            roots.append(os.path.join(env, _HOME_DIRNAMES[name]))
        roots.append(os.path.join(DEFAULT_DATASETS_DIR, _HOME_DIRNAMES[name]))
    dirs, seen = [], set()
    for root in roots:
        for directory in [root] + [os.path.join(root, sub) for sub in _SUBDIRS[name]]:
            key = os.path.abspath(directory)
            if key not in seen:
                seen.add(key)
                dirs.append(directory)
    return dirs


def _read_layout(directory: str, files: tuple):
    """``({split: text}, None, 0)`` or ``(None, why-not, missing count)`` for one layout."""
    missing = [f for f in files if not os.path.isfile(os.path.join(directory, f))]
    if missing:
        return None, "missing " + ", ".join(missing), len(missing)
    texts = {}
    for split, fname in zip(_SPLITS, files):
        path = os.path.join(directory, fname)
        try:
            with open(path, encoding="utf-8") as handle:
                texts[split] = handle.read()
        except UnicodeDecodeError as error:
            raise ValueError(f"{path} is not UTF-8 text ({error.reason}: byte "
                             f"0x{error.object[error.start]:02x} at offset {error.start}); "
                             "corpus files must be UTF-8 encoded.") from None
        if not texts[split].strip():
            return None, f"{fname} is empty", 0
    return texts, None, 0


def _find_texts(name: str, data_dir: str | None):
    looked = []
    for directory in _candidate_dirs(name, data_dir):
        if not os.path.isdir(directory):
            looked.append(f"{directory} (no such directory)")
            continue
        reasons = []
        for files in _LAYOUTS[name]:
            texts, why, num_missing = _read_layout(directory, files)
            if texts is not None:
                return texts, directory
            reasons.append((num_missing, why))
        # Report the layout that was closest to complete.
        looked.append(f"{directory} ({min(reasons)[1]})")
    layouts = " or ".join(", ".join(files) for files in _LAYOUTS[name])
    where = ("" if data_dir is not None else
             f"; pass --data_dir=<dir> or set ${DATA_DIR_ENV} so that "
             f"${DATA_DIR_ENV}/{name} holds them")
    raise DatasetNotFoundError(
        f"{_FULL_NAMES[name]} ({name}) was not found on local disk (nothing is downloaded); "
        f"looked in: {'; '.join(looked)}; expected the non-empty split files {layouts}{where}.")


# --------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------


def load_text_corpus(name: str, data_dir: str | None = None) -> TextCorpus:
    """Load one of ``SUPPORTED_TEXT_DATASETS`` from local disk.

    Directories are tried in order (the first holding a complete layout
    wins), each also with the usual subfolders (``penn``,
    ``simple-examples/data`` for ``ptb``; ``wikitext-2`` for ``wt2``):
    ``data_dir`` when given (then nothing else); otherwise
    ``$DATANAS_DATA_DIR/<name>`` when that variable is set, then
    ``~/datasets/ptb`` or ``~/datasets/wikitext-2``.

    Args:
      name: ``"ptb"`` or ``"wt2"``.
      data_dir: optional directory holding the split files.

    Returns:
      A :class:`TextCorpus`.  Each split with words unknown to the training
      vocabulary is reported with one ``absl.logging.info`` line.

    Raises:
      ValueError: unknown ``name``, or a split file that is not UTF-8 text
        (the message names the file).
      DatasetNotFoundError: no directory holds the three non-empty split
        files; the message lists every directory inspected and the expected
        file names.
    """
    from absl import logging  # pylint: disable=import-outside-toplevel

    if name not in SUPPORTED_TEXT_DATASETS:
        raise ValueError(f"Unknown text dataset {name!r}; supported datasets are: "
                         f"{', '.join(SUPPORTED_TEXT_DATASETS)}")
    if data_dir is not None:
        data_dir = os.fspath(data_dir)
    texts, source = _find_texts(name, data_dir)
    vocab, ids, unknown = _encode(texts)
    for split in ("valid", "test"):
        if unknown[split]:
            logging.info("%s %s: %d words not in the training vocabulary mapped to %s",
                         name, split, unknown[split], UNK)
    return TextCorpus(name=name, source=source, vocab=vocab, train=ids["train"],
                      valid=ids["valid"], test=ids["test"], unknown_counts=unknown)
