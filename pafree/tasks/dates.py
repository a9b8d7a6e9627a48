"""dates: German dates -> English dates, 1100..2099 (the ablation's translation task).

A harder sibling of ``numbers`` (same model, batches, beam search and metrics): the words
are ordinals, months and years, and the order changes. German writes day, month, year, the
day an ordinal and the year a number word; English writes month, day (an ordinal), a comma
and the year the way it is read aloud:

    einundzwanzigste märz neunzehnhundertvierundachtzig -> march twenty-first, nineteen eighty-four
    erste mai zweitausendfünf                           -> may first, two thousand five
    dritte juli elfhundertsieben                        -> july third, eleven oh seven

German ordinals: erste, zweite, dritte, ..., siebte, achte, ..., neunzehnte (cardinal + te,
four irregular), zwanzigste, einundzwanzigste, ... (cardinal + ste). German years 1100..1999
are read in hundreds (neunzehnhundert...), 2000..2099 as numbers (zweitausend...). English
years: 1984 nineteen eighty-four, 1905 nineteen oh five, 1900 nineteen hundred, 2000..2009
two thousand (five), 2010..2099 twenty (twenty-four).

Tokens: German morphemes by greedy longest match (numbers' list plus the ordinal endings te,
ste, the irregular ordinals and the months); English words, the hyphen and the comma tokens of
their own. At most 10 source and 9 target tokens. Splits (fixed seed): the 365,243 real
calendar dates of 1100..2099 drawn without replacement into train 20,000 / valid 500 /
test 1,000, so most test dates combine a day, month and year seen only apart.

Why this task: ``numbers`` reaches 100 % exact match in its budget, so it cannot show the
effect of a component; here the float baseline's default run ends below the ceiling because
it sees few dates: ``train_size`` (default 250) keeps only the first dates of the training
draw, and the 1,000 steps (cosine decay to 0) let every run plateau first, so the measure is
converged quality, not speed of learning; see docs/training.md.
"""
import datetime

import numpy as np

from . import numbers as nm
from .base import Metric

SIZES = {"train": 20_000, "valid": 500, "test": 1_000}
SEED = 0
FIRST_YEAR, LAST_YEAR = 1100, 2099

DEFAULTS = {**nm.DEFAULTS, "d_model": 32, "n_heads": 4, "d_ff": 64, "n_enc_layers": 1,
            "n_dec_layers": 1, "steps": 1000, "warmup": 30, "beam": 1, "train_size": 250}

MONTHS_DE = ["januar", "februar", "märz", "april", "mai", "juni", "juli", "august",
             "september", "oktober", "november", "dezember"]
MONTHS_EN = ["january", "february", "march", "april", "may", "june", "july", "august",
             "september", "october", "november", "december"]
DE_ORDINAL_IRREGULAR = {1: "erste", 3: "dritte", 7: "siebte", 8: "achte"}
EN_ORDINAL = ["", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth",
              "ninth", "tenth", "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth",
              "sixteenth", "seventeenth", "eighteenth", "nineteenth"]
EN_TENS_ORDINAL = {20: "twentieth", 30: "thirtieth"}

DE_MORPHEMES = sorted({*nm.DE_MORPHEMES, "te", "ste", *DE_ORDINAL_IRREGULAR.values(),
                       *MONTHS_DE})
EN_TOKENS = sorted({*nm.EN_TOKENS, ",", "oh", *EN_ORDINAL[1:], *EN_TENS_ORDINAL.values(),
                    *MONTHS_EN})


def check_date(date):
    if not FIRST_YEAR <= date.year <= LAST_YEAR:
        raise ValueError(f"date {date} outside {FIRST_YEAR}..{LAST_YEAR}")


def german_ordinal(day):
    """The morphemes of the ordinal of day 1..31, e.g. 21 -> ['ein', 'und', 'zwanzig', 'ste']."""
    if day in DE_ORDINAL_IRREGULAR:
        return [DE_ORDINAL_IRREGULAR[day]]
    return nm.german_morphemes(day) + ["te" if day < 20 else "ste"]


def english_ordinal(day):
    """The tokens of the ordinal of day 1..31, e.g. 21 -> ['twenty', '-', 'first']."""
    if day < 20:
        return [EN_ORDINAL[day]]
    tens, units = divmod(day, 10)
    if not units:
        return [EN_TENS_ORDINAL[day]]
    return [nm.EN_TENS[tens], "-", EN_ORDINAL[units]]


def german_year(year):
    """1100..1999 in hundreds (neunzehn hundert ...), 2000..2099 as a number."""
    if year >= 2000:
        return nm.german_morphemes(year)
    hundreds, rest = divmod(year, 100)
    return nm.german_morphemes(hundreds) + ["hundert"] + (
        nm.german_morphemes(rest) if rest else [])


def english_year(year):
    """As read aloud: nineteen eighty-four, nineteen oh five, nineteen hundred, two thousand
    five, twenty twenty-four."""
    hundreds, rest = divmod(year, 100)
    if 2000 <= year < 2010:
        return ["two", "thousand"] + ([nm.EN_ONES[rest]] if rest else [])
    head = ["twenty"] if year >= 2000 else [nm.EN_ONES[hundreds]]
    if rest == 0:
        return head + ["hundred"]
    if rest < 10:
        return head + ["oh", nm.EN_ONES[rest]]
    return head + nm.english_tokens(rest)


def german_morphemes(date):
    check_date(date)
    return german_ordinal(date.day) + [MONTHS_DE[date.month - 1]] + german_year(date.year)


def english_tokens(date):
    check_date(date)
    return [MONTHS_EN[date.month - 1]] + english_ordinal(date.day) + [","] + english_year(date.year)


def german(date):
    """The German words of a date, e.g. 'einundzwanzigste märz neunzehnhundertvierundachtzig'."""
    return " ".join(["".join(german_ordinal(date.day)), MONTHS_DE[date.month - 1],
                     "".join(german_year(date.year))])


def detokenize(tokens):
    """English tokens -> text: the hyphen binds its neighbours, the comma its left one."""
    return nm.detokenize(tokens).replace(" ,", ",")


def english(date):
    """The English words of a date, e.g. 'march twenty-first, nineteen eighty-four'."""
    return detokenize(english_tokens(date))


def draw_dates():
    """The disjoint train/valid/test date sets from the fixed seed, in random order."""
    first = datetime.date(FIRST_YEAR, 1, 1).toordinal()
    last = datetime.date(LAST_YEAR, 12, 31).toordinal()
    rng = np.random.default_rng(SEED)
    drawn = rng.choice(last - first + 1, sum(SIZES.values()), replace=False) + first
    dates = [datetime.date.fromordinal(int(d)) for d in drawn]
    test, valid = dates[:SIZES["test"]], dates[SIZES["test"]:SIZES["test"] + SIZES["valid"]]
    return {"train": dates[SIZES["test"] + SIZES["valid"]:], "valid": valid, "test": test}


class DatesTask(nm.NumbersTask):
    """German -> English dates (see the module docstring); the model, batches, decoding and
    metrics are numbers' (``NumbersTask``)."""

    name = "dates"
    defaults = DEFAULTS
    metric = Metric("exact_match", "fraction of test dates translated exactly")
    predict_inputs = "German dates (dates), e.g. 'erste mai neunzehnhundertfünf'"
    max_src_len = 10
    max_tgt_len = 10            # 9 tokens plus BOS (tgt_in) or EOS (tgt_out)
    morphemes = DE_MORPHEMES    # German words are split into these

    def __init__(self, train_size=DEFAULTS["train_size"]):
        if not 1 <= train_size <= SIZES["train"]:
            raise ValueError(f"need 1 <= train_size <= {SIZES['train']}")
        self.src_vocab = nm.Vocab(DE_MORPHEMES)
        self.tgt_vocab = nm.Vocab(EN_TOKENS)
        self.examples = draw_dates()
        self.examples["train"] = self.examples["train"][:train_size]   # the first of the fixed draw
        self.src = {s: [self.src_vocab.encode(german_morphemes(d)) for d in ds]
                    for s, ds in self.examples.items()}
        self.tgt = {s: [self.tgt_vocab.encode(english_tokens(d)) for d in ds]
                    for s, ds in self.examples.items()}

    def decode_target(self, ids):
        return detokenize(self.tgt_vocab.decode(ids))
