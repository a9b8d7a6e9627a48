"""Tasks: fixed disjoint splits, hand-checked German/English, tokens, position coupling, metrics."""
from dataclasses import dataclass, fields

import numpy as np
import pytest

from pafree import F
from pafree.models.layers import Linear
from pafree.tasks import TASKS, get_task, task_class
from pafree.tasks.base import Metric, Task, epoch_indices
from pafree.tasks import dates as dt
from pafree.tasks import numbers as nm
from pafree.tasks.metrics import accuracy, bleu, exact_match
from pafree.tasks.vocab import BOS, EOS, PAD


@pytest.fixture(scope="module")
def digits():
    return get_task("digits")


@pytest.fixture(scope="module")
def numbers():
    return get_task("numbers")


@pytest.fixture(scope="module")
def dates():
    return get_task("dates", train_size=dt.SIZES["train"])     # every training date of the draw


@pytest.fixture(scope="module")
def addition():
    return get_task("addition")


def test_unknown_task_lists_valid_names():
    with pytest.raises(ValueError, match="addition, cifar10, dates, digits, digits-cnn, numbers"):
        get_task("mnist")


def test_epoch_indices_cover_each_epoch_once():
    batches = [epoch_indices(step, 4, 10, seed=3) for step in range(4)]   # 2 per epoch
    assert len(set(np.concatenate(batches[:2]))) == 8                      # no repeats
    assert not np.array_equal(batches[0], batches[2])                      # reshuffled
    assert np.array_equal(epoch_indices(5, 4, 10, 3), epoch_indices(5, 4, 10, 3))
    with pytest.raises(ValueError, match="exceeds"):
        epoch_indices(0, 11, 10, 0)


# ---------------------------------------------------------------- digits

def test_digits_splits_fixed_disjoint_complete(digits):
    idx = digits.indices
    assert [len(idx[s]) for s in ("train", "valid", "test")] == [1257, 180, 360]
    assert sorted(np.concatenate(list(idx.values()))) == list(range(1797))
    again = get_task("digits")
    for s in idx:
        assert np.array_equal(idx[s], again.indices[s])
        assert np.array_equal(digits.images[s], again.images[s])
    assert digits.images["train"].dtype == np.float32
    assert abs(digits.images["train"].mean()) < 1e-4
    assert abs(digits.images["train"].std() - 1) < 1e-4


def test_patchify_matches_loop():
    images = np.arange(2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8)
    from pafree.tasks.digits import patchify
    out = patchify(images, 2)
    assert out.shape == (2, 16, 4)
    for n in range(2):
        for pr in range(4):
            for pc in range(4):
                expected = images[n, 2 * pr:2 * pr + 2, 2 * pc:2 * pc + 2].reshape(-1)
                assert np.array_equal(out[n, 4 * pr + pc], expected)
    with pytest.raises(ValueError, match="divisible"):
        patchify(images, 3)


def test_digits_shift_moves_image(digits):
    img = digits.images["train"][:1]
    assert np.array_equal(digits.shifted(img, np.array([[0, 0]])), img)
    down_right = digits.shifted(img, np.array([[1, 1]]))[0]
    assert np.array_equal(down_right[1:, 1:], img[0, :-1, :-1])
    assert np.all(down_right[0] == digits.background) and np.all(down_right[:, 0] == digits.background)


def test_digits_batches_deterministic_and_evaluate(digits):
    b1, b2 = digits.train_batch(7, 32, seed=1), digits.train_batch(7, 32, seed=1)
    assert np.array_equal(b1.patches, b2.patches) and np.array_equal(b1.labels, b2.labels)
    assert b1.patches.shape == (32, digits.n_patches, digits.patch_dim)
    assert b1.patches.dtype == np.float32 and digits.n_patches * digits.patch_dim == 64
    assert not np.array_equal(digits.train_batch(8, 32, 1).labels, b1.labels)
    labels = digits.labels["test"]
    assert digits.evaluate(lambda x: labels[:len(x)], "test") == {"accuracy": 1.0}
    assert digits.evaluate(lambda x: (labels[:len(x)] + 1) % 10, "test") == {"accuracy": 0.0}
    assert sum(len(b.labels) for b in digits.batches("valid", 64)) == 180


# ---------------------------------------------------------------- numbers

# written by hand, not generated
HAND = {
    0: ("null", "zero"),
    1: ("eins", "one"),
    7: ("sieben", "seven"),
    11: ("elf", "eleven"),
    12: ("zwölf", "twelve"),
    16: ("sechzehn", "sixteen"),
    17: ("siebzehn", "seventeen"),
    21: ("einundzwanzig", "twenty-one"),
    30: ("dreißig", "thirty"),
    60: ("sechzig", "sixty"),
    70: ("siebzig", "seventy"),
    99: ("neunundneunzig", "ninety-nine"),
    100: ("einhundert", "one hundred"),
    101: ("einhunderteins", "one hundred one"),
    110: ("einhundertzehn", "one hundred ten"),
    1000: ("eintausend", "one thousand"),
    1001: ("eintausendeins", "one thousand one"),
    2024: ("zweitausendvierundzwanzig", "two thousand twenty-four"),
    21000: ("einundzwanzigtausend", "twenty-one thousand"),
    100000: ("einhunderttausend", "one hundred thousand"),
    101001: ("einhunderteintausendeins", "one hundred one thousand one"),
    324011: ("dreihundertvierundzwanzigtausendelf", "three hundred twenty-four thousand eleven"),
    560017: ("fünfhundertsechzigtausendsiebzehn", "five hundred sixty thousand seventeen"),
    999999: ("neunhundertneunundneunzigtausendneunhundertneunundneunzig",
             "nine hundred ninety-nine thousand nine hundred ninety-nine"),
}


@pytest.mark.parametrize("n", sorted(HAND))
def test_german_english_hand_checked(n):
    assert nm.german(n) == HAND[n][0]
    assert nm.english(n) == HAND[n][1]


def test_number_range_checked():
    with pytest.raises(ValueError, match="outside"):
        nm.german(1_000_000)


def test_morpheme_split_round_trip():
    rng = np.random.default_rng(1)
    for n in list(range(2000)) + list(rng.integers(0, 1_000_000, 3000)):
        morphemes = nm.german_morphemes(int(n))
        assert nm.split_german(nm.german(int(n))) == morphemes
        assert len(morphemes) <= nm.MAX_TOKENS and len(nm.english_tokens(int(n))) <= nm.MAX_TOKENS


def test_numbers_splits_fixed_disjoint(numbers):
    sets = {s: set(numbers.numbers[s].tolist()) for s in ("train", "valid", "test")}
    assert [len(sets[s]) for s in ("train", "valid", "test")] == [20000, 500, 1000]
    assert not sets["train"] & sets["valid"] and not sets["train"] & sets["test"]
    assert not sets["valid"] & sets["test"]
    assert set(range(100)) <= sets["train"]
    assert np.array_equal(numbers.numbers["test"], nm.draw_numbers()["test"])
    lengths = np.bincount([len(str(n)) for n in numbers.numbers["test"]])
    assert all(lengths[d] > 30 for d in (3, 4, 5, 6))   # every digit count is tested


def test_numbers_token_round_trip(numbers):
    for n in (0, 21, 324011, 777777):
        src = numbers.encode_source(nm.german(n))
        assert numbers.src_vocab.decode(src) == nm.german_morphemes(n)
        tgt = numbers.tgt_vocab.encode(nm.english_tokens(n)) + [EOS, PAD]
        assert numbers.decode_target(tgt) == nm.english(n)
    assert numbers.encode_source(" Vierhundert Elf ") == numbers.encode_source("vierhundertelf")
    assert numbers.encode_source("dreissig") == numbers.encode_source("dreißig")


def test_encode_source_names_unknown_part(numbers):
    with pytest.raises(ValueError, match="'zig'"):
        numbers.encode_source("vierhundertelfzig")
    with pytest.raises(ValueError, match="'hallo'"):
        numbers.encode_source("hallo")
    with pytest.raises(ValueError, match="empty"):
        numbers.encode_source("  ")


def test_numbers_batch_layout(numbers):
    b = numbers.train_batch(3, 16, seed=0)
    assert np.array_equal(b.src, numbers.train_batch(3, 16, seed=0).src)
    assert b.src.shape[1] <= numbers.max_src_len and b.tgt_in.shape[1] <= numbers.max_tgt_len
    assert np.all(b.tgt_in[:, 0] == BOS)
    assert np.array_equal(b.src_mask, b.src != PAD)
    for row_in, row_out, mask in zip(b.tgt_in, b.tgt_out, b.tgt_mask):
        n = mask.sum()
        assert np.array_equal(row_in[1:n], row_out[:n - 1]) and row_out[n - 1] == EOS
        assert np.all(row_out[n:] == PAD)


def test_numbers_evaluate_oracle_and_wrong(numbers):
    refs = {tuple(s): t for s, t in zip(numbers.src["test"], numbers.tgt["test"])}
    perfect = numbers.evaluate(lambda srcs: [refs[tuple(s)] + [EOS] for s in srcs], "test", limit=50)
    assert perfect == {"exact_match": 1.0, "bleu": pytest.approx(100.0)}
    # drop the last token of every translation: no exact match, BLEU strictly between
    clipped = numbers.evaluate(lambda srcs: [refs[tuple(s)][:-1] for s in srcs], "test", limit=50)
    assert clipped["exact_match"] < 0.1 and 10 < clipped["bleu"] < 100


# ---------------------------------------------------------------- dates

# written by hand, not generated
DATES_HAND = {
    (1984, 3, 21): ("einundzwanzigste märz neunzehnhundertvierundachtzig",
                    "march twenty-first, nineteen eighty-four"),
    (2005, 5, 1): ("erste mai zweitausendfünf", "may first, two thousand five"),
    (1107, 7, 3): ("dritte juli elfhundertsieben", "july third, eleven oh seven"),
    (1900, 12, 31): ("einunddreißigste dezember neunzehnhundert", "december thirty-first, nineteen hundred"),
    (2024, 2, 29): ("neunundzwanzigste februar zweitausendvierundzwanzig",
                    "february twenty-ninth, twenty twenty-four"),
    (2010, 8, 8): ("achte august zweitausendzehn", "august eighth, twenty ten"),
    (1777, 10, 20): ("zwanzigste oktober siebzehnhundertsiebenundsiebzig",
                     "october twentieth, seventeen seventy-seven"),
    (2000, 1, 30): ("dreißigste januar zweitausend", "january thirtieth, two thousand"),
    (1812, 6, 18): ("achtzehnte juni achtzehnhundertzwölf", "june eighteenth, eighteen twelve"),
    (2099, 11, 7): ("siebte november zweitausendneunundneunzig", "november seventh, twenty ninety-nine"),
    (1101, 9, 2): ("zweite september elfhunderteins", "september second, eleven oh one"),
}


@pytest.mark.parametrize("ymd", sorted(DATES_HAND))
def test_dates_german_english_hand_checked(ymd):
    date = dt.datetime.date(*ymd)
    assert (dt.german(date), dt.english(date)) == DATES_HAND[ymd]


def test_dates_range_checked():
    with pytest.raises(ValueError, match="outside"):
        dt.german_morphemes(dt.datetime.date(2100, 1, 1))


def test_dates_splits_fixed_disjoint_and_every_day_month_year_kind_tested(dates):
    sets = {s: set(dates.examples[s]) for s in ("train", "valid", "test")}
    assert [len(sets[s]) for s in ("train", "valid", "test")] == [20000, 500, 1000]
    assert not sets["train"] & sets["valid"] and not sets["train"] & sets["test"]
    assert not sets["valid"] & sets["test"]
    assert dates.examples == dt.draw_dates()
    test = dates.examples["test"]
    assert {d.month for d in test} == set(range(1, 13)) and {d.day for d in test} == set(range(1, 32))
    assert sum(d.year >= 2000 for d in test) > 50        # both ways of reading a year


def test_dates_train_size_keeps_the_first_training_dates_only(dates):
    default = get_task("dates")
    n = dt.DEFAULTS["train_size"]
    assert default.size("train") == n < dates.size("train")
    assert default.examples["train"] == dates.examples["train"][:n]
    assert default.src["train"] == dates.src["train"][:n] and default.tgt["train"] == dates.tgt["train"][:n]
    assert default.examples["test"] == dates.examples["test"]
    assert default.examples["valid"] == dates.examples["valid"]
    for bad in (0, dt.SIZES["train"] + 1):
        with pytest.raises(ValueError, match="train_size"):
            get_task("dates", train_size=bad)


def test_dates_token_round_trip_and_lengths(dates):
    for split in ("train", "test"):
        for date, src, tgt in zip(dates.examples[split], dates.src[split], dates.tgt[split]):
            assert dates.encode_source(dt.german(date)) == src
            assert dates.src_vocab.decode(src) == dt.german_morphemes(date)
            assert dates.decode_target(tgt + [EOS, PAD]) == dt.english(date)
            assert len(src) <= dates.max_src_len and len(tgt) < dates.max_tgt_len
    assert dates.encode_source(" Erste  Mai zweitausendfünf") == dates.encode_source("erste mai zweitausendfünf")


def test_dates_evaluate_oracle_and_wrong(dates):
    refs = {tuple(s): t for s, t in zip(dates.src["test"], dates.tgt["test"])}
    perfect = dates.evaluate(lambda srcs: [refs[tuple(s)] + [EOS] for s in srcs], "test", limit=50)
    assert perfect == {"exact_match": 1.0, "bleu": pytest.approx(100.0)}
    clipped = dates.evaluate(lambda srcs: [refs[tuple(s)][:-1] for s in srcs], "test", limit=50)
    assert clipped["exact_match"] == 0 and 10 < clipped["bleu"] < 100


# ---------------------------------------------------------------- addition

def test_addition_sequence_by_hand(addition):
    tokens, positions = addition.sequence(653, 49)
    assert addition.vocab.decode(tokens) == list("653+49=207")      # 702 reversed
    assert tokens[-1] == EOS
    #          BOS 6 5 3 + 4 9 = 2 0 7 EOS
    assert positions == [0, 3, 2, 1, 0, 2, 1, 1, 2, 3, 4, 0]
    assert addition.sequence(653, 49, offset=2)[1] == [0, 5, 4, 3, 0, 4, 3, 3, 4, 5, 6, 0]
    plain = get_task("addition", position_coupling=False)
    assert plain.sequence(653, 49)[1] == list(range(12))


def test_position_coupling_shares_significance(addition):
    rng = np.random.default_rng(0)
    for a, b in rng.integers(0, 10 ** 6, (50, 2)):
        tokens, positions = addition.sequence(int(a), int(b))
        text = addition.vocab.decode(tokens)
        plus, eq = text.index("+"), text.index("=")
        # text index i -> sequence index i + 1 (BOS)
        sig_a = {len(str(a)) - 1 - i: positions[1 + i] for i in range(plus)}
        sig_b = {len(str(b)) - 1 - i: positions[2 + plus + i] for i in range(len(str(b)))}
        answer = [positions[2 + eq + k] for k in range(len(str(a + b)))]
        for s in set(sig_a) & set(sig_b):
            assert sig_a[s] == sig_b[s]
        assert positions[1 + eq] == (sig_a.get(0) or sig_b.get(0))            # '=' predicts units
        for s, pos in enumerate(answer):                                       # predicts s + 1
            if s + 1 in sig_a:
                assert pos == sig_a[s + 1]


def test_addition_batches_deterministic_bounded_heldout(addition):
    eq = addition.vocab.stoi["="]
    for step in range(30):
        b = addition.train_batch(step, 32, seed=5)
        assert np.all(b.positions < addition.n_positions)
        for tok, tgt, mask in zip(b.tokens, b.targets, b.loss_mask):
            text = "".join(addition.vocab.decode(tok))
            a, rest = text.split("+")
            bb = rest.split("=")[0]
            assert (int(a), int(bb)) not in addition.heldout
            assert len(a) <= addition.train_digits and len(bb) <= addition.train_digits
            answer = tgt[mask == 1]
            assert answer[-1] == EOS and tok[np.argmax(mask)] == eq
            assert "".join(addition.vocab.decode(answer)) == str(int(a) + int(bb))[::-1]
    b1, b2 = addition.train_batch(3, 8, 1), addition.train_batch(3, 8, 1)
    assert all(np.array_equal(getattr(b1, f.name), getattr(b2, f.name)) for f in fields(b1))


def test_addition_eval_sets(addition):
    for split in ("valid", "test"):
        for L, (a, b) in addition.eval_pairs[split].items():
            assert all(len(str(x)) == L for x in np.concatenate([a, b]) if L > 1)
    v = set(zip(*map(np.ndarray.tolist, addition.eval_pairs["valid"][4])))
    t = set(zip(*map(np.ndarray.tolist, addition.eval_pairs["test"][4])))
    assert len(t) == 500 and not v & t


def generate_oracle(task, wrong_at=None):
    """A 'model' that reads the operands off the prompt and writes the true answer."""
    def generate(tokens, positions, new_positions):
        assert np.all(positions < task.n_positions) and np.all(new_positions < task.n_positions)
        out = np.full((len(tokens), len(new_positions)), PAD, np.int64)
        for row, tok in zip(out, tokens):
            a, b = "".join(task.vocab.decode(tok)).rstrip("=").split("+")
            answer = str(int(a) + int(b))[::-1]
            if len(a) == wrong_at:
                answer = answer[:-1] + str((int(answer[-1]) + 1) % 10)
            ids = task.vocab.encode(answer) + [EOS]
            row[:len(ids)] = ids
        return out
    return generate


def test_addition_evaluate_oracle(addition):
    result = addition.evaluate(generate_oracle(addition), "valid", limit=20)
    assert result["exact_match"] == 1.0
    assert all(result[f"exact_match_len{L}"] == 1.0 for L in range(1, 9))
    result = addition.evaluate(generate_oracle(addition, wrong_at=7), "valid", limit=20)
    assert result["exact_match_len7"] == 0.0 and result["exact_match_len6"] == 1.0
    plain = get_task("addition", position_coupling=False)
    assert plain.evaluate(generate_oracle(plain), "valid", limit=5)["exact_match"] == 1.0


# ---------------------------------------------------------------- metrics

def test_metrics():
    assert accuracy([1, 2, 3, 4], [1, 2, 0, 0]) == 0.5
    assert exact_match(["a b", "c"], ["a b", "d"]) == 0.5
    assert bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100.0)
    assert bleu(["dog"], ["the cat sat on the mat"]) < 1.0
    with pytest.raises(ValueError):
        exact_match(["a"], [])


def test_addition_prompt_parse_and_decode(addition):
    a, b = addition.parse(" 123 + 45 =")
    assert (a, b) == (123, 45)
    tokens, positions, new_positions = addition.prompts([a], [b])
    assert addition.vocab.decode(tokens[0]) == list("123+45=")
    assert positions[0].tolist() == [0, 3, 2, 1, 0, 2, 1, 1]      # by hand, see module doc
    assert new_positions.tolist() == [2, 3, 4, 5, 6]
    plain = get_task("addition", position_coupling=False)
    assert plain.prompts([a], [b])[2].tolist() == [8, 9, 10, 11, 12]
    for bad in ("12-3", "1+2+3", "abc", "+5", "1" * 9 + "+1"):
        with pytest.raises(ValueError, match="got"):
            addition.parse(bad)
    with pytest.raises(ValueError, match="equal digit counts"):
        addition.prompts([1, 10], [1, 1])
    answer = addition.vocab.encode("861") + [EOS, PAD]
    assert addition.decode_answer(answer) == "168"
    assert addition.decode_answer(addition.vocab.encode("861")) is None


# --- the task protocol: a new task is one class plus a registry line --------------------

@dataclass
class SignBatch:
    x: np.ndarray
    labels: np.ndarray


class SignTask(Task):
    """A toy task defined here: is the sum of 4 numbers positive? (a linear model)."""

    name = "sign"
    defaults = {"steps": 30, "batch_size": 16, "lr": 0.05, "warmup": 0, "schedule": "constant",
                "min_lr": 0.0, "weight_decay": 0.0, "betas": (0.9, 0.999), "eps": 1e-8,
                "clip": None, "label_smoothing": 0.0}
    metric = Metric("accuracy", "fraction of signs right")
    predict_inputs = "four comma-separated numbers"

    def __init__(self):
        rng = np.random.default_rng(0)
        self.x = {s: rng.normal(size=(n, 4)).astype(np.float32)
                  for s, n in (("train", 256), ("valid", 64), ("test", 64))}

    def size(self, split):
        return len(self.x[split])

    def labels(self, x):
        return (x.sum(axis=1) > 0).astype(np.int64)

    def train_batch(self, step, batch_size, seed):
        x = self.x["train"][epoch_indices(step, batch_size, self.size("train"), seed)]
        return SignBatch(x, self.labels(x))

    def batches(self, split, batch_size):
        yield SignBatch(self.x[split], self.labels(self.x[split]))

    def build_model(self, hparams, seed):
        return Linear(4, 2, np.random.default_rng(seed))

    def loss(self, model, batch, label_smoothing):
        return F.cross_entropy(model(batch.x), batch.labels, label_smoothing=label_smoothing)

    def predictor(self, model, hparams, beam=None):
        return lambda x: model(x).data.argmax(axis=1)

    def evaluate(self, predict, split, limit=None):
        x = self.x[split][:limit]
        return {"accuracy": accuracy(predict(x), self.labels(x))}

    def answer(self, predict, inputs):
        x = np.array([[float(v) for v in text.split(",")] for text in inputs], np.float32)
        return [f"{text}: {'positive' if p else 'not positive'}"
                for text, p in zip(inputs, predict(x))]


def test_every_registered_task_implements_the_protocol():
    for name in TASKS:
        cls = task_class(name)
        assert issubclass(cls, Task) and cls.name == name
        assert not getattr(cls, "__abstractmethods__", None)
        assert isinstance(cls.metric, Metric) and cls.predict_inputs


@pytest.mark.parametrize("mode", ["standard", "pa"])
def test_a_new_task_trains_and_predicts_through_the_registry(tmp_path, monkeypatch, mode):
    from pafree.run import Run, train
    monkeypatch.setitem(TASKS, "sign", (__name__, "SignTask"))
    final = train("sign", mode, out=str(tmp_path), progress=False)
    assert final["steps"] == 30 and final["test_accuracy"] > 0.8     # chance is about 0.5
    run = Run.from_directory(str(tmp_path))
    assert run.answer(["1,1,1,1", "-1,-1,-1,-1"]) == ["1,1,1,1: positive",
                                                      "-1,-1,-1,-1: not positive"]
